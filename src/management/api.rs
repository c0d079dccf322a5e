//! The REST API, shaped like Strapi 5's admin API so scripts written for
//! Strapi work against authgate unchanged.
//!
//! [`ROUTES`] is the whole surface: method, path and the action the calling
//! token and its owner must both hold (`None`: any valid admin token).
//! `openapi.yaml` describes exactly these routes, and a test keeps the two
//! in step. Bodies are `{"data": ...}`; errors are Strapi's envelope
//! `{"data":null,"error":{"status","name","message","details":{}}}`:
//!
//! | situation | status | name |
//! | --- | --- | --- |
//! | no / unknown / expired admin token, owner gone or deactivated | 401 | UnauthorizedError (the gateway's messages) |
//! | token or owner lacks the route's permission | 403 | PolicyError (`Policy Failed`, as Strapi's policy) |
//! | an ownership rule refuses (regenerate someone else's token ...) | 403 | ForbiddenError |
//! | no such token (or one of the other kind) | 404 | NotFoundError |
//! | invalid body or value | 400 | ValidationError |
//! | database unreachable | 503 | ServiceUnavailableError |
//!
//! Token fields follow Strapi's names (`accessKey`, `type`, `lifespan`,
//! `expiresAt`, `lastUsedAt`, `createdAt`, `updatedAt`, `permissions` for
//! content-API tokens, `adminPermissions` and `adminUserOwner` for admin
//! tokens), plus authgate's own `oldKeyExpiresAt` (while a replaced key
//! still works) and `allowedCidrs` (both kinds: the networks a token may
//! be used from; `[]` is anywhere; on update it replaces the whole list).
//! `accessKey` appears on create and regenerate, and on `GET /:id` when
//! the key is viewable (an encryption key is configured, and for admin
//! tokens only to their owner).
//!
//! Beyond Strapi: a regenerate body `{"keepOldForSeconds": N}` keeps the
//! replaced key working up to 7 days, and `POST /admin/*-tokens/import`
//! brings an existing key along (`accessKey`, or `accessKeyHash` for a
//! Strapi row's stored hash), under the create permission and rules.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::audit::{Event, Origin, Via};
use crate::authz::{self, Credential, Denial};
use crate::cidr::Cidr;
use crate::control::{management_action, Actor, ControlError, CreateRequest, NewKey, Op, TokenRef};
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::{TokenRow, TokenUpdate, UserRow};
use crate::store::audit::AuditFilter;
use crate::store::StoreError;

use super::{auth, read_body, Body, BodyError, State};

/// What an API route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    List(TokenKind),
    Create(TokenKind),
    Get(TokenKind),
    Update(TokenKind),
    Delete(TokenKind),
    Regenerate(TokenKind),
    /// Bring an existing key along (authgate's own; Strapi has none).
    Import(TokenKind),
    OwnerPermissions,
    Users,
    Roles,
    Permissions,
    AuditLogs,
    AuditLog,
}

impl Endpoint {
    /// The permission the calling token and its owner must both hold.
    pub fn action(self) -> Option<String> {
        let token = |k, op| Some(management_action(k, op));
        match self {
            Endpoint::List(k) | Endpoint::Get(k) => token(k, Op::Read),
            Endpoint::Create(k) | Endpoint::Import(k) => token(k, Op::Create),
            Endpoint::Update(k) => token(k, Op::Update),
            Endpoint::Delete(k) => token(k, Op::Delete),
            Endpoint::Regenerate(k) => token(k, Op::Regenerate),
            Endpoint::OwnerPermissions => token(TokenKind::Admin, Op::Read),
            Endpoint::Users => Some("admin::users.read".into()),
            Endpoint::Roles => Some("admin::roles.read".into()),
            Endpoint::AuditLogs | Endpoint::AuditLog => Some(crate::audit::READ_PERMISSION.into()),
            // As in Strapi: any authenticated admin.
            Endpoint::Permissions => None,
        }
    }
}

/// One REST route.
#[derive(Debug, Clone, Copy)]
pub struct ApiRoute {
    pub method: &'static str,
    /// `:id` marks the token id.
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn r(method: &'static str, path: &'static str, endpoint: Endpoint) -> ApiRoute {
    ApiRoute {
        method,
        path,
        endpoint,
    }
}

const API: TokenKind = TokenKind::ContentApi;
const ADMIN: TokenKind = TokenKind::Admin;

/// Every route the API serves.
pub const ROUTES: &[ApiRoute] = &[
    r("GET", "/admin/api-tokens", Endpoint::List(API)),
    r("POST", "/admin/api-tokens", Endpoint::Create(API)),
    r("GET", "/admin/api-tokens/:id", Endpoint::Get(API)),
    r("PUT", "/admin/api-tokens/:id", Endpoint::Update(API)),
    r("DELETE", "/admin/api-tokens/:id", Endpoint::Delete(API)),
    r(
        "POST",
        "/admin/api-tokens/:id/regenerate",
        Endpoint::Regenerate(API),
    ),
    r("POST", "/admin/api-tokens/import", Endpoint::Import(API)),
    r("GET", "/admin/admin-tokens", Endpoint::List(ADMIN)),
    r("POST", "/admin/admin-tokens", Endpoint::Create(ADMIN)),
    r("GET", "/admin/admin-tokens/:id", Endpoint::Get(ADMIN)),
    r("PUT", "/admin/admin-tokens/:id", Endpoint::Update(ADMIN)),
    r("DELETE", "/admin/admin-tokens/:id", Endpoint::Delete(ADMIN)),
    r(
        "POST",
        "/admin/admin-tokens/:id/regenerate",
        Endpoint::Regenerate(ADMIN),
    ),
    r(
        "POST",
        "/admin/admin-tokens/import",
        Endpoint::Import(ADMIN),
    ),
    r(
        "GET",
        "/admin/admin-tokens/:id/owner-permissions",
        Endpoint::OwnerPermissions,
    ),
    r("GET", "/admin/users", Endpoint::Users),
    r("GET", "/admin/roles", Endpoint::Roles),
    r("GET", "/admin/permissions", Endpoint::Permissions),
    r("GET", "/admin/audit-logs", Endpoint::AuditLogs),
    r("GET", "/admin/audit-logs/:id", Endpoint::AuditLog),
];

/// Why no route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    MethodNotAllowed,
}

/// Match a path against a route pattern: literal segments ignore ASCII
/// case (as Strapi's router), `:id` takes one segment, one trailing slash
/// is ignored. Returns the `:id` segment, if any.
fn matches<'a>(pattern: &str, path: &'a str) -> Option<Option<&'a str>> {
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    let mut id = None;
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(id),
            (Some(":id"), Some(s)) if !s.is_empty() => id = Some(s),
            (Some(p), Some(s)) if p.eq_ignore_ascii_case(s) => {}
            _ => return None,
        }
    }
}

/// The route for a request, with its `:id`.
pub fn route<'a>(
    method: &Method,
    path: &'a str,
) -> Result<(&'static ApiRoute, Option<&'a str>), Miss> {
    let mut miss = Miss::NotFound;
    for r in ROUTES {
        if let Some(id) = matches(r.path, path) {
            if r.method == method.as_str() {
                return Ok((r, id));
            }
            miss = Miss::MethodNotAllowed;
        }
    }
    Err(miss)
}

/// An error response: status, Strapi error name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub name: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, name: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            name,
            message: message.into(),
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationError", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFoundError", message)
    }

    /// The gateway's own denials keep their status, name and message.
    pub fn denial(d: Denial) -> Self {
        Self::new(
            StatusCode::from_u16(d.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            d.name(),
            d.message(),
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal Server Error",
        )
    }

    /// The management rules' refusals, in Strapi's terms.
    pub fn from_control(e: ControlError) -> Self {
        match e {
            ControlError::Denied(m) => Self::new(StatusCode::FORBIDDEN, "ForbiddenError", m),
            ControlError::NotFound(m) => Self::not_found(m),
            ControlError::Invalid(m) => Self::validation(m),
            ControlError::Rule(r) => Self::validation(r.message()),
            ControlError::KeyShape(e) => Self::validation(e.to_string()),
            ControlError::Store(StoreError::Invalid(m)) => Self::validation(m),
            // The strapi5 layout: Strapi's admin panel owns the data.
            ControlError::Store(StoreError::ReadOnly(m)) => {
                Self::new(StatusCode::FORBIDDEN, "ForbiddenError", m)
            }
            // A stored row that does not decode: the data's fault, not the caller's.
            ControlError::Store(e @ StoreError::Corrupt { .. }) => {
                tracing::error!(error = %e, "management: corrupt row in the token store");
                Self::internal()
            }
            ControlError::Store(e) if e.is_unavailable() => {
                tracing::error!(error = %e, "management: database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableError",
                    "Token store temporarily unavailable",
                )
            }
            ControlError::Store(e) => {
                tracing::error!(error = %e, "management: database error");
                Self::internal()
            }
            ControlError::Token(e) => {
                tracing::error!(error = %e, "management: key crypto failed");
                Self::internal()
            }
        }
    }

    /// Strapi's error envelope, rendered by the same function as the
    /// gateway's denials.
    pub fn body(&self) -> String {
        crate::envelope::render(self.status.as_u16(), self.name, &self.message)
    }

    pub fn response(&self) -> Response<Body> {
        json_response(self.status, self.body())
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Handle one API request.
pub async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let (route, id) = match route(req.method(), req.uri().path()) {
        Ok((r, id)) => (r, id.map(str::to_owned)),
        Err(Miss::NotFound) => return ApiError::not_found("Not Found").response(),
        Err(Miss::MethodNotAllowed) => {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedError",
                "Method Not Allowed",
            )
            .response()
        }
    };
    let cred = authz::parse_authorization(
        req.headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(|v| v.as_bytes()),
    );
    let Credential::Token(key) = cred else {
        return ApiError::denial(Denial::InvalidCredentials).response();
    };
    let action = route.endpoint.action();
    let client = super::client_ip(req.extensions());
    let actor = match auth::authenticate(state, key, action.as_deref(), client).await {
        Ok(a) => Actor::Token(a),
        Err(d) => return ApiError::denial(d).response(),
    };
    let id = match id.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return ApiError::not_found("Not Found").response(),
    };
    let (parts, body) = req.into_parts();
    let req_ext = &parts.extensions;
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeError",
                "Request body too large",
            )
            .response()
        }
        Err(BodyError::Read) => {
            return ApiError::validation("Request body could not be read").response()
        }
    };
    let origin = super::origin(req_ext, Via::Api);
    if matches!(route.endpoint, Endpoint::AuditLogs | Endpoint::AuditLog) {
        return match audit_logs(state, id, parts.uri.query()).await {
            Ok(v) => json_response(StatusCode::OK, v.to_string()),
            Err(e) => e.response(),
        };
    }
    let query = parts.uri.query();
    match dispatch(state, &actor, &origin, route.endpoint, id, query, &body).await {
        Ok((status, data)) => json_response(status, json!({ "data": data }).to_string()),
        Err(e) => e.response(),
    }
}

fn ts(t: Option<std::time::SystemTime>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(humantime::format_rfc3339_millis(t).to_string())
    })
}

/// A token as Strapi's admin API shows it.
pub fn token_json(t: &TokenRow, key: Option<&str>) -> Value {
    let mut v = json!({
        "id": t.id,
        "kind": t.kind.as_str(),
        "name": t.name,
        "description": t.description,
        "lifespan": t.lifespan_ms,
        "expiresAt": ts(t.expires_at),
        "lastUsedAt": ts(t.last_used_at),
        "createdAt": ts(Some(t.created_at)),
        "updatedAt": ts(Some(t.updated_at)),
        "oldKeyExpiresAt": ts(t.old_key_expires_at),
        "allowedCidrs": t.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    match t.kind {
        TokenKind::ContentApi => {
            v["type"] = json!(t.token_type.map(ContentApiType::as_str));
            v["permissions"] = json!(t
                .permissions
                .iter()
                .map(|p| p.action.as_str())
                .collect::<Vec<_>>());
        }
        TokenKind::Admin => {
            v["adminPermissions"] =
                Value::Array(t.permissions.iter().map(permission_json).collect());
            v["adminUserOwner"] = match t.owner_id {
                Some(id) => json!({"id": id, "email": t.owner_email}),
                None => Value::Null,
            };
        }
    }
    if let Some(k) = key {
        v["accessKey"] = json!(k);
    }
    v
}

fn permission_json(p: &Permission) -> Value {
    json!({"action": p.action, "subject": p.subject, "properties": {}, "conditions": []})
}

fn user_json(u: &UserRow) -> Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "isActive": u.is_active,
        "blocked": u.blocked,
        "roles": u.roles.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
        "superAdmin": u.super_admin,
    })
}

// ----- request bodies --------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateApiToken {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(rename = "type")]
    token_type: String,
    #[serde(default)]
    lifespan: Option<i64>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default, rename = "allowedCidrs")]
    allowed_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAdminToken {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    lifespan: Option<i64>,
    #[serde(default, rename = "adminPermissions")]
    admin_permissions: Vec<AdminPermission>,
    #[serde(default, rename = "allowedCidrs")]
    allowed_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateApiToken {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    token_type: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default, rename = "allowedCidrs")]
    allowed_cidrs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAdminToken {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "adminPermissions")]
    admin_permissions: Option<Vec<AdminPermission>>,
    #[serde(default, rename = "allowedCidrs")]
    allowed_cidrs: Option<Vec<String>>,
}

/// The body of a regenerate call: none (Strapi's), or how long the
/// replaced key keeps working.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Regenerate {
    #[serde(default, rename = "keepOldForSeconds")]
    keep_old_for_seconds: u64,
}

/// Strapi's admin permission object. Field restrictions and conditions are
/// not modelled by authgate, so only empty ones are accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminPermission {
    action: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    properties: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    conditions: Option<Vec<Value>>,
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::validation(format!("invalid body: {e}")))
}

fn token_type(s: &str) -> Result<ContentApiType, ApiError> {
    s.parse().map_err(ApiError::validation)
}

fn content_permissions(list: Option<Vec<String>>) -> Result<Vec<Permission>, ApiError> {
    list.unwrap_or_default()
        .iter()
        .map(|a| Permission::parse(a).map_err(ApiError::validation))
        .collect()
}

fn admin_permissions(list: Vec<AdminPermission>) -> Result<Vec<Permission>, ApiError> {
    list.into_iter()
        .map(|p| {
            let restricted = p.properties.as_ref().is_some_and(|props| {
                props
                    .values()
                    .any(|v| !v.is_null() && v.as_array().map_or(true, |a| !a.is_empty()))
            });
            if restricted || p.conditions.as_ref().is_some_and(|c| !c.is_empty()) {
                return Err(ApiError::validation(format!(
                    "permission `{}`: field restrictions and conditions are not supported by authgate",
                    p.action
                )));
            }
            if p.action.trim().is_empty() || p.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
                return Err(ApiError::validation("a permission needs an action (and a non-empty subject when given)"));
            }
            Ok(Permission::new(p.action, p.subject))
        })
        .collect()
}

/// `allowedCidrs`: CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`) or single
/// addresses; a refusal names the field and the value.
fn allowed_cidrs(list: Option<Vec<String>>) -> Result<Option<Vec<Cidr>>, ApiError> {
    list.map(|l| {
        l.iter()
            .map(|c| Cidr::parse(c).map_err(|e| ApiError::validation(format!("allowedCidrs: {e}"))))
            .collect()
    })
    .transpose()
}

fn need_id(id: Option<i64>) -> Result<i64, ApiError> {
    id.ok_or_else(|| ApiError::not_found("Not Found"))
}

/// The filters of `GET /admin/audit-logs` (and the web page's Audit log).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub page: i64,
    pub page_size: i64,
    pub action: Option<String>,
    pub actor: Option<String>,
    /// A duration back from now (`24h`, `7d`) or an RFC 3339 time.
    pub since: Option<String>,
}

impl AuditQuery {
    /// Read `page`, `pageSize`, `action`, `actor`, `since` from a query
    /// string (Strapi's `pagination[page]` spellings too).
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut q = AuditQuery {
            page: 1,
            page_size: 25,
            ..Default::default()
        };
        let form = super::form::Form::parse(query.unwrap_or("").as_bytes())
            .map_err(|_| ApiError::validation("the query string is malformed"))?;
        for (k, v) in form.pairs() {
            let v = v.trim().to_owned();
            let number = |v: &str| {
                v.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    ApiError::validation(format!("`{k}` must be a whole number from 1"))
                })
            };
            match k.as_str() {
                "page" | "pagination[page]" => q.page = number(&v)?.min(1_000_000),
                "pageSize" | "pagination[pageSize]" => q.page_size = number(&v)?.min(100),
                "action" if !v.is_empty() => q.action = Some(v),
                "actor" if !v.is_empty() => q.actor = Some(v),
                "since" if !v.is_empty() => q.since = Some(v),
                _ => {}
            }
        }
        Ok(q)
    }

    pub fn filter(&self) -> Result<AuditFilter, ApiError> {
        let since = match self.since.as_deref() {
            None => None,
            Some(s) => Some(crate::audit::parse_since(s).ok_or_else(|| {
                ApiError::validation("`since` must be a duration (24h, 7d) or an RFC 3339 time")
            })?),
        };
        Ok(AuditFilter {
            since,
            action: self.action.clone(),
            actor: self.actor.clone(),
        })
    }
}

/// `GET /admin/audit-logs[/:id]`, in Strapi Enterprise's shape.
async fn audit_logs(
    state: &State,
    id: Option<i64>,
    query: Option<&str>,
) -> Result<Value, ApiError> {
    let internal = |e: StoreError| ApiError::from_control(e.into());
    if let Some(id) = id {
        let e = state.store.audit_event(id).await.map_err(internal)?;
        return e
            .map(|e| json!({ "data": e.to_json() }))
            .ok_or_else(|| ApiError::not_found(format!("no audit event with id {id}")));
    }
    let q = AuditQuery::parse(query)?;
    let (events, total) = state
        .store
        .audit_events(&q.filter()?, q.page_size, (q.page - 1) * q.page_size)
        .await
        .map_err(internal)?;
    Ok(json!({
        "results": events.iter().map(Event::to_json).collect::<Vec<_>>(),
        "pagination": {
            "page": q.page,
            "pageSize": q.page_size,
            "pageCount": (total + q.page_size - 1) / q.page_size,
            "total": total,
        },
    }))
}

/// `?expiring=7d` on a token list: only the active tokens expiring within
/// that long, soonest first.
fn expiring_window(query: Option<&str>) -> Result<Option<std::time::Duration>, ApiError> {
    let form = super::form::Form::parse(query.unwrap_or("").as_bytes())
        .map_err(|_| ApiError::validation("the query string is malformed"))?;
    let Some(v) = form.all("expiring").next() else {
        return Ok(None);
    };
    humantime::parse_duration(v.trim()).map(Some).map_err(|_| {
        ApiError::validation(format!(
            "`expiring` must be a duration such as 7d or 36h, not `{}`",
            v.trim()
        ))
    })
}

async fn dispatch(
    state: &State,
    actor: &Actor,
    origin: &Origin,
    endpoint: Endpoint,
    id: Option<i64>,
    query: Option<&str>,
    body: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let mgr = state.manager(origin.clone());
    let m = ApiError::from_control;
    match endpoint {
        Endpoint::List(kind) => {
            let expiring = expiring_window(query)?;
            let mut rows = mgr.list(actor, Some(kind)).await.map_err(m)?;
            if let Some(window) = expiring {
                crate::control::keep_expiring(&mut rows, window, std::time::SystemTime::now());
            }
            Ok((
                StatusCode::OK,
                Value::Array(rows.iter().map(|t| token_json(t, None)).collect()),
            ))
        }
        Endpoint::Create(kind) => {
            let req = create_request(kind, parse_body(body)?)?;
            let created = mgr.create(actor, req).await.map_err(m)?;
            Ok((
                StatusCode::CREATED,
                token_json(&created.token, created.key.as_deref().map(String::as_str)),
            ))
        }
        Endpoint::Get(kind) => {
            let t = mgr
                .show_viewable(actor, TokenRef::of_kind(need_id(id)?, kind))
                .await
                .map_err(m)?;
            Ok((
                StatusCode::OK,
                token_json(&t.token, t.key.as_deref().map(String::as_str)),
            ))
        }
        Endpoint::Update(kind) => {
            let update = token_update(kind, body)?;
            let t = mgr
                .update(actor, TokenRef::of_kind(need_id(id)?, kind), update)
                .await
                .map_err(m)?;
            Ok((StatusCode::OK, token_json(&t, None)))
        }
        Endpoint::Delete(kind) => {
            let t = mgr
                .delete(actor, TokenRef::of_kind(need_id(id)?, kind))
                .await
                .map_err(m)?;
            Ok((StatusCode::OK, token_json(&t, None)))
        }
        Endpoint::Regenerate(kind) => {
            let b: Regenerate = if body.iter().all(u8::is_ascii_whitespace) {
                Regenerate::default()
            } else {
                parse_body(body)?
            };
            let keep = std::time::Duration::from_secs(b.keep_old_for_seconds);
            let t = mgr
                .regenerate(actor, TokenRef::of_kind(need_id(id)?, kind), keep)
                .await
                .map_err(m)?;
            Ok((
                StatusCode::CREATED,
                token_json(&t.token, t.key.as_deref().map(String::as_str)),
            ))
        }
        Endpoint::Import(kind) => {
            let (req, key) = import_request(kind, body)?;
            let t = mgr.import(actor, req, &key).await.map_err(m)?;
            Ok((StatusCode::CREATED, token_json(&t, None)))
        }
        Endpoint::OwnerPermissions => {
            let owner = mgr.owner_of(actor, need_id(id)?).await.map_err(m)?;
            let perms: Vec<Permission> = if owner.super_admin {
                mgr.admin_catalog(&[])
                    .into_iter()
                    .flat_map(|g| g.permissions)
                    .collect()
            } else {
                owner.permissions.to_sorted_vec()
            };
            Ok((
                StatusCode::OK,
                Value::Array(perms.iter().map(permission_json).collect()),
            ))
        }
        Endpoint::Users => {
            let users = state.store.list_users().await.map_err(|e| m(e.into()))?;
            let n = users.len();
            Ok((
                StatusCode::OK,
                json!({
                    "results": users.iter().map(user_json).collect::<Vec<_>>(),
                    "pagination": {"page": 1, "pageSize": n, "pageCount": 1, "total": n},
                }),
            ))
        }
        Endpoint::Roles => {
            let roles = state.store.list_roles().await.map_err(|e| m(e.into()))?;
            Ok((
                StatusCode::OK,
                Value::Array(roles.iter().map(role_json).collect()),
            ))
        }
        // Answered by `audit_logs` before dispatch.
        Endpoint::AuditLogs | Endpoint::AuditLog => Err(ApiError::not_found("Not Found")),
        Endpoint::Permissions => Ok((StatusCode::OK, catalog_json(&mgr))),
    }
}

/// The body of a create call, as the management rules take it.
fn create_request(kind: TokenKind, body: Value) -> Result<CreateRequest, ApiError> {
    let invalid = |e: serde_json::Error| ApiError::validation(format!("invalid body: {e}"));
    Ok(match kind {
        TokenKind::ContentApi => {
            let b: CreateApiToken = serde_json::from_value(body).map_err(invalid)?;
            CreateRequest {
                kind,
                name: b.name,
                description: b.description.unwrap_or_default(),
                token_type: Some(token_type(&b.token_type)?),
                lifespan_ms: b.lifespan,
                owner: None,
                permissions: content_permissions(b.permissions)?,
                allowed_cidrs: allowed_cidrs(b.allowed_cidrs)?.unwrap_or_default(),
            }
        }
        TokenKind::Admin => {
            let b: CreateAdminToken = serde_json::from_value(body).map_err(invalid)?;
            CreateRequest {
                kind,
                name: b.name,
                description: b.description.unwrap_or_default(),
                token_type: None,
                lifespan_ms: b.lifespan,
                owner: None,
                permissions: admin_permissions(b.admin_permissions)?,
                allowed_cidrs: allowed_cidrs(b.allowed_cidrs)?.unwrap_or_default(),
            }
        }
    })
}

/// The body of an import call: a create call's, plus exactly one of
/// `accessKey` (the key) and `accessKeyHash` (its stored 128-hex hash).
fn import_request(kind: TokenKind, body: &[u8]) -> Result<(CreateRequest, NewKey), ApiError> {
    let mut fields: serde_json::Map<String, Value> = parse_body(body)?;
    let key = match (fields.remove("accessKey"), fields.remove("accessKeyHash")) {
        (Some(Value::String(k)), None) => NewKey::plain(&Zeroizing::new(k)),
        (None, Some(Value::String(h))) => NewKey::hash(&h),
        _ => {
            return Err(ApiError::validation(
                "give exactly one of accessKey (the key) and accessKeyHash (its 128-hex access_key), as a string",
            ))
        }
    }
    .map_err(ApiError::from_control)?;
    Ok((create_request(kind, Value::Object(fields))?, key))
}

/// The body of an update call: only the fields it names change.
fn token_update(kind: TokenKind, body: &[u8]) -> Result<TokenUpdate, ApiError> {
    Ok(match kind {
        TokenKind::ContentApi => {
            let b: UpdateApiToken = parse_body(body)?;
            TokenUpdate {
                name: b.name,
                description: b.description,
                token_type: b.token_type.as_deref().map(token_type).transpose()?,
                permissions: b
                    .permissions
                    .map(|p| content_permissions(Some(p)))
                    .transpose()?,
                allowed_cidrs: allowed_cidrs(b.allowed_cidrs)?,
            }
        }
        TokenKind::Admin => {
            let b: UpdateAdminToken = parse_body(body)?;
            TokenUpdate {
                name: b.name,
                description: b.description,
                token_type: None,
                permissions: b.admin_permissions.map(admin_permissions).transpose()?,
                allowed_cidrs: allowed_cidrs(b.allowed_cidrs)?,
            }
        }
    })
}

fn role_json(r: &crate::store::admin::RoleRow) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "superAdmin": r.super_admin,
        "permissions": r.permissions.iter().map(permission_json).collect::<Vec<_>>(),
    })
}

/// `GET /admin/permissions`: what content-API and admin tokens can hold,
/// from the policy in force.
fn catalog_json(mgr: &crate::control::Manager<'_>) -> Value {
    json!({
        "contentApi": mgr.content_api_catalog().iter().map(|g| json!({
            "category": g.category,
            "actions": g.permissions.iter().map(|p| p.action.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "admin": mgr.admin_catalog(&[]).iter().map(|g| json!({
            "category": g.category,
            "permissions": g.permissions.iter().map(|p| json!({"action": p.action, "subject": p.subject})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_like_strapi() {
        let (r, id) = route(&Method::GET, "/admin/api-tokens").unwrap();
        assert_eq!(
            (r.endpoint, id),
            (Endpoint::List(TokenKind::ContentApi), None)
        );
        let (r, id) = route(&Method::POST, "/ADMIN/Admin-Tokens/12/regenerate/").unwrap();
        assert_eq!(
            (r.endpoint, id),
            (Endpoint::Regenerate(TokenKind::Admin), Some("12"))
        );
        let (r, _) = route(&Method::GET, "/admin/admin-tokens/3/owner-permissions").unwrap();
        assert_eq!(r.endpoint, Endpoint::OwnerPermissions);
        assert_eq!(
            route(&Method::PATCH, "/admin/api-tokens/1").unwrap_err(),
            Miss::MethodNotAllowed
        );
        for p in [
            "/admin/api-tokens/1/2",
            "/admin/nope",
            "/admin",
            "/admin/api-tokens//regenerate",
        ] {
            assert_eq!(route(&Method::GET, p).unwrap_err(), Miss::NotFound, "{p}");
        }
    }

    #[test]
    fn every_route_names_its_permission() {
        assert_eq!(
            Endpoint::Regenerate(TokenKind::Admin).action().as_deref(),
            Some("admin::admin-tokens.regenerate")
        );
        assert_eq!(
            Endpoint::Create(TokenKind::ContentApi).action().as_deref(),
            Some("admin::api-tokens.create")
        );
        assert_eq!(Endpoint::Permissions.action(), None);
        let distinct: std::collections::HashSet<(&str, &str)> =
            ROUTES.iter().map(|r| (r.method, r.path)).collect();
        assert_eq!(distinct.len(), ROUTES.len(), "no route is listed twice");
    }

    #[test]
    fn error_envelope() {
        let e = ApiError::from_control(ControlError::Denied("only \"the\" owner".into()));
        let v: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(
            v,
            json!({"data": null, "error": {"status": 403, "name": "ForbiddenError", "message": "only \"the\" owner", "details": {}}})
        );
        let ours: Value =
            serde_json::from_str(&ApiError::denial(Denial::PolicyFailed).body()).unwrap();
        let gateway: Value = serde_json::from_str(&Denial::PolicyFailed.body()).unwrap();
        assert_eq!(ours, gateway, "the gateway's denials read the same here");
    }

    #[test]
    fn admin_permission_bodies() {
        let ok: Vec<AdminPermission> = serde_json::from_str(
            r#"[{"action":"a.read","subject":"api::x.x","properties":{},"conditions":[]},{"action":"b"},{"action":"c","properties":{"fields":null}}]"#,
        )
        .unwrap();
        assert_eq!(
            admin_permissions(ok).unwrap(),
            vec![
                Permission::new("a.read", Some("api::x.x".into())),
                Permission::new("b", None),
                Permission::new("c", None)
            ]
        );
        for bad in [
            r#"[{"action":"a","conditions":["admin::is-creator"]}]"#,
            r#"[{"action":"a","properties":{"fields":["title"]}}]"#,
            r#"[{"action":""}]"#,
        ] {
            let list: Vec<AdminPermission> = serde_json::from_str(bad).unwrap();
            assert!(admin_permissions(list).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<AdminPermission>(r#"{"action":"a","x":1}"#).is_err());
    }
}
