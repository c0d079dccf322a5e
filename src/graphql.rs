//! Which GraphQL operations a request carries, for read-only tokens.
//!
//! A read-only token may run queries only, so the gateway must know what
//! the CMS will execute. It cannot know which reader the CMS uses: Strapi's
//! GraphQL route parses bodies with koa-bodyparser at its defaults (JSON and
//! urlencoded forms, by `Content-Type`) and multipart with graphql-upload,
//! and Apollo Server then takes `body.query` from whatever was parsed; other
//! servers also read `application/graphql`, take `query` from the URL of a
//! POST (express-graphql prefers it to the body's), run batches, and read
//! repeated keys first-wins or last-wins. So [`judge`] collects every
//! document that any of those readings could execute and answers
//! [`GraphQlOperation::Query`] only when there is at least one and every one
//! is a query ([`document`]); a request that a reader could take in a way
//! the gateway cannot see (an unknown or absent media type on a body, a
//! content coding, a charset other than UTF-8, a body that does not parse,
//! an execution with no visible document) is [`Unjudgeable`].
//!
//! The readings live in one module each: `media` (`Content-Type`,
//! `Content-Encoding`), `json`, `form` (also the URL query string),
//! `multipart`; [`document`] classifies one document.

use http::{HeaderMap, Method};

use crate::authz::GraphQlOperation;

mod document;
mod form;
mod json;
mod media;
mod multipart;

pub use document::document;

/// Where a document was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The URL query string (every method: some servers merge it into a POST).
    QueryString,
    /// A JSON body (`application/json`, `*+json`, ...).
    Json,
    /// An `application/x-www-form-urlencoded` body.
    Form,
    /// An `application/graphql` body.
    Document,
    /// A `multipart/form-data` body.
    Multipart,
}

impl Reading {
    pub fn label(self) -> &'static str {
        match self {
            Reading::QueryString => "query_string",
            Reading::Json => "json",
            Reading::Form => "form",
            Reading::Document => "graphql",
            Reading::Multipart => "multipart",
        }
    }
}

impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Why the operations of a request could not be judged: a reader could
/// execute something the gateway cannot see. For a read-only token this is
/// a refusal, like a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unjudgeable {
    #[error("more than one Content-Type header")]
    SeveralContentTypes,
    #[error("a body without a Content-Type")]
    NoMediaType,
    #[error("a Content-Type that no parser reads one way")]
    MalformedMediaType,
    #[error("a media type not read as GraphQL")]
    UnknownMediaType,
    #[error("a charset other than UTF-8")]
    Charset,
    #[error("a Content-Encoding other than identity")]
    ContentEncoding,
    #[error("a {0} body or value that does not read cleanly")]
    Unreadable(Reading),
    #[error("an execution without a GraphQL document ({0})")]
    NoDocument(Reading),
    #[error("no GraphQL document in the request")]
    Empty,
}

impl Unjudgeable {
    /// A bounded label for logs.
    pub fn label(self) -> &'static str {
        match self {
            Unjudgeable::SeveralContentTypes => "several_content_types",
            Unjudgeable::NoMediaType => "no_media_type",
            Unjudgeable::MalformedMediaType => "malformed_media_type",
            Unjudgeable::UnknownMediaType => "unknown_media_type",
            Unjudgeable::Charset => "charset",
            Unjudgeable::ContentEncoding => "content_encoding",
            Unjudgeable::Unreadable(_) => "unreadable",
            Unjudgeable::NoDocument(_) => "no_document",
            Unjudgeable::Empty => "empty",
        }
    }
}

/// Judge the operations of a request to the GraphQL endpoint: `Query` when
/// every document any reader could execute is a query, `Other` when one is
/// a mutation or a subscription (or a document the sniffer cannot read).
///
/// `query` is the URL's query string (without `?`), `body` the whole body.
/// Read: the query string always (on GET and HEAD it must hold a
/// document); the body whenever it is not empty, by its `Content-Type`,
/// which must then be present, alone, known and UTF-8, with no content
/// coding. An empty body is read by no parser, whatever its type says.
pub fn judge(
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<GraphQlOperation, Unjudgeable> {
    media::identity_coding(headers)?;
    let content_type = media::content_type(headers)?;
    let mut seen = Seen::default();
    let in_url = form::queries(query.unwrap_or("").as_bytes(), Reading::QueryString, |d| {
        seen.add(d)
    })?;
    if in_url == 0 && (method == Method::GET || method == Method::HEAD) {
        return Err(Unjudgeable::NoDocument(Reading::QueryString));
    }
    if !body.is_empty() {
        let kind = media::kind(content_type.ok_or(Unjudgeable::NoMediaType)?)?;
        read_body(&kind, body, &mut seen)?;
    }
    seen.verdict()
}

/// Add every document of a non-empty body, read as `kind`.
fn read_body(kind: &media::Kind, body: &[u8], seen: &mut Seen) -> Result<(), Unjudgeable> {
    match kind {
        media::Kind::Json => json_slots(body, Reading::Json, seen),
        media::Kind::Form => {
            if form::queries(body, Reading::Form, |d| seen.add(d))? == 0 {
                return Err(Unjudgeable::NoDocument(Reading::Form));
            }
            Ok(())
        }
        media::Kind::Document => {
            let doc = std::str::from_utf8(body)
                .map_err(|_| Unjudgeable::Unreadable(Reading::Document))?;
            seen.add(doc);
            Ok(())
        }
        media::Kind::Multipart { boundary } => {
            let unreadable = Unjudgeable::Unreadable(Reading::Multipart);
            let fields = multipart::fields(body, boundary).ok_or(unreadable)?;
            if fields.operations.is_empty() && fields.queries.is_empty() {
                return Err(Unjudgeable::NoDocument(Reading::Multipart));
            }
            for ops in fields.operations {
                json_slots(ops, Reading::Multipart, seen)?;
            }
            for q in fields.queries {
                seen.add(std::str::from_utf8(q).map_err(|_| unreadable)?);
            }
            Ok(())
        }
    }
}

/// Add the documents of a JSON request object or batch; every execution
/// must show its document.
fn json_slots(body: &[u8], reading: Reading, seen: &mut Seen) -> Result<(), Unjudgeable> {
    let slots = json::slots(body).ok_or(Unjudgeable::Unreadable(reading))?;
    if slots.is_empty() {
        return Err(Unjudgeable::NoDocument(reading));
    }
    for slot in slots {
        if slot.hidden || slot.queries.is_empty() {
            return Err(Unjudgeable::NoDocument(reading));
        }
        for q in &slot.queries {
            seen.add(q);
        }
    }
    Ok(())
}

/// The worst operation seen so far.
#[derive(Default)]
struct Seen {
    any: bool,
    other: bool,
}

impl Seen {
    fn add(&mut self, doc: &str) {
        self.any = true;
        if !self.other && document(doc) == GraphQlOperation::Other {
            self.other = true;
        }
    }

    fn verdict(&self) -> Result<GraphQlOperation, Unjudgeable> {
        match (self.any, self.other) {
            (false, _) => Err(Unjudgeable::Empty),
            (true, false) => Ok(GraphQlOperation::Query),
            (true, true) => Ok(GraphQlOperation::Other),
        }
    }
}

/// Classify a JSON body alone: `{"query": "..."}` or a batch of those.
/// What the proxy calls until it calls [`judge`].
pub fn json_body(body: &[u8]) -> GraphQlOperation {
    let mut seen = Seen::default();
    match json_slots(body, Reading::Json, &mut seen).and_then(|()| seen.verdict()) {
        Ok(op) => op,
        Err(_) => GraphQlOperation::Other,
    }
}

/// Classify a GET query string alone (`?query=...`, form-encoded).
/// What the proxy calls until it calls [`judge`].
pub fn query_string(qs: &str) -> GraphQlOperation {
    let mut seen = Seen::default();
    match form::queries(qs.as_bytes(), Reading::QueryString, |d| seen.add(d))
        .and_then(|_| seen.verdict())
    {
        Ok(op) => op,
        Err(_) => GraphQlOperation::Other,
    }
}

#[cfg(test)]
mod tests;
