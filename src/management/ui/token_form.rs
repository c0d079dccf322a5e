//! The token forms: the fields of "Create new" and "Edit", and the
//! permission checkboxes, each box enabled only when the actor (and, for an
//! admin token, its owner) holds the permission.

use std::collections::BTreeSet;

use http::StatusCode;

use super::{signed_in_page, Ctx, Kind, Resp};
use crate::cidr::Cidr;
use crate::control::{Manager, PermissionGroup};
use crate::management::api::ApiError;
use crate::management::form::Form;
use crate::management::html::{alert, csrf_field, html, Html};
use crate::management::State;
use crate::model::{Permission, TokenKind};
use crate::store::admin::{TokenRow, UserRow};

/// What the user typed, to fill a form again after an error.
#[derive(Debug, Clone, Default)]
pub(super) struct Draft {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) duration: String,
    pub(super) token_type: String,
    pub(super) permissions: BTreeSet<String>,
    /// The allowed networks as typed: blocks separated by blanks, commas
    /// or lines.
    pub(super) cidrs: String,
}

impl Draft {
    pub(super) fn from_form(f: &Form) -> Self {
        Self {
            name: f.get("name").unwrap_or("").to_owned(),
            description: f.get("description").unwrap_or("").to_owned(),
            duration: f.get("duration").unwrap_or("").to_owned(),
            token_type: f.get("type").unwrap_or("").to_owned(),
            permissions: f.all("permission").map(str::to_owned).collect(),
            cidrs: f.get("allowed_cidrs").unwrap_or("").to_owned(),
        }
    }

    pub(super) fn from_token(t: &TokenRow) -> Self {
        Self {
            name: t.name.clone(),
            description: t.description.clone(),
            duration: String::new(),
            token_type: t
                .token_type
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            permissions: t.permissions.iter().map(|p| p.to_string()).collect(),
            cidrs: t
                .allowed_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    pub(super) fn parsed_permissions(&self) -> Result<Vec<Permission>, String> {
        self.permissions
            .iter()
            .map(|p| Permission::parse(p))
            .collect()
    }

    /// The allowed networks; a refusal names the field and the value.
    pub(super) fn parsed_cidrs(&self) -> Result<Vec<Cidr>, String> {
        self.cidrs
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|c| !c.is_empty())
            .map(|c| Cidr::parse(c).map_err(|e| format!("Allowed networks: {e}")))
            .collect()
    }
}

pub(super) fn text_fields(d: &Draft) -> Html {
    html!(
        r#"<div class="field"><label for="name">Name</label><input type="text" id="name" name="name" value="{}" required maxlength="255" autocomplete="off"></div>
<div class="field"><label for="description">Description <span class="optional">(optional)</span></label><textarea id="description" name="description" rows="3" maxlength="1000">{}</textarea></div>
"#,
        d.name,
        d.description
    )
}

/// The allowed networks (both kinds, create and edit).
pub(super) fn networks_field(d: &Draft) -> Html {
    html!(
        r#"<div class="field"><label for="allowed_cidrs">Allowed networks <span class="optional">(optional)</span></label><textarea id="allowed_cidrs" name="allowed_cidrs" rows="3" spellcheck="false" autocomplete="off" aria-describedby="allowed_cidrs-hint">{}</textarea><p id="allowed_cidrs-hint" class="hint">CIDR blocks or addresses, one a line (for example <code>10.0.0.0/8</code>, <code>2001:db8::/32</code>). Requests from any other address are refused. Leave empty to allow every address.</p></div>
"#,
        d.cidrs
    )
}

fn duration_field(d: &Draft) -> Html {
    let mut h = Html::lit(
        r#"<div class="field"><label for="duration">Token duration</label><select id="duration" name="duration" aria-describedby="duration-hint">"#,
    );
    let selected = if d.duration.is_empty() {
        "30"
    } else {
        d.duration.as_str()
    };
    for (v, label) in [
        ("7", "7 days"),
        ("30", "30 days"),
        ("90", "90 days"),
        ("unlimited", "Unlimited"),
    ] {
        h.push(html!(
            r#"<option value="{}"{}>{}</option>"#,
            v,
            if v == selected { " selected" } else { "" },
            label
        ));
    }
    h.push(Html::lit(r#"</select><p id="duration-hint" class="hint">The token stops working after this time. It cannot be changed later.</p></div>"#));
    h
}

pub(super) fn type_field(d: &Draft) -> Html {
    let current = if d.token_type.is_empty() {
        "read-only"
    } else {
        d.token_type.as_str()
    };
    let mut h = Html::lit(r#"<fieldset class="field choices"><legend>Token type</legend>"#);
    for (v, label, hint) in [
        (
            "read-only",
            "Read-only",
            "Only the find and findOne actions.",
        ),
        ("full-access", "Full access", "Every Content API action."),
        ("custom", "Custom", "Exactly the actions chosen below."),
    ] {
        h.push(html!(
            r#"<div class="choice"><input type="radio" id="type-{}" name="type" value="{}"{} aria-describedby="type-{}-hint"><label for="type-{}">{}</label> <span id="type-{}-hint" class="hint">{}</span></div>"#,
            v,
            v,
            if v == current { " checked" } else { "" },
            v,
            v,
            label,
            v,
            hint
        ));
    }
    h.push(Html::lit("</fieldset>"));
    h
}

/// How a permission reads next to its checkbox.
pub(super) fn permission_label(category: &str, p: &Permission) -> Html {
    let short = p
        .action
        .strip_prefix(category)
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or(&p.action);
    match &p.subject {
        Some(s) => html!(r#"{} <span class="subject">{}</span>"#, short, s),
        None => Html::text(short),
    }
}

/// A category name people read: `plugin::content-manager` -> "Content manager".
pub(super) fn category_label(category: &str) -> String {
    let name = category.rsplit("::").next().unwrap_or(category);
    // `article.article` (a content type's uid) reads as one word.
    let mut parts: Vec<&str> = name.split('.').filter(|p| !p.is_empty()).collect();
    parts.dedup();
    let mut words: Vec<String> = parts
        .iter()
        .flat_map(|p| p.split(['-', '_']))
        .filter(|w| !w.is_empty())
        .map(|w| match w {
            "api" => "API".to_owned(),
            w => w.to_owned(),
        })
        .collect();
    if let Some(first) = words.first_mut() {
        let mut c = first.chars();
        if let Some(f) = c.next() {
            *first = f.to_uppercase().chain(c).collect();
        }
    }
    words.join(" ")
}

/// Checkbox groups. `enabled` says which may be ticked; the others are
/// shown disabled (held by neither the actor nor the owner).
fn permission_groups(
    groups: &[PermissionGroup],
    selected: &BTreeSet<String>,
    enabled: &dyn Fn(&Permission) -> bool,
) -> Html {
    let mut h = Html::new();
    let mut n = 0usize;
    for g in groups {
        h.push(html!(
            r#"<fieldset class="group"><legend>{} <code>{}</code></legend><div class="checks">"#,
            category_label(&g.category),
            g.category
        ));
        for p in &g.permissions {
            n += 1;
            let value = p.to_string();
            let on = enabled(p);
            h.push(html!(
                r#"<div class="check{}"><input type="checkbox" id="perm-{}" name="permission" value="{}"{}{}><label for="perm-{}" title="{}">{}{}</label></div>"#,
                if on { "" } else { " disabled" },
                n,
                value,
                if selected.contains(&value) { " checked" } else { "" },
                if on { "" } else { " disabled" },
                n,
                value,
                permission_label(&g.category, p),
                if on {
                    Html::new()
                } else {
                    Html::lit(r#"<span class="visually-hidden"> (not yours to give)</span>"#)
                }
            ));
        }
        h.push(Html::lit("</div></fieldset>"));
    }
    if n == 0 {
        h.push(Html::lit(
            r#"<p class="muted">No permissions are known.</p>"#,
        ));
    }
    h
}

/// The owner of an admin token, for its permission ceiling.
pub(super) async fn owner_row(state: &State, ctx: &Ctx, t: &TokenRow) -> Option<UserRow> {
    match (ctx.actor.user(), t.owner_id) {
        (Some(u), Some(o)) if u.id == o => Some(u.clone()),
        (_, Some(o)) => state.store.user_by_id(o).await.ok().flatten(),
        _ => None,
    }
}

/// The permissions fieldset of a form.
pub(super) fn permissions_fieldset(
    mgr: &Manager<'_>,
    ctx: &Ctx,
    kind: TokenKind,
    owner: Option<&UserRow>,
    d: &Draft,
    held: &[Permission],
) -> Html {
    match kind {
        TokenKind::ContentApi => html!(
            r#"<fieldset class="field permissions" id="custom-permissions"><legend>Permissions</legend><p class="hint">For the <strong>Custom</strong> type: the Content API actions the token may call, by content type.</p>{}</fieldset>"#,
            permission_groups(&mgr.content_api_catalog(), &d.permissions, &|_| true)
        ),
        TokenKind::Admin => {
            let mut also: Vec<Permission> = held.to_vec();
            if let Some(o) = owner {
                also.extend(o.permissions.to_sorted_vec());
            }
            let groups = mgr.admin_catalog(&also);
            let enabled = |p: &Permission| owner.is_some_and(|o| o.holds(p)) && ctx.actor.holds(p);
            html!(
                r#"<fieldset class="field permissions"><legend>Permissions</legend><p class="hint">The admin actions this token may perform. Permissions that the owner, or you through the token you signed in with, do not hold are disabled: a token never holds more than its owner.</p>{}</fieldset>"#,
                permission_groups(&groups, &d.permissions, &enabled)
            )
        }
    }
}

/// `GET /{kind}/new`, and the same form again after a refused create.
pub(super) async fn new_page(
    state: &State,
    ctx: &Ctx,
    k: &Kind,
    d: &Draft,
    error: Option<&ApiError>,
) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let title = format!("Create new {}", k.one);
    let mut main = html!(
        r#"<nav class="crumbs" aria-label="Breadcrumb"><a href="/{}">{}</a> <span aria-hidden="true">/</span> <span aria-current="page">New</span></nav><h1>{}</h1>"#,
        k.slug,
        k.title,
        title
    );
    if let Some(e) = error {
        main.push(alert("error", &e.message));
    }
    main.push(html!(
        r#"<form method="post" action="/{}" class="token-form stack">{}{}{}"#,
        k.slug,
        csrf_field(&ctx.csrf),
        text_fields(d),
        duration_field(d)
    ));
    main.push(networks_field(d));
    if k.kind == TokenKind::ContentApi {
        main.push(type_field(d));
    }
    main.push(permissions_fieldset(
        &mgr,
        ctx,
        k.kind,
        ctx.actor.user(),
        d,
        &[],
    ));
    main.push(html!(
        r#"<div class="form-actions"><a class="button" href="/{}">Cancel</a><button type="submit" class="button primary">Save</button></div></form>"#,
        k.slug
    ));
    let status = error.map_or(StatusCode::OK, |e| e.status);
    signed_in_page(ctx, k.tab, status, &title, main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_labels() {
        assert_eq!(category_label("plugin::content-manager"), "Content manager");
        assert_eq!(category_label("admin::api-tokens"), "API tokens");
        assert_eq!(category_label("api::article.article"), "Article");
        assert_eq!(
            category_label("plugin::users-permissions.user"),
            "Users permissions user"
        );
        assert_eq!(category_label("plugin::upload"), "Upload");
    }

    #[test]
    fn permission_labels_are_escaped() {
        let p = Permission::new("plugin::x.read", Some("<b>".into()));
        assert_eq!(
            permission_label("plugin::x", &p).as_str(),
            r#"read <span class="subject">&lt;b&gt;</span>"#
        );
    }

    #[test]
    fn allowed_networks_as_typed() {
        let d = |cidrs: &str| Draft {
            cidrs: cidrs.into(),
            ..Draft::default()
        };
        let shown = |cidrs: &str| -> Vec<String> {
            d(cidrs)
                .parsed_cidrs()
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert!(shown("").is_empty());
        assert!(shown(" \r\n ").is_empty());
        assert_eq!(
            shown("10.0.0.0/8\r\n2001:db8::/32, 192.0.2.7"),
            ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
        );
        assert_eq!(
            d("10.0.0.0/8\n10.0.0.1/8").parsed_cidrs().unwrap_err(),
            "Allowed networks: `10.0.0.1/8` has host bits set: the block is 10.0.0.0/8 (or write 10.0.0.1/32 for the one address)"
        );
        let h = networks_field(&d("\"><script>")).into_string();
        assert!(
            h.contains("&quot;&gt;&lt;script&gt;") && !h.contains("<script>"),
            "{h}"
        );
    }

    #[test]
    fn a_name_with_markup_is_shown_as_text() {
        let d = Draft {
            name: "<script>alert(1)</script>".into(),
            description: "\"><img src=x>".into(),
            ..Draft::default()
        };
        let h = text_fields(&d).into_string();
        assert!(!h.contains("<script>") && !h.contains("<img"), "{h}");
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(h.contains("&quot;&gt;&lt;img src=x&gt;"));
    }
}
