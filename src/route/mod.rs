//! Which kind of token a request needs, and which action it performs.
//!
//! A gateway that decides by path is only as safe as its agreement with the
//! upstream on what the path is. So the path is normalised exactly once
//! ([`normalise()`]), the normalised path is what gets classified, and the same
//! normalised path is what gets forwarded. Anything that cannot be
//! normalised without guessing (an encoded `/` or `\`, a NUL or control
//! byte, `..` above the root, bytes that are not UTF-8 once decoded) is
//! refused with 400. The bytes forwarded can still be read differently by
//! what is behind us (decoded once more, `..;/`, ...), so
//! [`RouteTable::judge`] also classifies every such reading ([`readings`])
//! and refuses the request unless they all agree: the one statement of the
//! property is its doc comment.
//!
//! One file per step the path of a request goes through:
//!
//! | file | concept |
//! | --- | --- |
//! | `normalise.rs` | the one normal form of a path; whether a segment names a literal |
//! | `readings.rs` | every other plausible reading of the raw path, by what sits behind authgate |
//! | `methods.rs` | the set of HTTP methods a table row names |
//! | `actions.rs` | the `METHOD /path/:param` action tables |
//! | `table.rs` | the route table compiled from config (prefixes, rules, content types, action tables); `classify` and `judge` |
//!
//! This file holds what they share: the route classes, the classified
//! [`Route`] with its [`RouteAction`], and why a path is refused
//! ([`PathError`]). Every public name stays at `crate::route::*`.

use std::borrow::Cow;
use std::sync::Arc;

mod actions;
mod methods;
mod normalise;
pub mod readings;
mod table;

pub use actions::{ActionSubject, Matched, PatternSpec, PatternTable};
pub use methods::MethodSet;
pub use normalise::{normalise, segment_is};
pub use table::{ContentTypeSpec, MappedBy, Mapping, RouteSpec, RouteTable, RuleSpec};

/// The three route classes of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Admin,
    ContentApi,
    Unprotected,
}

impl RouteClass {
    /// A bounded label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Admin => "admin",
            RouteClass::ContentApi => "content-api",
            RouteClass::Unprotected => "unprotected",
        }
    }
}

/// What a route requires beyond its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction<'a> {
    /// No specific action is known for this route.
    None,
    /// A content-API action such as `api::article.article.find`.
    ContentApi(&'a str),
    /// An admin action, with a subject when the route names one.
    Admin {
        action: &'a str,
        subject: Option<Cow<'a, str>>,
    },
    /// The GraphQL endpoint: the operation decides. `finds` are the `find`
    /// actions of the configured content types: a custom token needs one
    /// of them (a plugin's `find`, or an unconfigured type's, is not one).
    GraphQl { finds: &'a [Arc<str>] },
    /// A method outside the standard seven on a path the action tables map,
    /// with no row naming it: no token holds it.
    Refused,
}

impl RouteAction<'_> {
    pub fn name(&self) -> Option<&str> {
        match self {
            RouteAction::ContentApi(a) => Some(a),
            RouteAction::Admin { action, .. } => Some(action),
            RouteAction::None | RouteAction::GraphQl { .. } | RouteAction::Refused => None,
        }
    }
}

/// The classified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub class: RouteClass,
    /// Anonymous requests are refused (`auth = "required"`).
    pub auth_required: bool,
    pub action: RouteAction<'a>,
}

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the CMS could read this path as another route than authgate judged")]
    AmbiguousReading,
    #[error("method names are upper case")]
    MethodCase,
    #[error("CONNECT is never forwarded")]
    Connect,
    #[error("a `_method` query parameter could override the method")]
    MethodOverride,
    #[error("request target is not an absolute path")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("encoded `/` or `\\` in a segment")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("NUL or control character in path")]
    ControlChar,
    #[error("`..` above the root")]
    AboveRoot,
    #[error("not UTF-8 after percent-decoding")]
    InvalidUtf8,
}

/// Small constructors for the table tests here and in `authz`.
#[cfg(test)]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
