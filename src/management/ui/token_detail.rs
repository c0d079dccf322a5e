//! One token's page: its facts, the key banner right after create,
//! regenerate or "View key", the actions the rules allow, and the edit form
//! (or a read-only permission list).

use http::StatusCode;

use super::{
    date, delete_form, duration_label, flashes_html, message_page, networks_field, owner_row,
    permissions_fieldset, signed_in_page, text_fields, type_field, type_label, Ctx, Draft, Flash,
    Kind, Resp,
};
use crate::control::{Manager, Op, TokenRef};
use crate::management::api::ApiError;
use crate::management::html::{alert, csrf_field, html, Html};
use crate::management::State;
use crate::model::TokenKind;
use crate::store::admin::TokenRow;

fn key_banner(k: &Kind, key: &str, fresh: bool, viewable: bool) -> Html {
    let (title, note) = if fresh {
        (
            format!("Copy your new {} now", k.one),
            if viewable {
                "Keep it somewhere safe. With the encryption key configured, you can view it again here."
            } else {
                "For security reasons it will not be shown again."
            },
        )
    } else {
        (
            format!("The key of this {}", k.one),
            "Anyone holding it can use the token: keep it secret.",
        )
    };
    html!(
        r#"<section class="key-banner" aria-labelledby="key-title"><h2 id="key-title">{}</h2><p>{}</p>
<div class="key-row"><code id="token-key" class="key">{}</code><button type="button" class="button primary" data-copy="token-key" aria-describedby="copy-status">Copy</button></div>
<p id="copy-status" class="copy-status" aria-live="polite"></p></section>"#,
        title,
        note,
        key
    )
}

/// `GET /{kind}/{id}`, and the same page after a refused action.
pub(super) async fn detail_page(
    state: &State,
    ctx: &Ctx,
    k: &Kind,
    id: i64,
    error: Option<ApiError>,
) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let flash = state.sessions.take_flash(&ctx.sid);
    let t = match mgr
        .show(&ctx.actor, TokenRef::of_kind(id, k.kind), false)
        .await
    {
        Ok(t) => t.token,
        Err(e) => {
            let e = ApiError::from_control(e);
            return message_page(
                ctx,
                e.status,
                "Cannot show this token",
                &e.message,
                &format!("/{}", k.slug),
            );
        }
    };
    let mut main = html!(
        r#"<nav class="crumbs" aria-label="Breadcrumb"><a href="/{}">{}</a> <span aria-hidden="true">/</span> <span aria-current="page">{}</span></nav>"#,
        k.slug,
        k.title,
        t.name
    );
    for f in &flash {
        if let Flash::Key {
            token_id,
            kind,
            key,
            fresh,
        } = f
        {
            if *token_id == t.id && *kind == k.kind {
                main.push(key_banner(k, key, *fresh, mgr.keys_viewable()));
            }
        }
    }
    main.push(flashes_html(&flash));
    if let Some(e) = &error {
        main.push(alert("error", &e.message));
    }
    main.push(facts(k, &t));
    main.push(actions(&mgr, ctx, k, &t));
    let owner = if k.kind == TokenKind::Admin {
        owner_row(state, ctx, &t).await
    } else {
        None
    };
    if mgr.may(&ctx.actor, Op::Update, &t) {
        let d = Draft::from_token(&t);
        main.push(html!(
            r#"<section aria-labelledby="edit-title"><h2 id="edit-title">Edit</h2><form method="post" action="/{}/{}" class="token-form stack">{}{}"#,
            k.slug,
            t.id,
            csrf_field(&ctx.csrf),
            text_fields(&d)
        ));
        main.push(networks_field(&d));
        if k.kind == TokenKind::ContentApi {
            main.push(type_field(&d));
        }
        main.push(permissions_fieldset(
            &mgr,
            ctx,
            k.kind,
            owner.as_ref(),
            &d,
            &t.permissions,
        ));
        main.push(Html::lit(r#"<div class="form-actions"><button type="submit" class="button primary">Save</button></div></form></section>"#));
    } else {
        main.push(permission_list(&t));
    }
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    signed_in_page(ctx, k.tab, status, &t.name, main)
}

/// The heading and the facts list.
fn facts(k: &Kind, t: &TokenRow) -> Html {
    let mut h = html!(r#"<h1>{}</h1><dl class="facts">"#, t.name);
    if k.kind == TokenKind::ContentApi {
        h.push(html!(
            "<div><dt>Type</dt><dd>{}</dd></div>",
            type_label(t.token_type)
        ));
    }
    h.push(html!(
        "<div><dt>Duration</dt><dd>{}</dd></div><div><dt>Expires</dt><dd>{}</dd></div><div><dt>Created</dt><dd>{}</dd></div><div><dt>Last used</dt><dd>{}</dd></div>",
        duration_label(t.lifespan_ms),
        date(t.expires_at, "Never"),
        date(Some(t.created_at), "—"),
        date(t.last_used_at, "Never")
    ));
    if t.old_key_expires_at.is_some() {
        h.push(html!(
            "<div><dt>Old key works until</dt><dd>{}</dd></div>",
            date(t.old_key_expires_at, "—")
        ));
    }
    if k.kind == TokenKind::Admin {
        h.push(html!(
            "<div><dt>Owner</dt><dd>{}</dd></div>",
            t.owner_email.as_deref().unwrap_or("—")
        ));
    }
    h.push(html!(
        r#"<div><dt>Allowed networks</dt><dd class="networks">{}</dd></div>"#,
        networks_list(t)
    ));
    h.push(Html::lit("</dl>"));
    h
}

/// The networks a token may be used from, or "Any address".
fn networks_list(t: &TokenRow) -> Html {
    if t.allowed_cidrs.is_empty() {
        return Html::lit(r#"<span class="muted">Any address</span>"#);
    }
    t.allowed_cidrs
        .iter()
        .map(|c| html!("<code>{}</code> ", c.to_string()))
        .collect()
}

/// The buttons the rules allow this actor: view key, regenerate, delete.
fn actions(mgr: &Manager<'_>, ctx: &Ctx, k: &Kind, t: &TokenRow) -> Html {
    let mut actions = Html::new();
    if mgr.keys_viewable() && t.encrypted_key.is_some() && mgr.may(&ctx.actor, Op::ViewKey, t) {
        actions.push(html!(
            r#"<form method="post" action="/{}/{}/reveal" class="inline">{}<button type="submit" class="button">View key</button></form>"#,
            k.slug,
            t.id,
            csrf_field(&ctx.csrf)
        ));
    }
    if mgr.may(&ctx.actor, Op::Regenerate, t) {
        actions.push(html!(
            r#"<form method="post" action="/{}/{}/regenerate" class="inline" data-confirm="Regenerate the key of “{}”? The current key stops working at once, or after the time chosen, everywhere." data-confirm-label="Regenerate">{}<label for="keep-old-for">Old key</label> <select id="keep-old-for" name="keep_old_for">{}</select> <button type="submit" class="button">Regenerate</button></form>"#,
            k.slug,
            t.id,
            t.name,
            csrf_field(&ctx.csrf),
            keep_old_options()
        ));
    }
    if mgr.may(&ctx.actor, Op::Delete, t) {
        actions.push(delete_form(ctx, k, t, false));
    }
    if actions == Html::new() {
        return actions;
    }
    html!(
        r#"<div class="actions" role="group" aria-label="Token actions">{}</div>"#,
        actions
    )
}

/// The regenerate form's choices for the replaced key (seconds, as the
/// API's `keepOldForSeconds`): at once by default.
fn keep_old_options() -> Html {
    const CHOICES: [(u64, &str); 4] = [
        (0, "stops at once"),
        (3_600, "works 1 more hour"),
        (86_400, "works 1 more day"),
        (604_800, "works 7 more days"),
    ];
    let mut h = Html::new();
    for (seconds, label) in CHOICES {
        h.push(html!(r#"<option value="{}">{}</option>"#, seconds, label));
    }
    h
}

/// What a token holds, for an actor who may not edit it.
fn permission_list(t: &TokenRow) -> Html {
    let mut h =
        Html::lit(r#"<section aria-labelledby="perm-title"><h2 id="perm-title">Permissions</h2>"#);
    if t.permissions.is_empty() {
        h.push(Html::lit(r#"<p class="muted">None.</p>"#));
    } else {
        h.push(Html::lit(r#"<ul class="plain">"#));
        for p in &t.permissions {
            h.push(html!("<li><code>{}</code></li>", p.to_string()));
        }
        h.push(Html::lit("</ul>"));
    }
    h.push(Html::lit("</section>"));
    h
}
