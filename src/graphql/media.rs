//! The media type and coding of a GraphQL request body, read strictly.
//!
//! Every server behind the gateway picks its body parser by `Content-Type`
//! (koa-bodyparser by a list of types, graphql-upload by
//! `multipart/form-data`, express-graphql and others add
//! `application/graphql`), inflates a `Content-Encoding` the gateway does
//! not, and some decode a `charset` other than UTF-8. So a body is read
//! only when its media type is one of those, written so that every parser
//! reads the same type, parameters and charset from it; anything else is
//! [`Unjudgeable`]. Matching ignores ASCII case; parameters other than
//! `charset` and `boundary` are ignored.

use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::HeaderMap;

use super::Unjudgeable;

/// How a body of the declared media type is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `application/json`, `application/csp-report`, any `application/*+json`
    /// (koa-bodyparser's list holds `json-patch+json`, `vnd.api+json`, and
    /// in `@koa/bodyparser` also `scim+json`; GraphQL servers add
    /// `graphql+json`): one JSON object or a batch array.
    Json,
    /// `application/x-www-form-urlencoded`: `query` parameters.
    Form,
    /// `application/graphql`: the body is the document.
    Document,
    /// `multipart/form-data`: the `operations` field (the GraphQL multipart
    /// request spec) and any `query` field.
    Multipart { boundary: String },
}

/// The one `Content-Type` of the request, if any. Several are refused: Node
/// keeps the first, other stacks the last or a comma-joined list.
pub fn content_type(headers: &HeaderMap) -> Result<Option<&[u8]>, Unjudgeable> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Unjudgeable::SeveralContentTypes);
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// Refuse any content coding but `identity`: the body parsers of Koa and
/// Express inflate `gzip`, `deflate` (and `br`) before reading, so the
/// bytes the gateway holds are not what they read.
pub fn identity_coding(headers: &HeaderMap) -> Result<(), Unjudgeable> {
    for value in headers.get_all(CONTENT_ENCODING) {
        let coded = value
            .as_bytes()
            .split(|b| *b == b',')
            .map(trim_ows)
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"));
        if coded {
            return Err(Unjudgeable::ContentEncoding);
        }
    }
    Ok(())
}

/// Read a `Content-Type` value.
pub fn kind(value: &[u8]) -> Result<Kind, Unjudgeable> {
    let value = ascii(value).ok_or(Unjudgeable::MalformedMediaType)?;
    let (essence, params) = match value.find(';') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let (ty, sub) = trim_ows_str(essence)
        .split_once('/')
        .filter(|(t, s)| is_token(t) && is_token(s))
        .ok_or(Unjudgeable::MalformedMediaType)?;
    let params = Params::parse(params)?;
    params.utf8()?;
    let ty = ty.to_ascii_lowercase();
    let sub = sub.to_ascii_lowercase();
    match (ty.as_str(), sub.as_str()) {
        ("application", "json" | "csp-report") => Ok(Kind::Json),
        ("application", s) if s.ends_with("+json") => Ok(Kind::Json),
        ("application", "x-www-form-urlencoded") => Ok(Kind::Form),
        ("application", "graphql") => Ok(Kind::Document),
        ("multipart", "form-data") => {
            let boundary = params
                .get("boundary")
                .filter(|b| is_boundary(b))
                .ok_or(Unjudgeable::MalformedMediaType)?;
            Ok(Kind::Multipart {
                boundary: boundary.to_owned(),
            })
        }
        _ => Err(Unjudgeable::UnknownMediaType),
    }
}

/// The parameters after a media type or a disposition type: `;`, then
/// `name=value` with a token or a quoted string for value, optional blanks
/// before each `;` and after it. Read strictly, so that no two parsers
/// disagree on them: a repeated name, blanks around `=`, a backslash in a
/// quoted string (unescaped by some parsers, kept by others), an RFC 2231
/// `name*` (decoded by busboy only) or an empty parameter are refused.
#[derive(Debug, Default)]
pub struct Params<'a> {
    list: Vec<(&'a str, &'a str)>,
}

impl<'a> Params<'a> {
    /// Parse `params`, which is empty or starts with `;`.
    pub fn parse(params: &'a str) -> Result<Self, Unjudgeable> {
        let bad = Unjudgeable::MalformedMediaType;
        let mut out = Params::default();
        let mut rest = params;
        while !rest.is_empty() {
            rest = trim_ows_str(rest.strip_prefix(';').ok_or(bad)?);
            let eq = rest.find('=').ok_or(bad)?;
            let name = &rest[..eq];
            if !is_token(name) || name.ends_with('*') {
                return Err(bad);
            }
            rest = &rest[eq + 1..];
            let value;
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted.find('"').ok_or(bad)?;
                value = &quoted[..end];
                if value.contains('\\') {
                    return Err(bad);
                }
                rest = &quoted[end + 1..];
            } else {
                let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
                value = &rest[..end];
                if !is_token(value) {
                    return Err(bad);
                }
                rest = &rest[end..];
            }
            rest = trim_start_ows(rest);
            if out.get(name).is_some() {
                return Err(bad);
            }
            out.list.push((name, value));
        }
        Ok(out)
    }

    /// The value of parameter `name` (ASCII case ignored).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// Refuse a `charset` other than UTF-8: express-graphql and busboy
    /// decode the body (or the field) with it, koa-bodyparser always as
    /// UTF-8, so `utf-16le` bytes are one document to one and another to
    /// the other.
    pub fn utf8(&self) -> Result<(), Unjudgeable> {
        match self.get("charset") {
            Some(c) if !c.eq_ignore_ascii_case("utf-8") && !c.eq_ignore_ascii_case("utf8") => {
                Err(Unjudgeable::Charset)
            }
            _ => Ok(()),
        }
    }
}

/// The bytes as text, when they are visible ASCII, space and tab only.
pub fn ascii(b: &[u8]) -> Option<&str> {
    if b.iter().all(|c| matches!(c, 0x20..=0x7e | b'\t')) {
        std::str::from_utf8(b).ok()
    } else {
        None
    }
}

/// RFC 9110 `token`.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 2046 `boundary`: 1 to 70 `bchars`, not ending in a space.
fn is_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if !is_ows(*first) {
            break;
        }
        b = rest;
    }
    while let [rest @ .., last] = b {
        if !is_ows(*last) {
            break;
        }
        b = rest;
    }
    b
}

fn trim_ows_str(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn trim_start_ows(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

#[cfg(test)]
mod tests;
