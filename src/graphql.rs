//! Which GraphQL operations a request carries, for read-only tokens.
//!
//! A read-only token may run `query` operations only. The gateway does not
//! parse GraphQL fully; it finds the top-level definitions of the document
//! (skipping strings, block strings, comments and anything nested in braces
//! or parentheses) and answers [`GraphQlOperation::Query`] only when every
//! operation is a query (`query ...` or the `{ ... }` shorthand). Anything
//! else, including a document it cannot read, is `Other`: fail closed.

use crate::authz::GraphQlOperation;

/// Classify a GraphQL document.
pub fn document(doc: &str) -> GraphQlOperation {
    let b = doc.as_bytes();
    let mut i = 0;
    let mut depth: usize = 0;
    let mut operations = 0;
    // A top-level `query` or `fragment` keyword whose `{ ... }` body is next.
    let mut body_pending = false;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => i = skip_comment(b, i),
            b'"' => match skip_string(b, i) {
                Some(next) => i = next,
                None => return GraphQlOperation::Other,
            },
            b'{' | b'(' | b'[' => {
                if depth == 0 && c == b'{' && !std::mem::take(&mut body_pending) {
                    // `{ ... }` at the top with no keyword before it: the
                    // query shorthand.
                    operations += 1;
                }
                depth += 1;
                i += 1;
            }
            b'}' | b')' | b']' => {
                if depth == 0 {
                    return GraphQlOperation::Other;
                }
                depth -= 1;
                i += 1;
            }
            c if depth == 0 && (c.is_ascii_alphabetic() || c == b'_') => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                match &doc[start..i] {
                    "query" => {
                        operations += 1;
                        body_pending = true;
                    }
                    "fragment" => body_pending = true,
                    "mutation" | "subscription" => return GraphQlOperation::Other,
                    _ => {}
                }
            }
            _ => i += 1,
        }
    }
    if depth != 0 || operations == 0 {
        return GraphQlOperation::Other;
    }
    GraphQlOperation::Query
}

/// The index after the `#` comment starting at `i` (its line end).
fn skip_comment(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
        i += 1;
    }
    i
}

/// The index after the string or block string starting at `i` (a `"`);
/// `None` when it never ends (or a plain string meets a line end).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    if b[i..].starts_with(b"\"\"\"") {
        i += 3;
        loop {
            if i >= b.len() {
                return None;
            }
            if b[i] == b'\\' && b[i..].starts_with(b"\\\"\"\"") {
                i += 4;
            } else if b[i..].starts_with(b"\"\"\"") {
                return Some(i + 3);
            } else {
                i += 1;
            }
        }
    }
    i += 1;
    loop {
        match b.get(i) {
            None | Some(b'\n') => return None,
            Some(b'\\') => i += 2,
            Some(b'"') => return Some(i + 1),
            Some(_) => i += 1,
        }
    }
}

/// Classify a POST body: `{"query": "..."}` or a batch array of those.
pub fn json_body(body: &[u8]) -> GraphQlOperation {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return GraphQlOperation::Other;
    };
    let one = |v: &serde_json::Value| match v.get("query").and_then(|q| q.as_str()) {
        Some(q) => document(q),
        None => GraphQlOperation::Other,
    };
    match &v {
        serde_json::Value::Array(items) if !items.is_empty() => {
            if items.iter().all(|i| one(i) == GraphQlOperation::Query) {
                GraphQlOperation::Query
            } else {
                GraphQlOperation::Other
            }
        }
        serde_json::Value::Object(_) => one(&v),
        _ => GraphQlOperation::Other,
    }
}

/// Classify a GET query string (`?query=...`, form-encoded).
pub fn query_string(qs: &str) -> GraphQlOperation {
    let mut found = None;
    for pair in qs.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k).as_deref() == Some("query") {
            if found.is_some() {
                return GraphQlOperation::Other; // two documents: ambiguous
            }
            found = form_decode(v);
            if found.is_none() {
                return GraphQlOperation::Other;
            }
        }
    }
    found.map_or(GraphQlOperation::Other, |d| document(&d))
}

fn form_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use GraphQlOperation::{Other, Query};

    #[test]
    fn documents() {
        let rows = [
            ("{ articles { title } }", Query),
            ("query { articles { title } }", Query),
            ("query Q($id: ID) { article(id: $id) { title } }", Query),
            ("query A { a } query B { b }", Query),
            ("query A { a } fragment F on Article { title }", Query),
            ("# mutation\n{ a }", Query),
            ("{ a(where: \"mutation { x }\") }", Query),
            ("{ a(text: \"\"\"mutation\n{\"\"\") }", Query),
            ("mutation { createArticle(data: {}) { id } }", Other),
            ("subscription { x }", Other),
            ("query A { a } mutation B { b }", Other),
            ("query mutation { a }", Other),
            ("", Other),
            ("   ", Other),
            ("fragment F on A { x }", Other),
            ("{ a ", Other),
            ("} {", Other),
            ("{ a(x: \"unterminated) }", Other),
        ];
        for (doc, want) in rows {
            assert_eq!(document(doc), want, "{doc}");
        }
    }

    #[test]
    fn bodies_and_query_strings() {
        assert_eq!(json_body(br#"{"query":"{ a }"}"#), Query);
        assert_eq!(json_body(br#"{"query":"mutation { a }"}"#), Other);
        assert_eq!(
            json_body(br#"[{"query":"{ a }"},{"query":"query { b }"}]"#),
            Query
        );
        assert_eq!(
            json_body(br#"[{"query":"{ a }"},{"query":"mutation { b }"}]"#),
            Other
        );
        assert_eq!(json_body(br#"[]"#), Other);
        assert_eq!(json_body(b"not json"), Other);
        assert_eq!(json_body(br#"{"variables":{}}"#), Other);
        assert_eq!(query_string("query=%7B+a+%7D"), Query);
        assert_eq!(query_string("query=mutation+%7B+a+%7D"), Other);
        assert_eq!(query_string("x=1&query=%7Ba%7D"), Query);
        assert_eq!(query_string("query=%7Ba%7D&query=mutation%7Bb%7D"), Other);
        assert_eq!(query_string("query=%zz"), Other);
        assert_eq!(query_string(""), Other);
    }
}
