//! The "API Tokens" and "Admin Tokens" lists: one row a token, with its
//! actions when the rules allow them.

use http::StatusCode;

use super::{date, flashes_html, signed_in_page, type_label, Ctx, Kind, Resp};
use crate::manage::Op;
use crate::management::api::ApiError;
use crate::management::html::{alert, csrf_field, html, Html};
use crate::management::State;
use crate::model::TokenKind;
use crate::store::admin::TokenRow;

/// `GET /api-tokens`, `GET /admin-tokens`.
pub(super) async fn list_page(state: &State, ctx: &Ctx, k: &Kind) -> Resp {
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
    let rows = match mgr.list(&ctx.actor, Some(k.kind)).await {
        Ok(rows) => rows,
        Err(e) => {
            let e = ApiError::from_manage(e);
            main.push(alert("error", &e.message));
            return signed_in_page(ctx, k.tab, e.status, k.title, main);
        }
    };
    let admin = k.kind == TokenKind::Admin;
    main.push(html!(
        r#"<div class="table-wrap"><table class="tokens">
<caption class="visually-hidden">{}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Description</th><th scope="col">{}</th><th scope="col">Created</th><th scope="col">Last used</th>{}<th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody>
"#,
        k.title,
        if admin { "Expires" } else { "Type" },
        if admin {
            Html::lit(r#"<th scope="col">Owner</th>"#)
        } else {
            Html::new()
        }
    ));
    if rows.is_empty() {
        main.push(html!(
            r#"<tr><td colspan="{}" class="empty">No {} yet.</td></tr>"#,
            if admin { 7u32 } else { 6 },
            k.title.to_lowercase().replace("api", "API")
        ));
    }
    for t in &rows {
        let actions = RowActions {
            edit: mgr.may(&ctx.actor, Op::Update, t),
            delete: mgr.may(&ctx.actor, Op::Delete, t),
        };
        main.push(token_row(ctx, k, t, actions));
    }
    main.push(Html::lit("</tbody></table></div>\n"));
    signed_in_page(ctx, k.tab, StatusCode::OK, k.title, main)
}

/// What the actor may do to a row's token.
struct RowActions {
    edit: bool,
    delete: bool,
}

fn token_row(ctx: &Ctx, k: &Kind, t: &TokenRow, may: RowActions) -> Html {
    let admin = k.kind == TokenKind::Admin;
    let href = format!("/{}/{}", k.slug, t.id);
    let third = if admin {
        date(t.expires_at, "Never")
    } else {
        Html::text(type_label(t.token_type))
    };
    let desc = if t.description.is_empty() {
        Html::lit(r#"<span class="muted">—</span>"#)
    } else {
        Html::text(&t.description)
    };
    let mut h = html!(
        r#"<tr><th scope="row" data-label="Name"><a href="{}">{}</a></th><td data-label="Description">{}</td><td data-label="{}">{}</td><td data-label="Created">{}</td><td data-label="Last used">{}</td>"#,
        href,
        t.name,
        desc,
        if admin { "Expires" } else { "Type" },
        third,
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
