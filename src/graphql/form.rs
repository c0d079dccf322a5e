//! `application/x-www-form-urlencoded` bodies and URL query strings: every
//! value that some reader could take as the `query` parameter.
//!
//! Readers differ. Apollo's GET and Node's `querystring` take the first of
//! repeated keys, PHP and Python's `dict(parse_qsl(...))` the last, and
//! koa-bodyparser's `qs` (with `allowDots`, as co-body sets it) also reads
//! `[query]`, `.query` and `[query]anything` as `query`, and splits a pair
//! after its first `]=` (`%5D=` counts) rather than at its first `=`. Older
//! readers split on `;` as well as `&`. Keys decode leniently everywhere
//! (`qs` keeps a key it cannot decode as it was, WHATWG keeps a bad `%`).
//!
//! So every pair under every one of those splits is looked at, and a value
//! is a candidate whenever its key names `query` under any of those key
//! readings, in any ASCII case: a superset of what any of them executes.
//! A candidate value must decode cleanly (valid `%XX`, UTF-8), else the
//! request is refused: readers disagree on what a bad escape means.

use super::{Reading, Unjudgeable};

/// Call `each` with every value some reader could take as `query` in
/// `input`; the number of them.
pub fn queries(
    input: &[u8],
    reading: Reading,
    mut each: impl FnMut(&str),
) -> Result<usize, Unjudgeable> {
    let mut found = 0;
    for part in input.split(|b| *b == b'&') {
        found += pairs(part, reading, &mut each)?;
        if part.contains(&b';') {
            for sub in part.split(|b| *b == b';') {
                found += pairs(sub, reading, &mut each)?;
            }
        }
    }
    Ok(found)
}

/// The `query` candidates of one `key=value` part, split both ways.
fn pairs(part: &[u8], reading: Reading, each: &mut impl FnMut(&str)) -> Result<usize, Unjudgeable> {
    let first = part.iter().position(|b| *b == b'=');
    let qs = qs_split(part);
    let mut found = 0;
    for (i, at) in [first, qs].into_iter().enumerate() {
        if i == 1 && at == first {
            break;
        }
        let (key, value) = match at {
            Some(at) => (&part[..at], &part[at + 1..]),
            None => (part, &b""[..]),
        };
        if names_query(key) {
            let doc = decode_strict(value).ok_or(Unjudgeable::Unreadable(reading))?;
            each(&doc);
            found += 1;
        }
    }
    Ok(found)
}

/// Where `qs` splits: after the first `]=` (a `%5D` counts as `]`), else
/// at the first `=`. The index of the `=`.
fn qs_split(part: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < part.len() {
        if part[i] == b']' && part.get(i + 1) == Some(&b'=') {
            return Some(i + 1);
        }
        if part[i] == b'%'
            && part
                .get(i + 1..i + 3)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"5d"))
            && part.get(i + 3) == Some(&b'=')
        {
            return Some(i + 3);
        }
        i += 1;
    }
    part.iter().position(|b| *b == b'=')
}

/// Does some reader take this raw key as `query`?
fn names_query(raw: &[u8]) -> bool {
    // Cheap exit: a key naming `query` holds its letters, raw or escaped.
    if raw.len() < 5 {
        return false;
    }
    [decode_or_keep(raw), decode_lenient(raw)]
        .iter()
        .any(|key| {
            let key = key.trim_matches(|c: char| c.is_ascii_whitespace());
            let is = |k: &str| k.eq_ignore_ascii_case("query");
            is(key) || is(qs_root(key)) || is(qs_root(&allow_dots(key)))
        })
}

/// The top-level name `qs` files a key under: the text before the first
/// `[...]` group (no brackets inside), or that group's content when
/// nothing comes before it; text after the groups is dropped.
fn qs_root(key: &str) -> &str {
    let mut open = None;
    for (i, c) in key.bytes().enumerate() {
        match (c, open) {
            (b'[', _) => open = Some(i),
            (b']', Some(0)) => return &key[1..i],
            (b']', Some(o)) => return &key[..o],
            _ => {}
        }
    }
    key
}

/// `qs`'s `allowDots`: `.name` (a run without `.` or `[`) becomes `[name]`.
fn allow_dots(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 2);
    let mut rest = key;
    while let Some(i) = rest.find('.') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let run = after.find(['.', '[']).unwrap_or(after.len());
        if run == 0 {
            out.push('.');
        } else {
            out.push('[');
            out.push_str(&after[..run]);
            out.push(']');
        }
        rest = &after[run..];
    }
    out.push_str(rest);
    out
}

/// `qs`'s decoder: `+` is a space; then every escape, or none at all when
/// one is bad (JavaScript's `decodeURIComponent` throws).
fn decode_or_keep(raw: &[u8]) -> String {
    match decode_strict(raw) {
        Some(s) => s,
        None => String::from_utf8_lossy(raw).replace('+', " "),
    }
}

/// WHATWG's decoder: `+` is a space, good escapes decode, a bad `%` stays.
fn decode_lenient(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], hex_pair(raw.get(i + 1..i + 3))) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `+` is a space and every `%` starts a valid escape; the result is UTF-8.
pub fn decode_strict(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                out.push(hex_pair(raw.get(i + 1..i + 3))?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex_pair(h: Option<&[u8]>) -> Option<u8> {
    let h = std::str::from_utf8(h?).ok()?;
    if h.bytes().all(|b| b.is_ascii_hexdigit()) {
        u8::from_str_radix(h, 16).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Result<Vec<String>, Unjudgeable> {
        let mut v = Vec::new();
        queries(input.as_bytes(), Reading::Form, |d| v.push(d.to_owned()))?;
        Ok(v)
    }

    #[test]
    fn every_reading_of_query() {
        let rows: &[(&str, &[&str])] = &[
            ("query=%7Ba%7D", &["{a}"]),
            ("query=a+b", &["a b"]),
            ("x=1&query=a&y=2", &["a"]),
            ("query=a&query=b", &["a", "b"]),
            ("%71uery=a", &["a"]),
            ("QUERY=a", &["a"]),
            ("query+=a", &["a"]),
            ("[query]=a", &["a"]),
            ("%5Bquery%5D=a", &["a"]),
            ("[query]junk=a", &["a"]),
            (".query=a", &["a"]),
            ("query[]=a", &["a"]),
            ("query", &[""]),
            // qs splits after the first `]=`, others at the first `=`: both
            // keys name `query` (qs drops what follows `[query]`).
            ("[query]x=y]=z", &["y]=z", "z"]),
            ("[query]=a]=b", &["a]=b"]),
            ("[query%5D=a", &["a"]),
            ("x;query=a", &["a"]),
            ("queryx=a&xquery=b&a[query]=c&que.ry=d&q=e", &[]),
            ("query%3Da=b", &[]),
            ("", &[]),
        ];
        for (input, want) in rows {
            let want: Vec<String> = want.iter().map(|w| (*w).to_owned()).collect();
            assert_eq!(all(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn a_candidate_must_decode() {
        assert_eq!(
            all("query=%zz"),
            Err(Unjudgeable::Unreadable(Reading::Form))
        );
        assert_eq!(
            all("query=%ff"),
            Err(Unjudgeable::Unreadable(Reading::Form))
        );
        assert_eq!(all("query=%7"), Err(Unjudgeable::Unreadable(Reading::Form)));
        // Only candidates: a bad escape elsewhere is the CMS's business.
        assert_eq!(all("x=%zz&query=a"), Ok(vec!["a".to_owned()]));
        // A key that does not decode stays as it is: not `query`.
        assert_eq!(all("%zzquery=a"), Ok(vec![]));
    }

    #[test]
    fn qs_keys() {
        assert_eq!(qs_root("query"), "query");
        assert_eq!(qs_root("[query]"), "query");
        assert_eq!(qs_root("[query]x[y]"), "query");
        assert_eq!(qs_root("a[query]"), "a");
        assert_eq!(qs_root("[[query]"), "[");
        assert_eq!(qs_root("query["), "query[");
        assert_eq!(allow_dots(".query"), "[query]");
        assert_eq!(allow_dots("a.b.c"), "a[b][c]");
        assert_eq!(allow_dots("a..b"), "a.[b]");
        assert_eq!(allow_dots("a.[b]"), "a.[b]");
    }
}
