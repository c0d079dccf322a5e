//! The decision: a pure function of facts.
//!
//! Nothing in this module performs I/O or reads a clock. A request reaches it
//! twice: [`precheck`] looks at the classified route and the `Authorization`
//! header and says whether a lookup is needed at all; [`decide`] takes the
//! token record the lookup found (or its absence), the time and the
//! client's address, and answers allow or deny. Every row of SPEC §3 is a line in the table tests below,
//! and the same functions serve every store layout.
//!
//! Every error the gateway answers itself is a [`Denial`]; its status, Strapi
//! error name, message and metric label are defined here, once.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::model::{ContentApiType, Ending, Ownership, TokenKind, TokenRecord};
use crate::route::{Route, RouteAction, RouteClass};
use crate::token::{is_token68, looks_like_jwt};

/// What the `Authorization` header carries, parsed like Strapi does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No header, or a scheme other than `Bearer`.
    Anonymous,
    /// A JWT-shaped bearer: the CMS's own session, for the CMS to verify.
    Session,
    /// More than one `Authorization` header: which one the upstream would
    /// read is not ours to guess.
    Conflicting,
    /// A value some CMS behind us could read as a bearer token where we
    /// read none, or another one: bytes outside visible ASCII, space and
    /// tab, or `bearer` anywhere but as `Bearer <one value>`. Refused on
    /// every route, never forwarded.
    Malformed,
    /// Any other bearer value.
    Token(&'a [u8]),
}

/// Parse the `Authorization` header values.
///
/// Strapi splits the value on JavaScript's `\s+` and takes a token only
/// from exactly `bearer <value>`. Other readers split on other blanks (Node
/// reads header bytes as latin1, so 0xA0 and 0x85 are blanks to
/// JavaScript and Python; PHP code often takes `substr($h, 7)` or
/// `/Bearer\s(\S+)/` anywhere in the value). So every value is read one
/// way here, the strictest: only visible ASCII, space and tab; a value that
/// mentions `bearer` (any case) anywhere must be exactly `Bearer`, blanks,
/// one value of RFC 7235 `token68` characters (a `,` or `"` in it would end
/// the token for some readers and not for others); anything else naming
/// `bearer` is [`Credential::Malformed`].
pub fn parse_authorization<'a, I>(mut values: I) -> Credential<'a>
where
    I: Iterator<Item = &'a [u8]>,
{
    let Some(value) = values.next() else {
        return Credential::Anonymous;
    };
    if values.next().is_some() {
        return Credential::Conflicting;
    }
    // Fast path, what clients send: `Bearer ` and one run of visible ASCII.
    // Same answer as the general rule below (a property test checks).
    if let Some((scheme, bearer)) = value.split_at_checked(7) {
        if scheme[..6].eq_ignore_ascii_case(b"bearer")
            && scheme[6] == b' '
            && !bearer.is_empty()
            // A non-short-circuit fold, which the compiler vectorises.
            && bearer.iter().fold(true, |ok, b| ok & is_token68(*b))
        {
            return bearer_credential(bearer);
        }
    }
    if !value
        .iter()
        .all(|b| matches!(b, 0x21..=0x7e | b' ' | b'\t'))
    {
        return Credential::Malformed;
    }
    let mentions_bearer = value.windows(6).any(|w| w.eq_ignore_ascii_case(b"bearer"));
    if !mentions_bearer {
        return Credential::Anonymous;
    }
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let mut parts = value.split(is_blank).filter(|p| !p.is_empty());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(scheme), Some(bearer), None)
            if scheme.eq_ignore_ascii_case(b"bearer")
                && !value.first().is_some_and(is_blank)
                && !value.last().is_some_and(is_blank)
                && bearer.iter().all(|b| is_token68(*b)) =>
        {
            bearer_credential(bearer)
        }
        // `Bearer` alone: Strapi and the rest read no token either.
        (Some(scheme), None, None)
            if scheme.eq_ignore_ascii_case(b"bearer") && value.starts_with(scheme) =>
        {
            Credential::Anonymous
        }
        _ => Credential::Malformed,
    }
}

fn bearer_credential(bearer: &[u8]) -> Credential<'_> {
    if looks_like_jwt(bearer) {
        Credential::Session
    } else {
        Credential::Token(bearer)
    }
}

/// What to do with CMS session JWTs on protected routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPolicy {
    /// Forward untouched for the CMS to verify (default).
    Pass,
    /// Refuse with 401.
    Reject,
}

/// What authorization decided against a request. (The gateway's other
/// refusals, for the request's shape or the upstream, are
/// `answer::Refusal`'s.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    InvalidCredentials,
    TokenExpired,
    OwnerNotFound,
    OwnerDeactivated,
    /// Content-API token without the route's action.
    Forbidden,
    /// Admin token without the route's permission.
    PolicyFailed,
    /// A token pinned to networks, used from outside them.
    AddressNotAllowed,
    RateLimited,
    StoreUnavailable,
}

impl Denial {
    pub fn status(self) -> u16 {
        match self {
            Denial::InvalidCredentials
            | Denial::TokenExpired
            | Denial::OwnerNotFound
            | Denial::OwnerDeactivated => 401,
            Denial::Forbidden | Denial::PolicyFailed | Denial::AddressNotAllowed => 403,
            Denial::RateLimited => 429,
            Denial::StoreUnavailable => 503,
        }
    }

    /// Strapi's error class name.
    pub fn name(self) -> &'static str {
        match self {
            Denial::InvalidCredentials
            | Denial::TokenExpired
            | Denial::OwnerNotFound
            | Denial::OwnerDeactivated => "UnauthorizedError",
            Denial::Forbidden | Denial::AddressNotAllowed => "ForbiddenError",
            Denial::PolicyFailed => "PolicyError",
            Denial::RateLimited => "RateLimitError",
            Denial::StoreUnavailable => "ServiceUnavailableError",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Denial::InvalidCredentials => "Missing or invalid credentials",
            Denial::TokenExpired => "Token expired",
            Denial::OwnerNotFound => "Token owner not found",
            Denial::OwnerDeactivated => "Token owner is deactivated",
            Denial::Forbidden => "Forbidden",
            Denial::PolicyFailed => "Policy Failed",
            Denial::AddressNotAllowed => "Client address not allowed",
            Denial::RateLimited => "Too many requests",
            Denial::StoreUnavailable => "Authentication temporarily unavailable",
        }
    }

    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Denial::InvalidCredentials => "invalid_credentials",
            Denial::TokenExpired => "token_expired",
            Denial::OwnerNotFound => "owner_not_found",
            Denial::OwnerDeactivated => "owner_deactivated",
            Denial::Forbidden => "forbidden",
            Denial::PolicyFailed => "policy_failed",
            Denial::AddressNotAllowed => "address_not_allowed",
            Denial::RateLimited => "rate_limited",
            Denial::StoreUnavailable => "store_unavailable",
        }
    }

    /// The Strapi error envelope (`envelope::render`).
    pub fn body(self) -> String {
        crate::envelope::render(self.status(), self.name(), self.message())
    }

    pub const ALL: [Denial; 9] = [
        Denial::InvalidCredentials,
        Denial::TokenExpired,
        Denial::OwnerNotFound,
        Denial::OwnerDeactivated,
        Denial::Forbidden,
        Denial::PolicyFailed,
        Denial::AddressNotAllowed,
        Denial::RateLimited,
        Denial::StoreUnavailable,
    ];
}

/// The outcome of looking at the route and the header, before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precheck<'a> {
    /// Forward without identity: unprotected route, anonymous or session.
    Pass,
    Deny(Denial),
    /// Hash this key and look it up.
    Lookup(&'a [u8]),
}

/// Decide what the route and credential need before touching the store.
pub fn precheck<'a>(
    route: &Route<'_>,
    cred: Credential<'a>,
    sessions: SessionPolicy,
) -> Precheck<'a> {
    if cred == Credential::Malformed {
        return Precheck::Deny(Denial::InvalidCredentials);
    }
    if route.class == RouteClass::Unprotected {
        return Precheck::Pass;
    }
    match cred {
        Credential::Anonymous if route.auth_required => Precheck::Deny(Denial::InvalidCredentials),
        Credential::Anonymous => Precheck::Pass,
        Credential::Session => match sessions {
            SessionPolicy::Pass => Precheck::Pass,
            SessionPolicy::Reject => Precheck::Deny(Denial::InvalidCredentials),
        },
        Credential::Conflicting | Credential::Malformed => {
            Precheck::Deny(Denial::InvalidCredentials)
        }
        // A `Token` is token68 and not JWT-shaped by construction
        // (`parse_authorization`); only its length is left to check.
        Credential::Token(key) if crate::token::KEY_LEN.contains(&key.len()) => {
            Precheck::Lookup(key)
        }
        Credential::Token(_) => Precheck::Deny(Denial::InvalidCredentials),
    }
}

/// The type of a GraphQL operation, when the proxy had to find out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphQlOperation {
    /// Only `query` operations.
    Query,
    /// At least one `mutation` or `subscription`, or a document we could not read.
    Other,
}

/// The verdict on a looked-up token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny {
        denial: Denial,
        /// The token authenticated (it exists, is live, its owner active), so
        /// its use is recorded even though the action is refused.
        authenticated: bool,
    },
    /// A read-only token on the GraphQL endpoint: the operation type decides.
    NeedGraphQlOperation,
}

fn deny(denial: Denial) -> Verdict {
    Verdict::Deny {
        denial,
        authenticated: false,
    }
}

fn refuse(denial: Denial) -> Verdict {
    Verdict::Deny {
        denial,
        authenticated: true,
    }
}

/// Decide on a looked-up token. `record` is `None` when no token has the
/// hash; `client` is the address the request came from (the peer, or what
/// `server.trusted_proxies` resolve).
///
/// A token pinned to networks is refused from anywhere else right after
/// its kind is checked: from outside its networks a key tells nothing more
/// about itself (expired, owner deactivated, what it may do), and such a
/// use is no use of the token (`authenticated: false`: not recorded, and
/// counted against the address like a wrong key).
pub fn decide(
    route: &Route<'_>,
    record: Option<&TokenRecord>,
    graphql: Option<GraphQlOperation>,
    now: SystemTime,
    client: IpAddr,
) -> Verdict {
    // A replaced key past its overlap is as unknown as a made-up one:
    // nothing else about its token is told.
    let ended = |t: &&TokenRecord| t.ends == Ending::OldKey && t.is_expired(now);
    let Some(t) = record.filter(|t| !ended(t)) else {
        return deny(Denial::InvalidCredentials);
    };
    let wanted = match route.class {
        RouteClass::Admin => TokenKind::Admin,
        RouteClass::ContentApi => TokenKind::ContentApi,
        RouteClass::Unprotected => return Verdict::Allow,
    };
    if t.kind != wanted {
        return deny(Denial::InvalidCredentials);
    }
    if !t.networks.admits(client) {
        return deny(Denial::AddressNotAllowed);
    }
    if t.is_expired(now) {
        return deny(Denial::TokenExpired);
    }
    match t.kind {
        TokenKind::Admin => {
            let owner = match &t.ownership {
                Ownership::Owner(o) => o,
                Ownership::Missing | Ownership::None => return deny(Denial::OwnerNotFound),
            };
            if !owner.is_active || owner.blocked {
                return deny(Denial::OwnerDeactivated);
            }
            match &route.action {
                RouteAction::Admin { action, subject } => {
                    // `a|b`: any one of the actions suffices.
                    let subject = subject.as_deref();
                    if action
                        .split('|')
                        .any(|a| t.permissions.grants(a, subject) && owner.holds(a, subject))
                    {
                        Verdict::Allow
                    } else {
                        refuse(Denial::PolicyFailed)
                    }
                }
                RouteAction::Refused => refuse(Denial::PolicyFailed),
                RouteAction::None | RouteAction::ContentApi(_) | RouteAction::GraphQl { .. } => {
                    Verdict::Allow
                }
            }
        }
        TokenKind::ContentApi => {
            let ty = t.token_type.unwrap_or(ContentApiType::ReadOnly);
            match (ty, &route.action) {
                (_, RouteAction::Refused) => refuse(Denial::Forbidden),
                (ContentApiType::FullAccess, _) => Verdict::Allow,
                (ContentApiType::ReadOnly, RouteAction::ContentApi(a)) if is_read_action(a) => {
                    Verdict::Allow
                }
                (ContentApiType::ReadOnly, RouteAction::GraphQl { .. }) => match graphql {
                    None => Verdict::NeedGraphQlOperation,
                    Some(GraphQlOperation::Query) => Verdict::Allow,
                    Some(GraphQlOperation::Other) => refuse(Denial::Forbidden),
                },
                (ContentApiType::Custom, RouteAction::ContentApi(a))
                    if t.permissions.contains_action(a) =>
                {
                    Verdict::Allow
                }
                // GraphQL maps to no one action: a custom token needs the
                // `find` of a configured content type (what Strapi's GraphQL
                // reads), never a plugin's or an unknown type's.
                (ContentApiType::Custom, RouteAction::GraphQl { finds })
                    if finds.iter().any(|f| t.permissions.contains_action(f)) =>
                {
                    Verdict::Allow
                }
                _ => refuse(Denial::Forbidden),
            }
        }
    }
}

/// Strapi's read-only rule: the action ends in `find` or `findOne`.
fn is_read_action(action: &str) -> bool {
    action.ends_with("find") || action.ends_with("findOne")
}

#[cfg(test)]
mod tests;
