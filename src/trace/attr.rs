//! Attribute names: OpenTelemetry's semantic conventions where one exists
//! (HTTP and database spans, the resource), `authgate.*` for what is the
//! gateway's own. What never appears: a key, its hash, a query string, a
//! header value other than the `Host` asked for.

// The request authgate serves (HTTP server conventions).
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// The method as sent, when it is not one of the standard ones (then
/// `http.request.method` says `_OTHER`).
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The normal form of the path: what was judged and forwarded.
pub const URL_PATH: &str = "url.path";
pub const URL_SCHEME: &str = "url.scheme";
/// The CMS's URL of an upstream exchange, without the query string.
pub const URL_FULL: &str = "url.full";
/// The authority the client asked for (server span), or the CMS's
/// (client span).
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
/// The client as the trusted proxies say.
pub const CLIENT_ADDRESS: &str = "client.address";
/// The TCP peer.
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
pub const ERROR_TYPE: &str = "error.type";

// Store and Redis calls (database client conventions).
pub const DB_SYSTEM_NAME: &str = "db.system.name";
pub const DB_OPERATION_NAME: &str = "db.operation.name";
pub const DB_NAMESPACE: &str = "db.namespace";

// The resource and the instrumentation scope.
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";
pub const TELEMETRY_SDK_LANGUAGE: &str = "telemetry.sdk.language";
pub const TELEMETRY_SDK_VERSION: &str = "telemetry.sdk.version";

// authgate's own.
/// How the request reached authgate: `proxy`, or a decision door.
pub const DOOR: &str = "authgate.door";
/// `admin`, `content-api` or `unprotected` (the metrics' `route_class`).
pub const ROUTE_CLASS: &str = "authgate.route_class";
/// The action the route maps to (`api::article.article.find`).
pub const ACTION: &str = "authgate.action";
/// `allow`, `pass` or `deny`.
pub const DECISION: &str = "authgate.decision";
/// Why a request was refused (`authgate_denied_total`'s `reason`).
pub const DENY_REASON: &str = "authgate.deny_reason";
/// Report mode: the reason enforcement would have refused a request that
/// was forwarded (`authgate_would_deny_total`'s `reason`).
pub const WOULD_DENY_REASON: &str = "authgate.would_deny_reason";
/// The token's id: never its key or hash.
pub const TOKEN_ID: &str = "authgate.token.id";
pub const REQUEST_ID: &str = "authgate.request_id";
/// Where the look-up found its answer: `connection`, `cache`, `store`,
/// `known_hashes` (refused from memory).
pub const LOOKUP_SOURCE: &str = "authgate.lookup.source";
