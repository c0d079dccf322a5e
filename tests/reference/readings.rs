//! A reference reader, written apart from `src/route`: how the programs
//! behind authgate may read a request, for the property test
//! (tests/properties.rs) and the fuzz target (fuzz/fuzz_targets/readings.rs).
//!
//! Paths: every state reachable from the path decoded once by applying, in any
//! order and any number of times, one of the lenient readers' steps
//! (percent-decode one round, the same with `%uXXXX`, `\` -> `/`, end at a
//! decoded `?`/`#`, drop `;` parameters, trim trailing dots and blanks,
//! fold case), then dot segments resolved (clamped at the root) and empty
//! segments dropped. This is wider than what `route::readings` enumerates
//! (decoding first, then the rest), on purpose: an order it misses shows.
//!
//! `Authorization`: the token each of a handful of real readers extracts
//! (Strapi's `split(/\s+/)` over latin1, passport-http-bearer, Python's
//! `str.split()` and Django REST framework's `bytes.split()`, Laravel's
//! `bearerToken()`, a PHP `preg_match('/Bearer\s(\S+)/i')`).

use std::collections::BTreeSet;

/// Route classes as the reference sees them: by the first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Admin,
    ContentApi,
    Other,
}

pub const ADMIN: &[&str] = &["admin", "content-manager", "upload"];
pub const CONTENT: &[&str] = &["api", "graphql"];

/// The class a plain path (one of [`paths`]) names, case-insensitively.
pub fn class_of(path: &str) -> Class {
    let first = path.split('/').find(|s| !s.is_empty()).unwrap_or("");
    let first = first.to_ascii_lowercase();
    if ADMIN.contains(&first.as_str()) {
        Class::Admin
    } else if CONTENT.contains(&first.as_str()) {
        Class::ContentApi
    } else {
        Class::Other
    }
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn decode_once(s: &[u8], iis: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((&c, tail)) = rest.split_first() {
        if c == b'%' {
            if iis && tail.len() >= 5 && (tail[0] | 0x20) == b'u' {
                let v = tail[1..5]
                    .iter()
                    .map(|&d| unhex(d))
                    .collect::<Option<Vec<u8>>>()
                    .map(|d| d.iter().fold(0u32, |a, &x| a * 16 + u32::from(x)));
                if let Some(ch) = v.and_then(char::from_u32) {
                    out.extend(ch.to_string().bytes());
                    rest = &tail[5..];
                    continue;
                }
            }
            if tail.len() >= 2 {
                if let (Some(h), Some(l)) = (unhex(tail[0]), unhex(tail[1])) {
                    out.push(h * 16 + l);
                    rest = &tail[2..];
                    continue;
                }
            }
        }
        out.push(c);
        rest = tail;
    }
    out
}

fn per_segment(s: &[u8], f: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = s.split(|&c| c == b'/').map(&f).collect();
    parts.join(&b'/')
}

fn steps(s: &[u8]) -> Vec<Vec<u8>> {
    vec![
        decode_once(s, false),
        decode_once(s, true),
        s.iter()
            .map(|&c| if c == b'\\' { b'/' } else { c })
            .collect(),
        s.split(|&c| c == b'?' || c == b'#')
            .next()
            .unwrap_or_default()
            .to_vec(),
        per_segment(s, |seg| {
            seg.split(|&c| c == b';')
                .next()
                .unwrap_or_default()
                .to_vec()
        }),
        per_segment(s, |seg| {
            let mut v = seg.to_vec();
            while v.last().is_some_and(|c| *c == b' ' || *c == b'\t') {
                v.pop();
            }
            if v != b"." && v != b".." {
                while v.last().is_some_and(|c| matches!(c, b'.' | b' ' | b'\t')) {
                    v.pop();
                }
            }
            v
        }),
        s.to_ascii_lowercase(),
    ]
}

fn resolve(s: &[u8]) -> String {
    let text = String::from_utf8_lossy(s);
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        if seg == ".." {
            out.pop();
        } else if !seg.is_empty() && seg != "." {
            out.push(seg);
        }
    }
    format!("/{}", out.join("/"))
}

/// Every reading of `raw`, resolved; `None` when there are more than
/// `limit` intermediate states (the caller skips such inputs).
pub fn paths(raw: &str, limit: usize) -> Option<BTreeSet<String>> {
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
    // Every reader decodes at least once.
    let mut todo = vec![decode_once(raw.as_bytes(), false)];
    while let Some(s) = todo.pop() {
        if !seen.insert(s.clone()) {
            continue;
        }
        if seen.len() > limit {
            return None;
        }
        for next in steps(&s) {
            if !seen.contains(&next) {
                todo.push(next);
            }
        }
    }
    Some(seen.iter().map(|s| resolve(s)).collect())
}

/// Does some reading of `raw` contain a control character (where a reader
/// may stop, or a file system may cut)?
pub fn has_control(readings: &BTreeSet<String>) -> bool {
    readings.iter().any(|r| {
        r.chars()
            .any(|c| c.is_control() && c != '\u{85}' && c != '\u{a0}')
    })
}

fn latin1(v: &[u8]) -> String {
    v.iter().map(|&b| char::from(b)).collect()
}

fn js_space(c: char) -> bool {
    // ECMAScript WhiteSpace + LineTerminator, within latin1.
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}')
}

fn py_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{1c}'..='\u{1f}')
}

fn two_parts(parts: &[&str]) -> Option<String> {
    match parts {
        [scheme, token] if scheme.eq_ignore_ascii_case("bearer") => Some((*token).to_owned()),
        _ => None,
    }
}

/// What each reader takes for the bearer token of this header value.
pub fn tokens(value: &[u8]) -> Vec<(&'static str, Option<String>)> {
    let s = latin1(value);
    let strapi: Vec<&str> = s.split(js_space).filter(|p| !p.is_empty()).collect();
    // JavaScript's split keeps a leading empty part.
    let strapi = if s.starts_with(js_space) {
        None
    } else {
        two_parts(&strapi)
    };
    let passport: Vec<&str> = s.split(' ').collect();
    let python: Vec<&str> = s.split(py_space).filter(|p| !p.is_empty()).collect();
    let drf: Vec<&[u8]> = value
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|p| !p.is_empty())
        .collect();
    let drf = match drf.as_slice() {
        [scheme, token] if scheme.eq_ignore_ascii_case(b"bearer") => Some(latin1(token)),
        _ => None,
    };
    let laravel = s
        .to_ascii_lowercase()
        .rfind("bearer ")
        .map(|i| s[i + 7..].split(',').next().unwrap_or("").to_owned());
    let pcre_space = |c: char| {
        matches!(
            c,
            ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | '\u{85}' | '\u{a0}'
        )
    };
    let lower = s.to_ascii_lowercase();
    let preg = lower.match_indices("bearer").find_map(|(i, _)| {
        let rest = &s[i + 6..];
        let mut chars = rest.chars();
        if !chars.next().is_some_and(pcre_space) {
            return None;
        }
        let tail = chars.as_str();
        let tok: String = tail.chars().take_while(|c| !pcre_space(*c)).collect();
        (!tok.is_empty()).then_some(tok)
    });
    vec![
        ("strapi", strapi),
        ("passport", two_parts(&passport)),
        ("python", two_parts(&python)),
        ("drf", drf),
        ("laravel", laravel),
        ("preg", preg),
    ]
}

/// Could this be a key a reader then looks up? (RFC 6750 b64token, and not
/// a JWT, which the CMS verifies itself.)
pub fn key_like(t: &str) -> bool {
    !t.is_empty()
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
        && t.split('.').count() != 3
}
