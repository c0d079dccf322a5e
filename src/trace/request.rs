//! A request's trace as the request path carries it: an [`ActiveTrace`]
//! when the request is recorded, else nothing, behind one type.
//!
//! The phases hand `&mut` of its SERVER span ([`RequestTrace::span`]) to
//! the modules that do the work (the look-up, the rate limiter), which
//! start and end their own children under it; untraced, that span is a
//! [`Span::none`] and every call on it returns at once.

use super::active::ActiveTrace;
use super::context::Encoded;
use super::span::{Kind, Span, Value};

/// The trace of one request, recorded or not: two pointers wide, so an
/// untraced request carries (and moves) two nulls.
#[derive(Debug)]
pub struct RequestTrace {
    active: Option<Box<ActiveTrace>>,
    /// Stands in for the SERVER span of an untraced request.
    none: Span,
}

/// What a traced request sends the CMS in place of the client's
/// `traceparent` and `tracestate` (see the module doc of `trace`).
#[derive(Debug, Clone, Copy)]
pub struct Propagate<'a> {
    pub traceparent: &'a Encoded,
    /// The client's, checked and combined; `None`: none is sent.
    pub tracestate: Option<&'a str>,
}

impl From<Option<ActiveTrace>> for RequestTrace {
    fn from(active: Option<ActiveTrace>) -> Self {
        Self {
            active: active.map(Box::new),
            none: Span::none(),
        }
    }
}

impl RequestTrace {
    /// An untraced request.
    pub fn none() -> Self {
        Self::from(None)
    }

    pub fn is_recording(&self) -> bool {
        self.active.is_some()
    }

    /// The recorded trace, if there is one.
    pub fn active(&self) -> Option<&ActiveTrace> {
        self.active.as_deref()
    }

    /// The SERVER span (one that records nothing when untraced).
    pub fn span(&mut self) -> &mut Span {
        match &mut self.active {
            Some(t) => t.span(),
            None => &mut self.none,
        }
    }

    /// Set an attribute on the SERVER span.
    pub fn set_attr(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(t) = &mut self.active {
            t.set_attr(key, value);
        }
    }

    /// Start a child of the SERVER span.
    pub fn child(&self, name: &'static str, kind: Kind) -> Span {
        match &self.active {
            Some(t) => t.child(name, kind),
            None => Span::none(),
        }
    }

    /// End a child of the SERVER span.
    pub fn end_child(&mut self, child: Span) {
        if let Some(t) = &mut self.active {
            t.end_child(child);
        }
    }

    /// The `traceparent` for the CMS with `via` as its parent, when the
    /// request is recorded.
    pub fn traceparent_for_upstream(&self, via: &Span) -> Option<Encoded> {
        self.active
            .as_ref()
            .map(|t| t.traceparent_for_upstream(via))
    }

    /// The client's checked `tracestate`, to send on with the `traceparent`.
    pub fn tracestate(&self) -> Option<&str> {
        self.active.as_deref().and_then(ActiveTrace::tracestate)
    }

    /// End the trace (nothing to do when untraced).
    pub fn end(self) {
        if let Some(t) = self.active {
            t.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untraced_it_is_two_pointers_and_records_nothing() {
        assert_eq!(
            std::mem::size_of::<RequestTrace>(),
            2 * std::mem::size_of::<usize>()
        );
        assert_eq!(std::mem::size_of::<Span>(), std::mem::size_of::<usize>());
        let mut t = RequestTrace::none();
        assert!(!t.is_recording());
        t.set_attr("k", "v");
        let c = t.child("c", Kind::Client);
        assert!(!c.is_recording());
        assert!(t.traceparent_for_upstream(&c).is_none());
        t.end_child(c);
        assert!(!t.span().is_recording());
        assert_eq!(t.tracestate(), None);
        t.end();
    }
}
