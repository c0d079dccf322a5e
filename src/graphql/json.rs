//! JSON bodies, and the `operations` field of a multipart request: the
//! executions they ask for.
//!
//! A body is one request object or a batch (an array of them; Apollo runs
//! batches when `allowBatchedHttpRequests` is on, other servers always).
//! JavaScript's `JSON.parse` keeps the last of repeated keys, other parsers
//! the first, so every value of every key that names `query` (in any ASCII
//! case, escapes decoded) is kept. A body that is not strict JSON (a byte
//! order mark, a lone surrogate, trailing bytes, nesting past 128) is not
//! read at all.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One execution: what its `query` keys hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// The string values of keys naming `query`.
    pub queries: Vec<String>,
    /// The execution may run a document not in `queries`: a key naming
    /// `query` held no string (`null` with a persisted-query hash, an
    /// object...), or the object has a `__proto__` member, whose own
    /// members a later `Object.assign` would make the object's.
    pub hidden: bool,
}

/// The executions `body` asks for; `None` when it is not one JSON object
/// or an array of objects.
pub fn slots(body: &[u8]) -> Option<Vec<Slot>> {
    serde_json::from_slice::<Top>(body).ok().map(|t| t.0)
}

struct Top(Vec<Slot>);

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GraphQL request object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top, A::Error> {
        Ok(Top(vec![SlotVisitor.visit_map(map)?]))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        let mut out = Vec::new();
        while let Some(slot) = seq.next_element::<Slot>()? {
            out.push(slot);
        }
        Ok(Top(out))
    }
}

impl<'de> Deserialize<'de> for Slot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SlotVisitor)
    }
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GraphQL request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Slot, A::Error> {
        let mut slot = Slot::default();
        while let Some(key) = map.next_key::<String>()? {
            if key.eq_ignore_ascii_case("query") {
                match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(q) => slot.queries.push(q),
                    _ => slot.hidden = true,
                }
            } else {
                slot.hidden |= key == "__proto__";
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(queries: &[&str], hidden: bool) -> Slot {
        Slot {
            queries: queries.iter().map(|q| (*q).to_owned()).collect(),
            hidden,
        }
    }

    #[test]
    fn executions() {
        let rows: &[(&str, Option<Vec<Slot>>)] = &[
            (r#"{"query":"{ a }"}"#, Some(vec![slot(&["{ a }"], false)])),
            (
                r#"{"query":"{ a }","query":"mutation { b }"}"#,
                Some(vec![slot(&["{ a }", "mutation { b }"], false)]),
            ),
            (
                r#"{"\u0071uery":"x","Query":"y","variables":{"query":"z"}}"#,
                Some(vec![slot(&["x", "y"], false)]),
            ),
            (
                r#"[{"query":"a"},{"query":"b"}]"#,
                Some(vec![slot(&["a"], false), slot(&["b"], false)]),
            ),
            (r#"{"query":null}"#, Some(vec![slot(&[], true)])),
            (r#"{"query":["x"]}"#, Some(vec![slot(&[], true)])),
            (
                r#"{"extensions":{"persistedQuery":{}}}"#,
                Some(vec![slot(&[], false)]),
            ),
            (
                r#"{"query":"{ a }","__proto__":{"query":"mutation { b }"}}"#,
                Some(vec![slot(&["{ a }"], true)]),
            ),
            (" \n[]\t", Some(vec![])),
            ("[1]", None),
            (r#""{ a }""#, None),
            ("null", None),
            (r#"{"query":"a"} x"#, None),
            ("\u{feff}{\"query\":\"a\"}", None),
            (r#"{"query":"\ud800"}"#, None),
            ("{", None),
            ("", None),
        ];
        for (body, want) in rows {
            assert_eq!(&slots(body.as_bytes()), want, "{body}");
        }
        // Deep nesting: skipped without recursion elsewhere, refused in `query`.
        let deep = |key: &str| format!("{{\"{key}\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(slots(deep("v").as_bytes()), Some(vec![slot(&[], false)]));
        assert_eq!(slots(deep("query").as_bytes()), None);
    }
}
