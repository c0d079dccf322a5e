//! The web page: Strapi's "API Tokens" and "Admin Tokens" settings pages,
//! served by authgate for a CMS that has none.
//!
//! | page | what |
//! | --- | --- |
//! | `GET /` | sign in by pasting an admin token (or, signed in, go to the lists) |
//! | `GET /api-tokens`, `/admin-tokens` | the lists: name, description, type, expiry ("expires in 3 days"; `?sort=expiresAt:asc` or `:desc`), created, last used, owner |
//! | `GET /{kind}/new`, `POST /{kind}` | the create form; the key is then shown once with a copy button |
//! | `GET /{kind}/:id`, `POST /{kind}/:id` | a token: details, edit form, and its actions |
//! | `POST /{kind}/:id/regenerate`, `/delete`, `/reveal` | regenerate (the old key stopping at once, or after 1 hour, 1 day or 7 days), delete (both confirmed in a dialog), view the key |
//!
//! Every page after sign-in re-authenticates the session's token exactly
//! as the API does ([`super::auth`]), so a revoked token ends its session
//! on the next click, and acts through [`crate::control`] with the same
//! rules as the API and the CLI; buttons the rules would refuse are not
//! shown ([`crate::control::Manager::may`]), but the rules, not the buttons,
//! decide. Every POST carries the session's CSRF token and must come from
//! this origin. Forms work without JavaScript (only the confirmation
//! dialogs and the copy button need it).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use zeroize::Zeroizing;

use crate::audit::{Origin, Via};
use crate::authz::Denial;
use crate::control::{self, Actor, CreateRequest, TokenRef};
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::{TokenRow, TokenUpdate};

use super::api::ApiError;
use super::form::Form;
use super::html::{self, alert, csrf_field, date, html, Html, Nav, Tab};
use super::session::{self, Flash, LOGIN_COOKIE, SESSION_COOKIE};
use super::{auth, read_body, Body, State};

mod audit_log;
mod token_detail;
mod token_form;
mod tokens_list;

use token_detail::detail_page;
use token_form::{
    networks_field, new_page, owner_row, permissions_fieldset, text_fields, type_field, Draft,
};
use tokens_list::{delete_form, list_page};

type Resp = Response<Body>;

/// One of the two token settings pages.
struct Kind {
    kind: TokenKind,
    slug: &'static str,
    title: &'static str,
    one: &'static str,
    tab: Tab,
}

const KINDS: [Kind; 2] = [
    Kind {
        kind: TokenKind::ContentApi,
        slug: "api-tokens",
        title: "API Tokens",
        one: "API Token",
        tab: Tab::ApiTokens,
    },
    Kind {
        kind: TokenKind::Admin,
        slug: "admin-tokens",
        title: "Admin Tokens",
        one: "Admin Token",
        tab: Tab::AdminTokens,
    },
];

fn kind(slug: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.slug == slug)
}

// ----- responses -------------------------------------------------------------

fn with_security_headers(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(html::CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: with it, browsers send `Origin: null` on form
    // posts, and the origin check could not tell ours from a forgery.
    // No key ever appears in a URL, so a same-origin referrer reveals nothing.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn html_response(status: StatusCode, body: Html) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.into_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    with_security_headers(r)
}

fn redirect(location: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    with_security_headers(r)
}

fn add_cookie(r: &mut Resp, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A page for a signed-in user.
fn signed_in_page(ctx: &Ctx, tab: Tab, status: StatusCode, title: &str, main: Html) -> Resp {
    let email = ctx.actor.user().map_or("", |u| u.email.as_str());
    let nav = Nav {
        email,
        csrf: &ctx.csrf,
        tab,
    };
    html_response(status, html::page(title, Some(&nav), main))
}

fn message_page(ctx: &Ctx, status: StatusCode, title: &str, text: &str, back: &str) -> Resp {
    let main = html!(
        r#"<h1>{}</h1>{}<p><a href="{}">Back</a></p>"#,
        title,
        alert("error", text),
        back
    );
    signed_in_page(ctx, Tab::None, status, title, main)
}

// ----- sign-in and the session -------------------------------------------------

/// The sign-in page, with a fresh double-submit token for its form.
fn sign_in(tls: bool, status: StatusCode, error: Option<&str>) -> Resp {
    let token = match session::random_token() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "management: no randomness for the sign-in form");
            return html_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                html::page("Error", None, alert("error", "Internal error")),
            );
        }
    };
    let mut main = Html::lit(r#"<div class="narrow"><h1>Sign in</h1>"#);
    if let Some(e) = error {
        main.push(alert("error", e));
    }
    main.push(html!(
        r#"<p>Manage the API tokens and admin tokens of the CMS behind this gateway.</p>
<form method="post" action="/login" class="stack">
{}
<div class="field">
<label for="token">Admin token</label>
<input type="password" id="token" name="token" required autocomplete="off" spellcheck="false" autofocus aria-describedby="token-hint">
<p id="token-hint" class="hint">Paste the key of an admin token. What you can do here is what both the token and its owner may do (for example <code>admin::api-tokens.read</code>). The key stays on the server; this browser keeps only a session cookie.</p>
</div>
<div class="form-actions"><button type="submit" class="button primary">Sign in</button></div>
</form></div>"#,
        csrf_field(&token)
    ));
    let mut r = html_response(status, html::page("Sign in", None, main));
    add_cookie(
        &mut r,
        session::set_cookie(
            &session::cookie_name(LOGIN_COOKIE, tls),
            &token,
            tls,
            Some(3600),
        ),
    );
    r
}

/// A signed-in request: the session and the actor behind it.
struct Ctx {
    sid: String,
    csrf: String,
    actor: Actor,
    /// Where the request came from, for the audit trail.
    origin: Origin,
}

/// Find the session and re-authenticate its token. On failure, the
/// response to send instead (sign-in).
async fn signed_in(state: &State, parts: &Parts, tls: bool) -> Result<Ctx, Resp> {
    let Some(cur) = session::cookie(&parts.headers, &session::cookie_name(SESSION_COOKIE, tls))
        .and_then(|id| state.sessions.current(id))
    else {
        return Err(if parts.method == Method::GET {
            redirect("/")
        } else {
            sign_in(
                tls,
                StatusCode::UNAUTHORIZED,
                Some("Your session has ended: sign in again."),
            )
        });
    };
    let client = super::client_ip(&parts.extensions);
    match auth::authenticate(state, cur.key.as_bytes(), None, client).await {
        Ok(a) => Ok(Ctx {
            sid: cur.id,
            csrf: cur.csrf,
            actor: Actor::Token(a),
            origin: super::origin(&parts.extensions, Via::Ui),
        }),
        Err(Denial::StoreUnavailable) => Err(html_response(
            StatusCode::SERVICE_UNAVAILABLE,
            html::page(
                "Unavailable",
                None,
                alert(
                    "error",
                    "The token store is unreachable right now. Try again in a moment.",
                ),
            ),
        )),
        Err(d) => {
            state.sessions.remove(&cur.id);
            let mut r = sign_in(
                tls,
                StatusCode::UNAUTHORIZED,
                Some(&format!("Signed out: {}.", d.message())),
            );
            add_cookie(
                &mut r,
                session::set_cookie(&session::cookie_name(SESSION_COOKIE, tls), "", tls, Some(0)),
            );
            Err(r)
        }
    }
}

/// A form POST must say it comes from this origin: its `Origin`, or
/// without one its `Referer`, names this host. A POST that names no origin
/// at all is refused too (every browser sends one of them on a form post
/// under our `Referrer-Policy`), as is any `Sec-Fetch-Site` but
/// `same-origin`/`none`. The CSRF token is checked besides.
fn same_origin(parts: &Parts) -> bool {
    from_this_origin(&parts.headers)
}

fn from_this_origin(h: &http::HeaderMap) -> bool {
    if h.get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site")
    {
        return false;
    }
    let Some(host) = h.get(header::HOST).map(HeaderValue::as_bytes) else {
        return false;
    };
    // `scheme://authority[/path]`: the authority, or `None` (also for `null`).
    let authority = |v: &HeaderValue| -> Option<Vec<u8>> {
        let (_, rest) = v.to_str().ok()?.split_once("://")?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        Some(rest.as_bytes()[..end].to_vec())
    };
    let claimed = match (h.get(header::ORIGIN), h.get(header::REFERER)) {
        (Some(origin), _) => authority(origin),
        (None, Some(referer)) => authority(referer),
        (None, None) => None,
    };
    claimed.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

fn csrf_ok(parts: &Parts, form: &Form, expected: &str) -> bool {
    same_origin(parts)
        && form
            .get("_csrf")
            .is_some_and(|t| session::same(t, expected))
}

fn csrf_refused(ctx: &Ctx) -> Resp {
    message_page(
        ctx,
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form is no longer valid (or did not come from this page). Reload the page and try again.",
        "/",
    )
}

async fn read_form(body: Incoming) -> Option<Form> {
    let bytes = read_body(body).await.ok()?;
    Form::parse(&bytes).ok()
}

// ----- the router ------------------------------------------------------------

/// Handle one web request.
pub async fn handle(state: &State, req: Request<Incoming>, tls: bool) -> Resp {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = parts.method == Method::GET || parts.method == Method::HEAD;
    let post = parts.method == Method::POST;
    match (segs.as_slice(), get, post) {
        (["assets", "app.css"], true, _) => asset("text/css; charset=utf-8", html::CSS),
        (["assets", "app.js"], true, _) => asset("text/javascript; charset=utf-8", html::JS),
        (["assets", "favicon.svg"], true, _) => asset("image/svg+xml", html::FAVICON),
        ([], true, _) => {
            let has_session =
                session::cookie(&parts.headers, &session::cookie_name(SESSION_COOKIE, tls))
                    .and_then(|id| state.sessions.current(id))
                    .is_some();
            if has_session {
                redirect("/api-tokens")
            } else {
                sign_in(tls, StatusCode::OK, None)
            }
        }
        (["login"], _, true) => login(state, &parts, body, tls).await,
        (["logout"], _, true) => match signed_in(state, &parts, tls).await {
            Err(r) => r,
            Ok(ctx) => {
                let Some(form) = read_form(body).await else {
                    return csrf_refused(&ctx);
                };
                if !csrf_ok(&parts, &form, &ctx.csrf) {
                    return csrf_refused(&ctx);
                }
                state.sessions.remove(&ctx.sid);
                let mut r = redirect("/");
                add_cookie(
                    &mut r,
                    session::set_cookie(
                        &session::cookie_name(SESSION_COOKIE, tls),
                        "",
                        tls,
                        Some(0),
                    ),
                );
                r
            }
        },
        (["audit-log", rest @ ..], true, _) => {
            let ctx = match signed_in(state, &parts, tls).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            match rest {
                [] => audit_log::list(state, &ctx, parts.uri.query()).await,
                [i] => match i.parse::<i64>() {
                    Ok(id) => audit_log::detail(state, &ctx, id).await,
                    Err(_) => not_found(),
                },
                _ => not_found(),
            }
        }
        ([slug, rest @ ..], _, _) if kind(slug).is_some() && (get || post) => {
            let Some(k) = kind(slug) else {
                return not_found();
            };
            let ctx = match signed_in(state, &parts, tls).await {
                Ok(c) => c,
                Err(r) => return r,
            };
            let form = if post {
                match read_form(body).await {
                    Some(f) if csrf_ok(&parts, &f, &ctx.csrf) => Some(f),
                    _ => return csrf_refused(&ctx),
                }
            } else {
                None
            };
            let id = |s: &str| s.parse::<i64>().ok();
            match (rest, form) {
                ([], None) => list_page(state, &ctx, k, parts.uri.query()).await,
                (["new"], None) => new_page(state, &ctx, k, &Draft::default(), None).await,
                ([], Some(f)) => create(state, &ctx, k, &f).await,
                ([i], None) if id(i).is_some() => {
                    detail_page(state, &ctx, k, id(i).unwrap_or(0), None).await
                }
                ([i], Some(f)) if id(i).is_some() => {
                    update(state, &ctx, k, id(i).unwrap_or(0), &f).await
                }
                ([i, action], Some(f)) if id(i).is_some() => {
                    token_action(state, &ctx, k, id(i).unwrap_or(0), action, &f).await
                }
                _ => message_page(
                    &ctx,
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such page.",
                    &format!("/{}", k.slug),
                ),
            }
        }
        _ => not_found(),
    }
}

fn not_found() -> Resp {
    html_response(
        StatusCode::NOT_FOUND,
        html::page(
            "Not found",
            None,
            html!(
                r#"<h1>Not found</h1>{}<p><a href="/">Go to the start page</a></p>"#,
                alert("error", "There is no such page.")
            ),
        ),
    )
}

async fn login(state: &State, parts: &Parts, body: Incoming, tls: bool) -> Resp {
    let form = read_form(body).await.unwrap_or_default();
    let expected = session::cookie(&parts.headers, &session::cookie_name(LOGIN_COOKIE, tls));
    let fresh = match (expected, form.get("_csrf")) {
        (Some(c), Some(f)) => session::same(c, f) && same_origin(parts),
        _ => false,
    };
    if !fresh {
        return sign_in(
            tls,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Paste the token again."),
        );
    }
    let key = Zeroizing::new(form.get("token").unwrap_or("").trim().to_owned());
    let client = super::client_ip(&parts.extensions);
    if let Err(d) = auth::authenticate(state, key.as_bytes(), None, client).await {
        let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let why = match d {
            Denial::InvalidCredentials => {
                "That is not a valid admin token (an API token, a mistyped key, or one that was regenerated or deleted)."
                    .to_owned()
            }
            other => format!("{}.", other.message()),
        };
        return sign_in(tls, status, Some(&why));
    }
    let sid = match state.sessions.create(key) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "management: cannot create a session");
            return sign_in(
                tls,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("Internal error"),
            );
        }
    };
    let mut r = redirect("/api-tokens");
    add_cookie(
        &mut r,
        session::set_cookie(&session::cookie_name(SESSION_COOKIE, tls), &sid, tls, None),
    );
    add_cookie(
        &mut r,
        session::set_cookie(&session::cookie_name(LOGIN_COOKIE, tls), "", tls, Some(0)),
    );
    r
}

// ----- lists -----------------------------------------------------------------

fn flashes_html(flash: &[Flash]) -> Html {
    let mut h = Html::new();
    for f in flash {
        match f {
            Flash::Notice(m) => h.push(alert("success", m)),
            Flash::Error(m) => h.push(alert("error", m)),
            Flash::Key { .. } => {}
        }
    }
    h
}

fn type_label(t: Option<ContentApiType>) -> &'static str {
    match t {
        Some(ContentApiType::ReadOnly) => "Read-only",
        Some(ContentApiType::FullAccess) => "Full access",
        Some(ContentApiType::Custom) => "Custom",
        None => "—",
    }
}

fn duration_label(ms: Option<i64>) -> String {
    match ms {
        None => "Unlimited".into(),
        Some(ms) => format!("{} days", ms / 86_400_000),
    }
}

async fn create(state: &State, ctx: &Ctx, k: &Kind, f: &Form) -> Resp {
    let d = Draft::from_form(f);
    let invalid = |m: String| ApiError::validation(m);
    let req = (|| -> Result<CreateRequest, ApiError> {
        let lifespan_ms = control::parse_duration(&d.duration).map_err(invalid)?;
        let (token_type, permissions) = match k.kind {
            TokenKind::ContentApi => {
                let t: ContentApiType = d.token_type.parse().map_err(invalid)?;
                let perms = if t == ContentApiType::Custom {
                    d.parsed_permissions().map_err(invalid)?
                } else {
                    Vec::new()
                };
                (Some(t), perms)
            }
            TokenKind::Admin => (None, d.parsed_permissions().map_err(invalid)?),
        };
        Ok(CreateRequest {
            kind: k.kind,
            name: d.name.clone(),
            description: d.description.trim().to_owned(),
            token_type,
            lifespan_ms,
            owner: None,
            permissions,
            allowed_cidrs: d.parsed_cidrs().map_err(invalid)?,
        })
    })();
    let created = match req {
        Err(e) => Err(e),
        Ok(req) => state
            .manager(ctx.origin.clone())
            .create(&ctx.actor, req)
            .await
            .map_err(ApiError::from_control),
    };
    match created {
        Err(e) => new_page(state, ctx, k, &d, Some(&e)).await,
        Ok(c) => {
            audit(&ctx.actor, "created", &c.token);
            show_new_key(state, ctx, k, c)
        }
    }
}

/// To the token's page, which shows its new key once.
fn show_new_key(state: &State, ctx: &Ctx, k: &Kind, t: control::TokenWithKey) -> Resp {
    if let Some(key) = t.key {
        state.sessions.push_flash(
            &ctx.sid,
            Flash::Key {
                token_id: t.token.id,
                kind: k.kind,
                key,
                fresh: true,
            },
        );
    }
    redirect(&format!("/{}/{}", k.slug, t.token.id))
}

/// The regenerate form's choice: how long the replaced key keeps working
/// (`keep_old_for`, seconds; absent or 0: it stops at once).
fn keep_old_for(f: &Form) -> Result<std::time::Duration, ApiError> {
    match f
        .get("keep_old_for")
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => Ok(std::time::Duration::ZERO),
        Some(v) => v
            .parse()
            .map(std::time::Duration::from_secs)
            .map_err(|_| ApiError::validation("choose how long the old key keeps working")),
    }
}

/// `POST /{kind}/:id/regenerate`: the new key is shown once, on the
/// token's page.
async fn regenerate(
    state: &State,
    ctx: &Ctx,
    k: &Kind,
    r: TokenRef,
    keep_old_for: std::time::Duration,
) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    match mgr.regenerate(&ctx.actor, r, keep_old_for).await {
        Ok(t) => {
            audit(&ctx.actor, "regenerated", &t.token);
            show_new_key(state, ctx, k, t)
        }
        Err(e) => detail_page(state, ctx, k, r.id, Some(ApiError::from_control(e))).await,
    }
}

fn audit(actor: &Actor, what: &str, t: &TokenRow) {
    tracing::info!(
        target: "authgate::management",
        actor = %actor,
        token_id = t.id,
        kind = t.kind.as_str(),
        name = %t.name,
        "token {what} (web page)"
    );
}

async fn update(state: &State, ctx: &Ctx, k: &Kind, id: i64, f: &Form) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let d = Draft::from_form(f);
    let r = TokenRef::of_kind(id, k.kind);
    let result = async {
        let current = mgr
            .show(&ctx.actor, r, false)
            .await
            .map_err(ApiError::from_control)?
            .token;
        let mut submitted = d.parsed_permissions().map_err(ApiError::validation)?;
        let allowed_cidrs = d.parsed_cidrs().map_err(ApiError::validation)?;
        let (token_type, permissions) = match k.kind {
            TokenKind::ContentApi => {
                let t: ContentApiType = d.token_type.parse().map_err(ApiError::validation)?;
                if t != ContentApiType::Custom {
                    submitted.clear();
                }
                (Some(t), submitted)
            }
            TokenKind::Admin => {
                // Disabled boxes are not submitted: keep what the actor may
                // not change, take the rest from the form.
                let owner = owner_row(state, ctx, &current).await;
                let changeable = |p: &Permission| {
                    owner.as_ref().is_some_and(|o| o.holds(p)) && ctx.actor.holds(p)
                };
                let mut perms: Vec<Permission> =
                    submitted.into_iter().filter(|p| changeable(p)).collect();
                perms.extend(
                    current
                        .permissions
                        .iter()
                        .filter(|p| !changeable(p))
                        .cloned(),
                );
                perms.sort();
                perms.dedup();
                (None, perms)
            }
        };
        mgr.update(
            &ctx.actor,
            r,
            TokenUpdate {
                name: Some(d.name.clone()),
                description: Some(d.description.trim().to_owned()),
                token_type,
                permissions: Some(permissions),
                allowed_cidrs: Some(allowed_cidrs),
            },
        )
        .await
        .map_err(ApiError::from_control)
    }
    .await;
    match result {
        Ok(t) => {
            audit(&ctx.actor, "updated", &t);
            state
                .sessions
                .push_flash(&ctx.sid, Flash::Notice("Saved.".into()));
            redirect(&format!("/{}/{}", k.slug, id))
        }
        Err(e) => detail_page(state, ctx, k, id, Some(e)).await,
    }
}

async fn token_action(state: &State, ctx: &Ctx, k: &Kind, id: i64, action: &str, f: &Form) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let r = TokenRef::of_kind(id, k.kind);
    let here = format!("/{}/{}", k.slug, id);
    match action {
        "regenerate" => match keep_old_for(f) {
            Err(e) => detail_page(state, ctx, k, id, Some(e)).await,
            Ok(keep) => regenerate(state, ctx, k, r, keep).await,
        },
        "reveal" => match mgr.show(&ctx.actor, r, true).await {
            Ok(t) => {
                if let Some(key) = t.key {
                    state.sessions.push_flash(
                        &ctx.sid,
                        Flash::Key {
                            token_id: id,
                            kind: k.kind,
                            key,
                            fresh: false,
                        },
                    );
                }
                redirect(&here)
            }
            Err(e) => detail_page(state, ctx, k, id, Some(ApiError::from_control(e))).await,
        },
        "delete" => match mgr.delete(&ctx.actor, r).await {
            Ok(t) => {
                audit(&ctx.actor, "deleted", &t);
                state.sessions.push_flash(
                    &ctx.sid,
                    Flash::Notice(format!("Deleted the token “{}”.", t.name)),
                );
                redirect(&format!("/{}", k.slug))
            }
            Err(e) => detail_page(state, ctx, k, id, Some(ApiError::from_control(e))).await,
        },
        _ => message_page(
            ctx,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such action.",
            &here,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_posts_must_name_this_origin() {
        let host = "127.0.0.1:9091";
        let rows: &[(&[(&str, &str)], bool)] = &[
            (&[("origin", "http://127.0.0.1:9091")], true),
            (&[("origin", "https://127.0.0.1:9091")], true),
            (&[("origin", "http://evil.example")], false),
            (&[("origin", "null")], false),
            (&[("referer", "http://127.0.0.1:9091/api-tokens/new")], true),
            (&[("referer", "http://127.0.0.1:9091?x")], true),
            (&[("referer", "http://127.0.0.1:90911/")], false),
            (&[("referer", "http://evil.example/127.0.0.1:9091")], false),
            // Origin wins over Referer.
            (
                &[
                    ("origin", "http://evil.example"),
                    ("referer", "http://127.0.0.1:9091/"),
                ],
                false,
            ),
            (&[], false),
            (
                &[
                    ("origin", "http://127.0.0.1:9091"),
                    ("sec-fetch-site", "cross-site"),
                ],
                false,
            ),
            (
                &[
                    ("origin", "http://127.0.0.1:9091"),
                    ("sec-fetch-site", "same-origin"),
                ],
                true,
            ),
        ];
        for (headers, want) in rows {
            let mut h = http::HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(host));
            for (k, v) in *headers {
                h.insert(*k, HeaderValue::from_static(v));
            }
            assert_eq!(from_this_origin(&h), *want, "{headers:?}");
        }
    }

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = Request::builder().method("POST").uri("/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn posts_must_come_from_this_origin() {
        // Issue 17: a POST naming no origin at all is refused (it was
        // accepted).
        assert!(!same_origin(&parts(&[("host", "127.0.0.1:9091")])));
        assert!(same_origin(&parts(&[
            ("host", "127.0.0.1:9091"),
            ("origin", "http://127.0.0.1:9091")
        ])));
        assert!(!same_origin(&parts(&[
            ("host", "127.0.0.1:9091"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&parts(&[
            ("host", "127.0.0.1:9091"),
            ("origin", "null")
        ])));
        assert!(!same_origin(&parts(&[
            ("host", "127.0.0.1:9091"),
            ("sec-fetch-site", "cross-site")
        ])));
    }
}
