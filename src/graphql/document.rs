//! The operations of one GraphQL document, for read-only tokens.
//!
//! A read-only token may run `query` operations only. The gateway does not
//! parse GraphQL fully; it finds the top-level definitions of the document
//! (skipping strings, block strings, comments and anything nested in braces
//! or parentheses) and answers [`GraphQlOperation::Query`] only when every
//! operation is a query (`query ...` or the `{ ... }` shorthand). Anything
//! else, including a document it cannot read, is `Other`: fail closed. So
//! `operationName` cannot hide a mutation: whichever operation a server
//! selects, every one of them was a query.

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
}
