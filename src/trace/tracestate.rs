//! The client's `tracestate`: checked, combined from all its fields, and
//! passed on unchanged with a trace the gateway continues.
//!
//! authgate adds no entry of its own (it has no vendor state to carry), so
//! the list goes on as it came: the spec's "order of unmodified key/value
//! pairs MUST be preserved". It is read only when the `traceparent` was
//! valid (the spec: a vendor that failed to parse `traceparent` MUST NOT
//! parse `tracestate`). Several fields are one list joined by commas
//! (RFC 9110 §5.3). Empty and whitespace-only members are allowed and left
//! out. A list that breaks the grammar anywhere (a bad key or value, more
//! than 32 members, a field that is not text) is dropped whole, which the
//! spec allows ("MAY discard the entire header") and its test suite
//! expects. Duplicate keys from elsewhere are kept as they came.

use http::header::HeaderMap;

use super::context::TRACESTATE;

/// Most list members a `tracestate` may have.
pub const MAX_MEMBERS: usize = 32;

/// The combined, checked `tracestate` of a request; `None` when there is
/// none, it is empty, or it is not valid.
pub fn from_headers(h: &HeaderMap) -> Option<String> {
    let mut out = String::new();
    let mut members = 0;
    for field in h.get_all(TRACESTATE) {
        let text = std::str::from_utf8(field.as_bytes()).ok()?;
        for member in text.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            if !is_member(member) {
                return None;
            }
            members += 1;
            if members > MAX_MEMBERS {
                return None;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// `key "=" value`, as the spec's ABNF gives them.
fn is_member(m: &str) -> bool {
    let Some((key, value)) = m.split_once('=') else {
        return false;
    };
    is_key(key) && is_value(value)
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, keychar being
/// `lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`.
fn is_key(k: &str) -> bool {
    let b = k.as_bytes();
    let Some(first) = b.first() else {
        return false;
    };
    b.len() <= 256
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(c))
}

/// `value = 0*255(chr) nblk-chr`: 1 to 256 printable ASCII characters but
/// `,` and `=`, the last not a space. (Trailing spaces were trimmed as
/// optional whitespace before this is asked.)
fn is_value(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn state(fields: &[&str]) -> Option<String> {
        let mut h = HeaderMap::new();
        for f in fields {
            h.append(TRACESTATE, HeaderValue::from_str(f).unwrap());
        }
        from_headers(&h)
    }

    #[test]
    fn fields_combine_in_order() {
        assert_eq!(state(&[]), None);
        assert_eq!(state(&[""]), None);
        assert_eq!(state(&[" , ,\t"]), None);
        assert_eq!(
            state(&["rojo=00f067aa0ba902b7"]).unwrap(),
            "rojo=00f067aa0ba902b7"
        );
        assert_eq!(
            state(&["rojo=1 , congo=t61rcWkgMzE", "", "x@y=2"]).unwrap(),
            "rojo=1,congo=t61rcWkgMzE,x@y=2"
        );
        // Leading spaces inside a value are part of it.
        assert_eq!(state(&["a= b"]).unwrap(), "a= b");
        // Duplicates from elsewhere are passed on as they came.
        assert_eq!(state(&["foo=1", "foo=2"]).unwrap(), "foo=1,foo=2");
    }

    #[test]
    fn keys() {
        let long = "z".repeat(256);
        let too_long = "z".repeat(257);
        for ok in ["a", "0", "foo@", "foo@@bar", "a_-*/@b", long.as_str()] {
            assert!(state(&[&format!("{ok}=1")]).is_some(), "{ok}");
        }
        for bad in ["@foo", "Foo", "_a", "a.b", "", too_long.as_str(), "a b"] {
            assert_eq!(state(&[&format!("{bad}=1"), "ok=2"]), None, "{bad}");
        }
    }

    #[test]
    fn values() {
        let long = "v".repeat(256);
        let too_long = "v".repeat(257);
        assert!(state(&[&format!("k={long}")]).is_some());
        for bad in [
            "k=",
            "k=bar=baz",
            "foo=,bar=3",
            &format!("k={too_long}"),
            "k",
        ] {
            assert_eq!(state(&[bad]), None, "{bad}");
        }
        // Printable ASCII but `,` and `=`.
        let all: String = (0x21u8..=0x7e)
            .filter(|c| *c != b',' && *c != b'=')
            .map(char::from)
            .collect();
        assert_eq!(state(&[&format!("k={all}")]).unwrap(), format!("k={all}"));
    }

    #[test]
    fn at_most_32_members() {
        let list = |n: usize| {
            (1..=n)
                .map(|i| format!("bar{i:02}={i:02}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(state(&[&list(32)]).unwrap(), list(32));
        assert_eq!(state(&[&list(33)]), None);
        // Counted across fields.
        assert_eq!(state(&[&list(20), &list(13)]), None);
    }

    #[test]
    fn a_field_that_is_not_text_drops_the_list() {
        let mut h = HeaderMap::new();
        h.append(TRACESTATE, HeaderValue::from_static("a=1"));
        h.append(TRACESTATE, HeaderValue::from_bytes(b"b=\xff").unwrap());
        assert_eq!(from_headers(&h), None);
    }
}
