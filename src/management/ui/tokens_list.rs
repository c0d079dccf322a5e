//! The "API Tokens" and "Admin Tokens" lists: one row a token, with its
//! expiry ("expires in 3 days"), and its actions when the rules allow them.
//! `?sort=expiresAt:asc` (soonest first, never-expiring last) or
//! `expiresAt:desc` orders the rows on the server; the column header links
//! to them, so sorting needs no script.

use std::time::SystemTime;

use http::StatusCode;

use super::{date, flashes_html, signed_in_page, type_label, Ctx, Kind, Resp};
use crate::control::Op;
use crate::management::api::ApiError;
use crate::management::form::Form;
use crate::management::html::{alert, csrf_field, html, Html};
use crate::management::State;
use crate::model::TokenKind;
use crate::store::admin::TokenRow;

/// The order of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sort {
    /// By id: the order they were made in.
    Created,
    /// Soonest expiry first (expired ones at the top), never last.
    ExpiresAsc,
    /// Never first, then latest expiry first.
    ExpiresDesc,
}

impl Sort {
    /// From the query string's `sort` (Strapi's `field:direction`); an
    /// order it does not know is the default one.
    pub(super) fn from_query(query: Option<&str>) -> Self {
        let form = Form::parse(query.unwrap_or("").as_bytes()).unwrap_or_default();
        match form.get("sort") {
            Some("expiresAt" | "expiresAt:asc") => Sort::ExpiresAsc,
            Some("expiresAt:desc") => Sort::ExpiresDesc,
            _ => Sort::Created,
        }
    }

    fn apply(self, rows: &mut [TokenRow]) {
        match self {
            // As listed: lowest id first.
            Sort::Created => {}
            Sort::ExpiresAsc => rows.sort_by_key(|t| (t.expires_at.is_none(), t.expires_at, t.id)),
            Sort::ExpiresDesc => rows.sort_by_key(|t| {
                (
                    t.expires_at.is_some(),
                    std::cmp::Reverse(t.expires_at),
                    t.id,
                )
            }),
        }
    }

    /// The "Expires" header: a link to the other order, and `aria-sort`.
    fn header(self, k: &Kind) -> Html {
        let (aria, next, arrow) = match self {
            Sort::ExpiresAsc => ("ascending", "expiresAt:desc", " ▲"),
            Sort::ExpiresDesc => ("descending", "expiresAt:asc", " ▼"),
            Sort::Created => ("none", "expiresAt:asc", ""),
        };
        html!(
            r#"<th scope="col" aria-sort="{}"><a class="sort" href="/{}?sort={}">Expires<span aria-hidden="true">{}</span><span class="visually-hidden"> (sort by expiry)</span></a></th>"#,
            aria,
            k.slug,
            next,
            arrow
        )
    }
}

/// How soon a token expires, as the list marks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExpiryMark {
    /// `expired`, `expires today`, `expires in 3 days`.
    pub(super) label: String,
    /// The style: `expired`, `soon` (within 7 days) or `later`.
    pub(super) class: &'static str,
}

/// The mark of a token that expires at `expires_at` (`None` for one that
/// never does); days count in UTC calendar days, as its date is shown.
pub(super) fn expiry_mark(expires_at: Option<SystemTime>, now: SystemTime) -> Option<ExpiryMark> {
    let at = expires_at?;
    if at < now {
        return Some(ExpiryMark {
            label: "expired".into(),
            class: "expired",
        });
    }
    let day = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86_400)
    };
    let days = day(at).saturating_sub(day(now));
    let label = match days {
        0 => "expires today".to_owned(),
        1 => "expires in 1 day".to_owned(),
        n => format!("expires in {n} days"),
    };
    Some(ExpiryMark {
        label,
        class: if days <= 7 { "soon" } else { "later" },
    })
}

/// The "Expires" cell: the date and its mark.
fn expiry_cell(t: &TokenRow, now: SystemTime) -> Html {
    let mut h = date(t.expires_at, "Never");
    if let Some(m) = expiry_mark(t.expires_at, now) {
        h.push(html!(
            r#" <span class="expiry-mark {}">{}</span>"#,
            m.class,
            m.label
        ));
    }
    h
}

/// `GET /api-tokens`, `GET /admin-tokens` (`query`: the sort order).
pub(super) async fn list_page(state: &State, ctx: &Ctx, k: &Kind, query: Option<&str>) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let flash = state.sessions.take_flash(&ctx.sid);
    let lead = match k.kind {
        TokenKind::ContentApi => Html::lit(
            "API tokens authenticate requests to the Content API (<code>/api</code>, <code>/graphql</code>).",
        ),
        TokenKind::Admin => Html::lit(
            "Admin tokens authenticate automation on the admin API, with a subset of their owner's permissions.",
        ),
    };
    let mut main = html!(
        r#"<div class="page-head"><div><h1>{}</h1><p class="lead">{}</p></div>
<a class="button primary" href="/{}/new">Create new {}</a></div>"#,
        k.title,
        lead,
        k.slug,
        k.one
    );
    main.push(flashes_html(&flash));
    let mut rows = match mgr.list(&ctx.actor, Some(k.kind)).await {
        Ok(rows) => rows,
        Err(e) => {
            let e = ApiError::from_control(e);
            main.push(alert("error", &e.message));
            return signed_in_page(ctx, k.tab, e.status, k.title, main);
        }
    };
    let sort = Sort::from_query(query);
    sort.apply(&mut rows);
    let admin = k.kind == TokenKind::Admin;
    main.push(html!(
        r#"<div class="table-wrap"><table class="tokens">
<caption class="visually-hidden">{}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Description</th>{}{}<th scope="col">Created</th><th scope="col">Last used</th>{}<th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody>
"#,
        k.title,
        if admin {
            Html::new()
        } else {
            Html::lit(r#"<th scope="col">Type</th>"#)
        },
        sort.header(k),
        if admin {
            Html::lit(r#"<th scope="col">Owner</th>"#)
        } else {
            Html::new()
        }
    ));
    if rows.is_empty() {
        main.push(html!(
            r#"<tr><td colspan="7" class="empty">No {} yet.</td></tr>"#,
            k.title.to_lowercase().replace("api", "API")
        ));
    }
    let now = SystemTime::now();
    for t in &rows {
        let actions = RowActions {
            edit: mgr.may(&ctx.actor, Op::Update, t),
            delete: mgr.may(&ctx.actor, Op::Delete, t),
        };
        main.push(token_row(ctx, k, t, actions, now));
    }
    main.push(Html::lit("</tbody></table></div>\n"));
    signed_in_page(ctx, k.tab, StatusCode::OK, k.title, main)
}

/// What the actor may do to a row's token.
struct RowActions {
    edit: bool,
    delete: bool,
}

fn token_row(ctx: &Ctx, k: &Kind, t: &TokenRow, may: RowActions, now: SystemTime) -> Html {
    let admin = k.kind == TokenKind::Admin;
    let href = format!("/{}/{}", k.slug, t.id);
    let ty = if admin {
        Html::new()
    } else {
        html!(r#"<td data-label="Type">{}</td>"#, type_label(t.token_type))
    };
    let desc = if t.description.is_empty() {
        Html::lit(r#"<span class="muted">—</span>"#)
    } else {
        Html::text(&t.description)
    };
    let mut h = html!(
        r#"<tr><th scope="row" data-label="Name"><a href="{}">{}</a></th><td data-label="Description">{}</td>{}<td data-label="Expires">{}</td><td data-label="Created">{}</td><td data-label="Last used">{}</td>"#,
        href,
        t.name,
        desc,
        ty,
        expiry_cell(t, now),
        date(Some(t.created_at), "—"),
        date(t.last_used_at, "Never")
    );
    if admin {
        h.push(html!(
            r#"<td data-label="Owner">{}</td>"#,
            t.owner_email.as_deref().unwrap_or("—")
        ));
    }
    h.push(html!(
        r#"<td class="row-actions"><a class="button small" href="{}">{}<span class="visually-hidden"> {}</span></a>"#,
        href,
        if may.edit { "Edit" } else { "View" },
        t.name
    ));
    if may.delete {
        h.push(delete_form(ctx, k, t, true));
    }
    h.push(Html::lit("</td></tr>\n"));
    h
}

/// The delete button of a token, with its confirmation.
pub(super) fn delete_form(ctx: &Ctx, k: &Kind, t: &TokenRow, small: bool) -> Html {
    html!(
        r#"<form method="post" action="/{}/{}/delete" class="inline" data-confirm="Delete the token “{}”? Every request using it is refused from now on. This cannot be undone." data-confirm-label="Delete">{}<button type="submit" class="button danger{}">Delete<span class="visually-hidden"> {}</span></button></form>"#,
        k.slug,
        t.id,
        t.name,
        csrf_field(&ctx.csrf),
        if small { " small" } else { "" },
        t.name
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expiry_marks() {
        // 2027-01-15 12:00:00 UTC.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_014_400);
        let h = |n: u64| Duration::from_secs(n * 3600);
        type Mark = Option<(&'static str, &'static str)>;
        let rows: &[(Option<SystemTime>, Mark)] = &[
            (None, None),
            (
                Some(now - Duration::from_secs(1)),
                Some(("expired", "expired")),
            ),
            (Some(now - h(24 * 40)), Some(("expired", "expired"))),
            (Some(now), Some(("expires today", "soon"))),
            (Some(now + h(11)), Some(("expires today", "soon"))),
            // Past midnight UTC is tomorrow, however few hours away.
            (Some(now + h(13)), Some(("expires in 1 day", "soon"))),
            (Some(now + h(24 * 7)), Some(("expires in 7 days", "soon"))),
            (Some(now + h(24 * 8)), Some(("expires in 8 days", "later"))),
            (
                Some(now + h(24 * 90)),
                Some(("expires in 90 days", "later")),
            ),
        ];
        for (at, want) in rows {
            let got = expiry_mark(*at, now);
            assert_eq!(
                got.as_ref().map(|m| (m.label.as_str(), m.class)),
                *want,
                "{at:?}"
            );
        }
    }

    #[test]
    fn sort_orders() {
        assert_eq!(Sort::from_query(None), Sort::Created);
        assert_eq!(Sort::from_query(Some("sort=expiresAt")), Sort::ExpiresAsc);
        assert_eq!(
            Sort::from_query(Some("sort=expiresAt%3Aasc")),
            Sort::ExpiresAsc
        );
        assert_eq!(
            Sort::from_query(Some("sort=expiresAt:desc")),
            Sort::ExpiresDesc
        );
        assert_eq!(Sort::from_query(Some("sort=name:desc")), Sort::Created);
        assert_eq!(Sort::from_query(Some("sort=%ff")), Sort::Created);
    }
}
