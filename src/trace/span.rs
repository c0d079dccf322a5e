//! A span as the request path holds it: a name, a kind, two instants, its
//! attributes and status, and the spans it started that have ended.
//!
//! A [`Span`] is a plain value, not a guard and not a borrow of its trace:
//! a phase can take one, hand `&mut` of it to the module doing the work
//! (the lookup, the store query inside it, a Redis call), and give it back
//! to its parent when it is over ([`Span::end_child`]); the trace collects
//! the tree when the request ends. [`Span::none`] stands in wherever the
//! request is not traced: every method on it returns at once, so a phase
//! written for traces costs a branch when there are none.

use std::borrow::Cow;
use std::time::Instant;

use super::attr;
use super::context::SpanId;
use super::rng;

/// What a span stands for, in OTLP's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Work inside authgate (the look-up phase).
    Internal,
    /// The request authgate serves.
    Server,
    /// A call authgate makes (the CMS, Postgres, Redis).
    Client,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Cow<'static, str>),
    Int(i64),
    Bool(bool),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Cow::Owned(s))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<u16> for Value {
    fn from(n: u16) -> Self {
        Value::Int(i64::from(n))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// OTLP's span status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

/// One ended (or, inside [`Span`], open) span.
#[derive(Debug, Clone)]
pub struct SpanData {
    pub id: SpanId,
    /// `None` only for a root span (a request without a valid
    /// `traceparent`).
    pub parent: Option<SpanId>,
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub start: Instant,
    pub end: Instant,
    pub attrs: Vec<(&'static str, Value)>,
    pub status: StatusCode,
    pub status_message: Option<Cow<'static, str>>,
}

impl SpanData {
    /// The value of attribute `key`, if set (the last one set wins).
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attrs
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// A span being recorded, or nothing ([`Span::none`]). One pointer wide,
/// so an untraced request moves nothing but a null.
#[derive(Debug)]
pub struct Span(Option<Box<Open>>);

#[derive(Debug)]
struct Open {
    data: SpanData,
    /// Descendants that have ended, in the order they ended.
    ended: Vec<SpanData>,
}

impl Span {
    /// A span that records nothing: for requests that are not traced.
    pub const fn none() -> Self {
        Span(None)
    }

    /// A new span, started now.
    pub(super) fn start(name: Cow<'static, str>, kind: Kind, parent: Option<SpanId>) -> Self {
        Self::start_at(name, kind, parent, Instant::now())
    }

    pub(super) fn start_at(
        name: Cow<'static, str>,
        kind: Kind,
        parent: Option<SpanId>,
        start: Instant,
    ) -> Self {
        Span(Some(Box::new(Open {
            data: SpanData {
                id: rng::span_id(),
                parent,
                name,
                kind,
                start,
                end: start,
                attrs: Vec::new(),
                status: StatusCode::Unset,
                status_message: None,
            },
            ended: Vec::new(),
        })))
    }

    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// This span's id (`None` when it records nothing).
    pub fn id(&self) -> Option<SpanId> {
        self.0.as_ref().map(|o| o.data.id)
    }

    /// Start a child of this span, now.
    pub fn child(&self, name: &'static str, kind: Kind) -> Span {
        match &self.0 {
            Some(o) => Span::start(Cow::Borrowed(name), kind, Some(o.data.id)),
            None => Span::none(),
        }
    }

    /// End `child` now and keep it (with what it kept) under this span.
    pub fn end_child(&mut self, child: Span) {
        if let Some(o) = &mut self.0 {
            child.finish_into(&mut o.ended);
        }
    }

    /// Set an attribute (a later value for the same key wins).
    pub fn set_attr(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(o) = &mut self.0 {
            o.data.attrs.push((key, value.into()));
        }
    }

    /// Rename the span (e.g. once the route is known).
    pub fn set_name(&mut self, name: impl Into<Cow<'static, str>>) {
        if let Some(o) = &mut self.0 {
            o.data.name = name.into();
        }
    }

    /// Mark the span failed, with a description and an `error.type`.
    pub fn set_error(&mut self, error_type: &'static str, message: impl Into<Cow<'static, str>>) {
        if let Some(o) = &mut self.0 {
            o.data.status = StatusCode::Error;
            o.data.status_message = Some(message.into());
            o.data
                .attrs
                .push((attr::ERROR_TYPE, Value::from(error_type)));
        }
    }

    /// `http.response.status_code`, and the status the HTTP conventions
    /// give it: a server span fails on 5xx only (a 4xx is the client's
    /// error), a client span on 4xx and 5xx.
    pub fn set_http_status(&mut self, status: u16) {
        if let Some(o) = &mut self.0 {
            o.data
                .attrs
                .push((attr::HTTP_RESPONSE_STATUS_CODE, Value::from(status)));
            let failed = match o.data.kind {
                Kind::Server => status >= 500,
                _ => status >= 400,
            };
            if failed && o.data.status != StatusCode::Error {
                o.data.status = StatusCode::Error;
                o.data
                    .attrs
                    .push((attr::ERROR_TYPE, Value::from(status_text(status))));
            }
        }
    }

    /// End the span now: it, then its descendants, go into `out`.
    pub(super) fn finish_into(self, out: &mut Vec<SpanData>) {
        if let Some(o) = self.0 {
            let Open {
                mut data,
                mut ended,
            } = *o;
            data.end = Instant::now();
            out.push(data);
            out.append(&mut ended);
        }
    }
}

#[cfg(test)]
impl Span {
    /// A root span outside any trace, for other modules' tests to hand
    /// down as the parent.
    pub(crate) fn test_root() -> Span {
        Span::start(Cow::Borrowed("test"), Kind::Server, None)
    }

    /// End it: it, then its descendants.
    pub(crate) fn test_end(self) -> Vec<SpanData> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }
}

/// The status code as `error.type` wants it: its decimal form, from a
/// fixed set (no allocation; codes outside 100..=599 are "_OTHER").
fn status_text(status: u16) -> &'static str {
    const CODES: &str = concat!(
        "400401402403404405406407408409410411412413414415416417418419420421422423424425426427428429430431",
        "500501502503504505506507508509510511"
    );
    let at = match status {
        400..=431 => usize::from(status - 400),
        500..=511 => 32 + usize::from(status - 500),
        _ => return "_OTHER",
    };
    &CODES[at * 3..at * 3 + 3]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> Span {
        Span::start(Cow::Borrowed("GET"), Kind::Server, None)
    }

    fn ended(s: Span) -> Vec<SpanData> {
        let mut out = Vec::new();
        s.finish_into(&mut out);
        out
    }

    #[test]
    fn none_records_nothing() {
        let mut s = Span::none();
        s.set_attr("k", "v");
        s.set_error("x", "y");
        s.set_http_status(500);
        let mut c = s.child("c", Kind::Internal);
        assert!(!c.is_recording());
        c.set_attr("k", 1i64);
        s.end_child(c);
        assert_eq!(s.id(), None);
        assert!(ended(s).is_empty());
    }

    #[test]
    fn children_end_under_their_parent() {
        let mut root = server();
        let mut lookup = root.child("lookup", Kind::Internal);
        let query = lookup.child("query", Kind::Client);
        let (root_id, lookup_id, query_id) = (root.id(), lookup.id(), query.id());
        lookup.end_child(query);
        root.end_child(lookup);
        let spans = ended(root);
        let ids: Vec<_> = spans.iter().map(|s| Some(s.id)).collect();
        assert_eq!(ids, [root_id, lookup_id, query_id]);
        assert_eq!(spans[1].parent, root_id);
        assert_eq!(spans[2].parent, lookup_id);
        assert!(spans.iter().all(|s| s.end >= s.start));
        // A child ends before its parent does.
        assert!(spans[2].end <= spans[1].end && spans[1].end <= spans[0].end);
    }

    #[test]
    fn http_status_and_errors() {
        let mut s = server();
        s.set_http_status(404);
        let d = &ended(s)[0];
        assert_eq!(d.status, StatusCode::Unset);
        assert_eq!(
            d.attr(attr::HTTP_RESPONSE_STATUS_CODE),
            Some(&Value::Int(404))
        );
        let mut s = server();
        s.set_http_status(503);
        let d = &ended(s)[0];
        assert_eq!(d.status, StatusCode::Error);
        assert_eq!(d.attr(attr::ERROR_TYPE), Some(&Value::from("503")));
        let mut c = Span::start(Cow::Borrowed("GET"), Kind::Client, None);
        c.set_http_status(429);
        assert_eq!(ended(c)[0].status, StatusCode::Error);
        let mut c = Span::start(Cow::Borrowed("GET"), Kind::Client, None);
        c.set_error("timeout", "upstream did not answer in time");
        c.set_http_status(504);
        let d = &ended(c)[0];
        assert_eq!(d.attr(attr::ERROR_TYPE), Some(&Value::from("timeout")));
        assert_eq!(
            d.status_message.as_deref(),
            Some("upstream did not answer in time")
        );
    }

    #[test]
    fn status_texts() {
        for code in (400..=431).chain(500..=511) {
            assert_eq!(status_text(code), code.to_string());
        }
        assert_eq!(status_text(599), "_OTHER");
        assert_eq!(status_text(200), "_OTHER");
    }
}
