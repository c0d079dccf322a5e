//! The web page: Strapi's "API Tokens" and "Admin Tokens" settings pages,
//! served by authgate for a CMS that has none.
//!
//! | page | what |
//! | --- | --- |
//! | `GET /` | sign in by pasting an admin token (or, signed in, go to the lists) |
//! | `GET /api-tokens`, `/admin-tokens` | the lists: name, description, type (or expiry), created, last used, owner |
//! | `GET /{kind}/new`, `POST /{kind}` | the create form; the key is then shown once with a copy button |
//! | `GET /{kind}/:id`, `POST /{kind}/:id` | a token: details, edit form, and its actions |
//! | `POST /{kind}/:id/regenerate`, `/delete`, `/reveal` | regenerate, delete (both confirmed in a dialog), view the key |
//!
//! Every page after sign-in re-authenticates the session's token exactly
//! as the API does ([`super::auth`]), so a revoked token ends its session
//! on the next click, and acts through [`crate::manage`] with the same
//! rules as the API and the CLI; buttons the rules would refuse are not
//! shown ([`crate::manage::Manager::may`]), but the rules, not the buttons,
//! decide. Every POST carries the session's CSRF token and must come from
//! this origin. Forms work without JavaScript (only the confirmation
//! dialogs and the copy button need it).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use zeroize::Zeroizing;

use crate::audit::{Origin, Via};
use crate::authz::Denial;
use crate::manage::{self, Actor, CreateRequest, Manager, Op, PermissionGroup, TokenRef};
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::{TokenRow, TokenUpdate, UserRow};

use super::api::ApiError;
use super::form::Form;
use super::html::{self, alert, csrf_field, date, esc, Nav, Tab};
use super::session::{self, Flash, LOGIN_COOKIE, SESSION_COOKIE};
use super::{auth, read_body, Body, State};

mod audit_log;

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

fn html_response(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
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
fn signed_in_page(ctx: &Ctx, tab: Tab, status: StatusCode, title: &str, main: &str) -> Resp {
    let email = ctx.actor.user().map_or("", |u| u.email.as_str());
    let nav = Nav {
        email,
        csrf: &ctx.csrf,
        tab,
    };
    html_response(status, html::page(title, Some(&nav), main))
}

fn message_page(ctx: &Ctx, status: StatusCode, title: &str, text: &str, back: &str) -> Resp {
    let main = format!(
        r#"<h1>{}</h1>{}<p><a href="{}">Back</a></p>"#,
        esc(title),
        alert("error", text),
        esc(back)
    );
    signed_in_page(ctx, Tab::None, status, title, &main)
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
                html::page("Error", None, &alert("error", "Internal error")),
            );
        }
    };
    let mut main = String::from(r#"<div class="narrow"><h1>Sign in</h1>"#);
    if let Some(e) = error {
        main.push_str(&alert("error", e));
    }
    let _ = write!(
        main,
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
    );
    let mut r = html_response(status, html::page("Sign in", None, &main));
    add_cookie(
        &mut r,
        session::set_cookie(LOGIN_COOKIE, &token, tls, Some(3600)),
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
    let Some(cur) =
        session::cookie(&parts.headers, SESSION_COOKIE).and_then(|id| state.sessions.current(id))
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
    match auth::authenticate(state, cur.key.as_bytes(), None).await {
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
                &alert(
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
                session::set_cookie(SESSION_COOKIE, "", tls, Some(0)),
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
        Some(rest[..end].as_bytes().to_vec())
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
            let has_session = session::cookie(&parts.headers, SESSION_COOKIE)
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
                    session::set_cookie(SESSION_COOKIE, "", tls, Some(0)),
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
                ([], None) => list_page(state, &ctx, k).await,
                (["new"], None) => new_page(state, &ctx, k, &Draft::default(), None).await,
                ([], Some(f)) => create(state, &ctx, k, &f).await,
                ([i], None) if id(i).is_some() => {
                    detail_page(state, &ctx, k, id(i).unwrap_or(0), None).await
                }
                ([i], Some(f)) if id(i).is_some() => {
                    update(state, &ctx, k, id(i).unwrap_or(0), &f).await
                }
                ([i, action], Some(_)) if id(i).is_some() => {
                    token_action(state, &ctx, k, id(i).unwrap_or(0), action).await
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
            &format!(
                r#"<h1>Not found</h1>{}<p><a href="/">Go to the start page</a></p>"#,
                alert("error", "There is no such page.")
            ),
        ),
    )
}

async fn login(state: &State, parts: &Parts, body: Incoming, tls: bool) -> Resp {
    let form = read_form(body).await.unwrap_or_default();
    let expected = session::cookie(&parts.headers, LOGIN_COOKIE);
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
    if let Err(d) = auth::authenticate(state, key.as_bytes(), None).await {
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
    add_cookie(&mut r, session::set_cookie(SESSION_COOKIE, &sid, tls, None));
    add_cookie(&mut r, session::set_cookie(LOGIN_COOKIE, "", tls, Some(0)));
    r
}

// ----- lists -----------------------------------------------------------------

fn flashes_html(flash: &[Flash]) -> String {
    let mut h = String::new();
    for f in flash {
        match f {
            Flash::Notice(m) => h.push_str(&alert("success", m)),
            Flash::Error(m) => h.push_str(&alert("error", m)),
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

async fn list_page(state: &State, ctx: &Ctx, k: &Kind) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let flash = state.sessions.take_flash(&ctx.sid);
    let mut main = String::new();
    let _ = write!(
        main,
        r#"<div class="page-head"><div><h1>{title}</h1><p class="lead">{lead}</p></div>
<a class="button primary" href="/{slug}/new">Create new {one}</a></div>"#,
        title = k.title,
        slug = k.slug,
        one = k.one,
        lead = match k.kind {
            TokenKind::ContentApi =>
                "API tokens authenticate requests to the Content API (<code>/api</code>, <code>/graphql</code>).",
            TokenKind::Admin =>
                "Admin tokens authenticate automation on the admin API, with a subset of their owner's permissions.",
        }
    );
    main.push_str(&flashes_html(&flash));
    let rows = match mgr.list(&ctx.actor, Some(k.kind)).await {
        Ok(rows) => rows,
        Err(e) => {
            let e = ApiError::from_manage(e);
            main.push_str(&alert("error", &e.message));
            return signed_in_page(ctx, k.tab, e.status, k.title, &main);
        }
    };
    let admin = k.kind == TokenKind::Admin;
    let _ = write!(
        main,
        r#"<div class="table-wrap"><table class="tokens">
<caption class="visually-hidden">{title}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Description</th><th scope="col">{third}</th><th scope="col">Created</th><th scope="col">Last used</th>{owner}<th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody>
"#,
        title = k.title,
        third = if admin { "Expires" } else { "Type" },
        owner = if admin {
            r#"<th scope="col">Owner</th>"#
        } else {
            ""
        },
    );
    if rows.is_empty() {
        let _ = write!(
            main,
            r#"<tr><td colspan="{}" class="empty">No {} yet.</td></tr>"#,
            if admin { 7 } else { 6 },
            k.title.to_lowercase().replace("api", "API")
        );
    }
    for t in &rows {
        let href = format!("/{}/{}", k.slug, t.id);
        let third = if admin {
            date(t.expires_at, "Never")
        } else {
            esc(type_label(t.token_type))
        };
        let _ = write!(
            main,
            r#"<tr><th scope="row" data-label="Name"><a href="{href}">{name}</a></th><td data-label="Description">{desc}</td><td data-label="{third_label}">{third}</td><td data-label="Created">{created}</td><td data-label="Last used">{used}</td>"#,
            href = esc(&href),
            name = esc(&t.name),
            desc = if t.description.is_empty() {
                r#"<span class="muted">—</span>"#.to_owned()
            } else {
                esc(&t.description)
            },
            third_label = if admin { "Expires" } else { "Type" },
            created = date(Some(t.created_at), "—"),
            used = date(t.last_used_at, "Never"),
        );
        if admin {
            let _ = write!(
                main,
                r#"<td data-label="Owner">{}</td>"#,
                esc(t.owner_email.as_deref().unwrap_or("—"))
            );
        }
        let _ = write!(
            main,
            r#"<td class="row-actions"><a class="button small" href="{href}">{verb}<span class="visually-hidden"> {name}</span></a>"#,
            href = esc(&href),
            verb = if mgr.may(&ctx.actor, Op::Update, t) {
                "Edit"
            } else {
                "View"
            },
            name = esc(&t.name),
        );
        if mgr.may(&ctx.actor, Op::Delete, t) {
            main.push_str(&delete_form(ctx, k, t, true));
        }
        main.push_str("</td></tr>\n");
    }
    main.push_str("</tbody></table></div>\n");
    signed_in_page(ctx, k.tab, StatusCode::OK, k.title, &main)
}

fn delete_form(ctx: &Ctx, k: &Kind, t: &TokenRow, small: bool) -> String {
    format!(
        r#"<form method="post" action="/{slug}/{id}/delete" class="inline" data-confirm="Delete the token “{name}”? Every request using it is refused from now on. This cannot be undone." data-confirm-label="Delete">{csrf}<button type="submit" class="button danger{small}">Delete<span class="visually-hidden"> {name}</span></button></form>"#,
        slug = k.slug,
        id = t.id,
        name = esc(&t.name),
        csrf = csrf_field(&ctx.csrf),
        small = if small { " small" } else { "" },
    )
}

// ----- forms -----------------------------------------------------------------

/// What the user typed, to fill a form again after an error.
#[derive(Debug, Clone, Default)]
struct Draft {
    name: String,
    description: String,
    duration: String,
    token_type: String,
    permissions: BTreeSet<String>,
}

impl Draft {
    fn from_form(f: &Form) -> Self {
        Self {
            name: f.get("name").unwrap_or("").to_owned(),
            description: f.get("description").unwrap_or("").to_owned(),
            duration: f.get("duration").unwrap_or("").to_owned(),
            token_type: f.get("type").unwrap_or("").to_owned(),
            permissions: f.all("permission").map(str::to_owned).collect(),
        }
    }

    fn from_token(t: &TokenRow) -> Self {
        Self {
            name: t.name.clone(),
            description: t.description.clone(),
            duration: String::new(),
            token_type: t
                .token_type
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            permissions: t.permissions.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn parsed_permissions(&self) -> Result<Vec<Permission>, String> {
        self.permissions
            .iter()
            .map(|p| Permission::parse(p))
            .collect()
    }
}

fn text_fields(d: &Draft) -> String {
    format!(
        r#"<div class="field"><label for="name">Name</label><input type="text" id="name" name="name" value="{}" required maxlength="255" autocomplete="off"></div>
<div class="field"><label for="description">Description <span class="optional">(optional)</span></label><textarea id="description" name="description" rows="3" maxlength="1000">{}</textarea></div>
"#,
        esc(&d.name),
        esc(&d.description)
    )
}

fn duration_field(d: &Draft) -> String {
    let mut h = String::from(
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
        let _ = write!(
            h,
            r#"<option value="{v}"{}>{label}</option>"#,
            if v == selected { " selected" } else { "" }
        );
    }
    h.push_str(r#"</select><p id="duration-hint" class="hint">The token stops working after this time. It cannot be changed later.</p></div>"#);
    h
}

fn type_field(d: &Draft) -> String {
    let current = if d.token_type.is_empty() {
        "read-only"
    } else {
        d.token_type.as_str()
    };
    let mut h = String::from(r#"<fieldset class="field choices"><legend>Token type</legend>"#);
    for (v, label, hint) in [
        (
            "read-only",
            "Read-only",
            "Only the find and findOne actions.",
        ),
        ("full-access", "Full access", "Every Content API action."),
        ("custom", "Custom", "Exactly the actions chosen below."),
    ] {
        let _ = write!(
            h,
            r#"<div class="choice"><input type="radio" id="type-{v}" name="type" value="{v}"{checked} aria-describedby="type-{v}-hint"><label for="type-{v}">{label}</label> <span id="type-{v}-hint" class="hint">{hint}</span></div>"#,
            checked = if v == current { " checked" } else { "" },
        );
    }
    h.push_str("</fieldset>");
    h
}

/// How a permission reads next to its checkbox.
fn permission_label(category: &str, p: &Permission) -> String {
    let short = p
        .action
        .strip_prefix(category)
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or(&p.action);
    match &p.subject {
        Some(s) => format!(r#"{} <span class="subject">{}</span>"#, esc(short), esc(s)),
        None => esc(short),
    }
}

/// A category name people read: `plugin::content-manager` -> "Content manager".
fn category_label(category: &str) -> String {
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
) -> String {
    let mut h = String::new();
    let mut n = 0usize;
    for g in groups {
        let _ = write!(
            h,
            r#"<fieldset class="group"><legend>{} <code>{}</code></legend><div class="checks">"#,
            esc(&category_label(&g.category)),
            esc(&g.category)
        );
        for p in &g.permissions {
            n += 1;
            let value = p.to_string();
            let on = enabled(p);
            let _ = write!(
                h,
                r#"<div class="check{cls}"><input type="checkbox" id="perm-{n}" name="permission" value="{value}"{checked}{disabled}><label for="perm-{n}" title="{title}">{label}{lacks}</label></div>"#,
                cls = if on { "" } else { " disabled" },
                value = esc(&value),
                checked = if selected.contains(&value) {
                    " checked"
                } else {
                    ""
                },
                disabled = if on { "" } else { " disabled" },
                title = esc(&value),
                label = permission_label(&g.category, p),
                lacks = if on {
                    ""
                } else {
                    r#"<span class="visually-hidden"> (not yours to give)</span>"#
                },
            );
        }
        h.push_str("</div></fieldset>");
    }
    if n == 0 {
        h.push_str(r#"<p class="muted">No permissions are known.</p>"#);
    }
    h
}

/// The owner of an admin token, for its permission ceiling.
async fn owner_row(state: &State, ctx: &Ctx, t: &TokenRow) -> Option<UserRow> {
    match (ctx.actor.user(), t.owner_id) {
        (Some(u), Some(o)) if u.id == o => Some(u.clone()),
        (_, Some(o)) => state.store.user_by_id(o).await.ok().flatten(),
        _ => None,
    }
}

/// The permissions fieldset of a form.
fn permissions_fieldset(
    mgr: &Manager<'_>,
    ctx: &Ctx,
    kind: TokenKind,
    owner: Option<&UserRow>,
    d: &Draft,
    held: &[Permission],
) -> String {
    match kind {
        TokenKind::ContentApi => format!(
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
            format!(
                r#"<fieldset class="field permissions"><legend>Permissions</legend><p class="hint">The admin actions this token may perform. Permissions that the owner, or you through the token you signed in with, do not hold are disabled: a token never holds more than its owner.</p>{}</fieldset>"#,
                permission_groups(&groups, &d.permissions, &enabled)
            )
        }
    }
}

async fn new_page(state: &State, ctx: &Ctx, k: &Kind, d: &Draft, error: Option<&ApiError>) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let title = format!("Create new {}", k.one);
    let mut main = format!(
        r#"<nav class="crumbs" aria-label="Breadcrumb"><a href="/{slug}">{list}</a> <span aria-hidden="true">/</span> <span aria-current="page">New</span></nav><h1>{title}</h1>"#,
        slug = k.slug,
        list = k.title,
        title = esc(&title)
    );
    if let Some(e) = error {
        main.push_str(&alert("error", &e.message));
    }
    let _ = write!(
        main,
        r#"<form method="post" action="/{}" class="token-form stack">{}{}{}"#,
        k.slug,
        csrf_field(&ctx.csrf),
        text_fields(d),
        duration_field(d)
    );
    if k.kind == TokenKind::ContentApi {
        main.push_str(&type_field(d));
    }
    main.push_str(&permissions_fieldset(
        &mgr,
        ctx,
        k.kind,
        ctx.actor.user(),
        d,
        &[],
    ));
    let _ = write!(
        main,
        r#"<div class="form-actions"><a class="button" href="/{}">Cancel</a><button type="submit" class="button primary">Save</button></div></form>"#,
        k.slug
    );
    let status = error.map_or(StatusCode::OK, |e| e.status);
    signed_in_page(ctx, k.tab, status, &title, &main)
}

async fn create(state: &State, ctx: &Ctx, k: &Kind, f: &Form) -> Resp {
    let d = Draft::from_form(f);
    let invalid = |m: String| ApiError::validation(m);
    let req = (|| -> Result<CreateRequest, ApiError> {
        let lifespan_ms = manage::parse_duration(&d.duration).map_err(invalid)?;
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
        })
    })();
    let created = match req {
        Err(e) => Err(e),
        Ok(req) => state
            .manager(ctx.origin.clone())
            .create(&ctx.actor, req)
            .await
            .map_err(ApiError::from_manage),
    };
    match created {
        Err(e) => new_page(state, ctx, k, &d, Some(&e)).await,
        Ok(c) => {
            audit(&ctx.actor, "created", &c.token);
            if let Some(key) = c.key {
                state.sessions.push_flash(
                    &ctx.sid,
                    Flash::Key {
                        token_id: c.token.id,
                        kind: k.kind,
                        key,
                        fresh: true,
                    },
                );
            }
            redirect(&format!("/{}/{}", k.slug, c.token.id))
        }
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

// ----- one token -------------------------------------------------------------

fn key_banner(k: &Kind, key: &str, fresh: bool, viewable: bool) -> String {
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
    format!(
        r#"<section class="key-banner" aria-labelledby="key-title"><h2 id="key-title">{}</h2><p>{}</p>
<div class="key-row"><code id="token-key" class="key">{}</code><button type="button" class="button primary" data-copy="token-key" aria-describedby="copy-status">Copy</button></div>
<p id="copy-status" class="copy-status" aria-live="polite"></p></section>"#,
        esc(&title),
        esc(note),
        esc(key)
    )
}

async fn detail_page(state: &State, ctx: &Ctx, k: &Kind, id: i64, error: Option<ApiError>) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let flash = state.sessions.take_flash(&ctx.sid);
    let t = match mgr
        .show(&ctx.actor, TokenRef::of_kind(id, k.kind), false)
        .await
    {
        Ok(t) => t.token,
        Err(e) => {
            let e = ApiError::from_manage(e);
            return message_page(
                ctx,
                e.status,
                "Cannot show this token",
                &e.message,
                &format!("/{}", k.slug),
            );
        }
    };
    let mut main = format!(
        r#"<nav class="crumbs" aria-label="Breadcrumb"><a href="/{slug}">{list}</a> <span aria-hidden="true">/</span> <span aria-current="page">{name}</span></nav>"#,
        slug = k.slug,
        list = k.title,
        name = esc(&t.name)
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
                main.push_str(&key_banner(k, key, *fresh, mgr.keys_viewable()));
            }
        }
    }
    main.push_str(&flashes_html(&flash));
    if let Some(e) = &error {
        main.push_str(&alert("error", &e.message));
    }
    let _ = write!(main, r#"<h1>{}</h1><dl class="facts">"#, esc(&t.name));
    if k.kind == TokenKind::ContentApi {
        let _ = write!(
            main,
            "<div><dt>Type</dt><dd>{}</dd></div>",
            type_label(t.token_type)
        );
    }
    let _ = write!(
        main,
        "<div><dt>Duration</dt><dd>{}</dd></div><div><dt>Expires</dt><dd>{}</dd></div><div><dt>Created</dt><dd>{}</dd></div><div><dt>Last used</dt><dd>{}</dd></div>",
        duration_label(t.lifespan_ms),
        date(t.expires_at, "Never"),
        date(Some(t.created_at), "—"),
        date(t.last_used_at, "Never"),
    );
    if k.kind == TokenKind::Admin {
        let _ = write!(
            main,
            "<div><dt>Owner</dt><dd>{}</dd></div>",
            esc(t.owner_email.as_deref().unwrap_or("—"))
        );
    }
    main.push_str("</dl>");

    // Actions the rules allow this actor.
    let mut actions = String::new();
    if mgr.keys_viewable() && t.encrypted_key.is_some() && mgr.may(&ctx.actor, Op::ViewKey, &t) {
        let _ = write!(
            actions,
            r#"<form method="post" action="/{}/{}/reveal" class="inline">{}<button type="submit" class="button">View key</button></form>"#,
            k.slug,
            t.id,
            csrf_field(&ctx.csrf)
        );
    }
    if mgr.may(&ctx.actor, Op::Regenerate, &t) {
        let _ = write!(
            actions,
            r#"<form method="post" action="/{}/{}/regenerate" class="inline" data-confirm="Regenerate the key of “{}”? The current key stops working at once, everywhere." data-confirm-label="Regenerate">{}<button type="submit" class="button">Regenerate</button></form>"#,
            k.slug,
            t.id,
            esc(&t.name),
            csrf_field(&ctx.csrf)
        );
    }
    if mgr.may(&ctx.actor, Op::Delete, &t) {
        actions.push_str(&delete_form(ctx, k, &t, false));
    }
    if !actions.is_empty() {
        let _ = write!(
            main,
            r#"<div class="actions" role="group" aria-label="Token actions">{actions}</div>"#
        );
    }

    let owner = if k.kind == TokenKind::Admin {
        owner_row(state, ctx, &t).await
    } else {
        None
    };
    if mgr.may(&ctx.actor, Op::Update, &t) {
        let d = Draft::from_token(&t);
        let _ = write!(
            main,
            r#"<section aria-labelledby="edit-title"><h2 id="edit-title">Edit</h2><form method="post" action="/{}/{}" class="token-form stack">{}{}"#,
            k.slug,
            t.id,
            csrf_field(&ctx.csrf),
            text_fields(&d)
        );
        if k.kind == TokenKind::ContentApi {
            main.push_str(&type_field(&d));
        }
        main.push_str(&permissions_fieldset(
            &mgr,
            ctx,
            k.kind,
            owner.as_ref(),
            &d,
            &t.permissions,
        ));
        main.push_str(r#"<div class="form-actions"><button type="submit" class="button primary">Save</button></div></form></section>"#);
    } else {
        main.push_str(
            r#"<section aria-labelledby="perm-title"><h2 id="perm-title">Permissions</h2>"#,
        );
        if t.permissions.is_empty() {
            main.push_str(r#"<p class="muted">None.</p>"#);
        } else {
            main.push_str(r#"<ul class="plain">"#);
            for p in &t.permissions {
                let _ = write!(main, "<li><code>{}</code></li>", esc(&p.to_string()));
            }
            main.push_str("</ul>");
        }
        main.push_str("</section>");
    }
    let status = error.as_ref().map_or(StatusCode::OK, |e| e.status);
    signed_in_page(ctx, k.tab, status, &t.name, &main)
}

async fn update(state: &State, ctx: &Ctx, k: &Kind, id: i64, f: &Form) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let d = Draft::from_form(f);
    let r = TokenRef::of_kind(id, k.kind);
    let result = async {
        let current = mgr
            .show(&ctx.actor, r, false)
            .await
            .map_err(ApiError::from_manage)?
            .token;
        let mut submitted = d.parsed_permissions().map_err(ApiError::validation)?;
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
            },
        )
        .await
        .map_err(ApiError::from_manage)
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

async fn token_action(state: &State, ctx: &Ctx, k: &Kind, id: i64, action: &str) -> Resp {
    let mgr = state.manager(ctx.origin.clone());
    let r = TokenRef::of_kind(id, k.kind);
    let here = format!("/{}/{}", k.slug, id);
    match action {
        "regenerate" => match mgr.regenerate(&ctx.actor, r).await {
            Ok(t) => {
                audit(&ctx.actor, "regenerated", &t.token);
                if let Some(key) = t.key {
                    state.sessions.push_flash(
                        &ctx.sid,
                        Flash::Key {
                            token_id: id,
                            kind: k.kind,
                            key,
                            fresh: true,
                        },
                    );
                }
                redirect(&here)
            }
            Err(e) => detail_page(state, ctx, k, id, Some(ApiError::from_manage(e))).await,
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
            Err(e) => detail_page(state, ctx, k, id, Some(ApiError::from_manage(e))).await,
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
            Err(e) => detail_page(state, ctx, k, id, Some(ApiError::from_manage(e))).await,
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
            permission_label("plugin::x", &p),
            r#"read <span class="subject">&lt;b&gt;</span>"#
        );
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
        assert!(same_origin(&parts(&[("host", "127.0.0.1:9091")])));
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
