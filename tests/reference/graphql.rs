//! A reference for tests/graphql_readings.rs, written apart from
//! `src/graphql`: which GraphQL documents the servers behind authgate would
//! execute for one request. Modelled on their sources:
//!
//! * Strapi (`strapi`): graphql-upload's Koa middleware for
//!   `multipart/form-data` (busboy, the `operations` field), then
//!   koa-bodyparser 4 at its defaults (`enableTypes: ['json', 'form']`,
//!   JSON types `application/json`, `application/json-patch+json`,
//!   `application/vnd.api+json`, `application/csp-report`, matched by
//!   type-is on the essence in any case; forms through co-body's `qs` with
//!   `allowDots`; the body read as UTF-8 whatever the charset), then Apollo
//!   Server 4: `body.query` when it is a string, each element of a batch,
//!   the first `query` of the URL on GET.
//! * express-graphql (`express`): `query` from the URL first
//!   (`URLSearchParams.get`), else from the body by type:
//!   `application/json` (charset `utf-8` or `utf-16le` honoured),
//!   `application/x-www-form-urlencoded` (Node `querystring`: a repeated
//!   key is an array, so no string), `application/graphql` (the body).
//! * Generic readers (`generic`): forms and URLs split on `&` and `;`,
//!   first-wins and last-wins; JSON (any `+json` type) first-wins and
//!   last-wins; multipart read leniently (LF line ends, a preamble, any
//!   field named `operations` or `query`).
//!
//! Not included by tests/reference/mod.rs: the fuzz crate that includes
//! that has no `serde_json`.

#![allow(dead_code)]

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// A request as sent.
#[derive(Clone)]
pub struct Req {
    pub method: &'static str,
    pub content_types: Vec<String>,
    pub query: Option<String>,
    pub body: Vec<u8>,
}

/// The body as text, so that a failing case reads.
impl std::fmt::Debug for Req {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Req")
            .field("method", &self.method)
            .field("content_types", &self.content_types)
            .field("query", &self.query)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

/// Every document some modelled server executes.
pub fn all(r: &Req) -> Vec<String> {
    let mut out = strapi(r);
    out.extend(express(r));
    out.extend(generic(r));
    out
}

/// The essence of the first `Content-Type` (Node keeps the first of
/// repeated ones), lower-cased, with its parameters.
fn media(r: &Req) -> Option<(String, Vec<(String, String)>)> {
    let v = r.content_types.first()?;
    let mut pieces = v.split(';');
    let essence = pieces.next()?.trim().to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_owned(),
            )
        })
        .collect();
    Some((essence, params))
}

pub fn strapi(r: &Req) -> Vec<String> {
    let mut out = Vec::new();
    match r.method {
        "GET" | "HEAD" => {
            out.extend(url_first(r.query.as_deref().unwrap_or(""), "query"));
        }
        "POST" if !r.body.is_empty() => {
            let Some((essence, params)) = media(r) else {
                return out;
            };
            let text = String::from_utf8_lossy(&r.body).into_owned();
            let koa_json = [
                "application/json",
                "application/json-patch+json",
                "application/vnd.api+json",
                "application/csp-report",
            ];
            let body: Option<Value> = if essence == "multipart/form-data" {
                let boundary = params.iter().find(|(k, _)| k == "boundary");
                boundary.and_then(|(_, b)| {
                    multipart_lenient(&text, b)
                        .into_iter()
                        .find(|(name, _)| name == "operations")
                        .and_then(|(_, v)| serde_json::from_str(&v).ok())
                })
            } else if koa_json.contains(&essence.as_str()) {
                serde_json::from_str(&text).ok()
            } else if essence == "application/x-www-form-urlencoded" {
                qs_query(&text).map(|q| serde_json::json!({ "query": q }))
            } else {
                None
            };
            out.extend(apollo(body.as_ref()));
        }
        _ => {}
    }
    out
}

/// Apollo Server: a string `query` of the object, or of each batch element.
fn apollo(body: Option<&Value>) -> Vec<String> {
    let one = |v: &Value| v.get("query").and_then(Value::as_str).map(str::to_owned);
    match body {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

pub fn express(r: &Req) -> Vec<String> {
    if r.method != "GET" && r.method != "POST" {
        return Vec::new();
    }
    if let Some(q) = url_first(r.query.as_deref().unwrap_or(""), "query") {
        return vec![q];
    }
    let Some((essence, params)) = media(r).filter(|_| !r.body.is_empty()) else {
        return Vec::new();
    };
    let charset = params
        .iter()
        .find(|(k, _)| k == "charset")
        .map_or("utf-8".to_owned(), |(_, v)| v.to_ascii_lowercase());
    let text = match charset.as_str() {
        "utf-8" | "utf8" => String::from_utf8_lossy(&r.body).into_owned(),
        "utf-16le" => {
            let units: Vec<u16> = r
                .body
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => return Vec::new(),
    };
    match essence.as_str() {
        "application/json" => serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_owned))
            .into_iter()
            .collect(),
        "application/x-www-form-urlencoded" => {
            let q: Vec<String> = pairs(&text, &['&'])
                .filter(|(k, _)| k == "query")
                .map(|(_, v)| v)
                .collect();
            if q.len() == 1 {
                q
            } else {
                Vec::new()
            }
        }
        "application/graphql" => vec![text],
        _ => Vec::new(),
    }
}

pub fn generic(r: &Req) -> Vec<String> {
    let mut out = Vec::new();
    let query = r.query.as_deref().unwrap_or("");
    out.extend(first_last(query));
    let Some((essence, params)) = media(r).filter(|_| !r.body.is_empty()) else {
        return out;
    };
    let text = String::from_utf8_lossy(&r.body).into_owned();
    if essence == "application/x-www-form-urlencoded" {
        out.extend(first_last(&text));
    } else if essence == "application/json" || essence.ends_with("+json") {
        out.extend(apollo(serde_json::from_str::<Value>(&text).ok().as_ref()));
        out.extend(json_first_wins(&text));
    } else if essence == "application/graphql" {
        out.push(text);
    } else if essence == "multipart/form-data" {
        if let Some((_, b)) = params.iter().find(|(k, _)| k == "boundary") {
            for (name, value) in multipart_lenient(&text, b) {
                match name.as_str() {
                    "operations" => {
                        out.extend(apollo(serde_json::from_str::<Value>(&value).ok().as_ref()));
                        out.extend(json_first_wins(&value));
                    }
                    "query" => out.push(value),
                    _ => {}
                }
            }
        }
    }
    out
}

/// First and last `query` of a form, split on `&`, and on `&` and `;`.
fn first_last(form: &str) -> Vec<String> {
    let mut out = Vec::new();
    for seps in [&['&'][..], &['&', ';'][..]] {
        let q: Vec<String> = pairs(form, seps)
            .filter(|(k, _)| k == "query")
            .map(|(_, v)| v)
            .collect();
        out.extend(q.first().cloned());
        out.extend(q.last().cloned());
    }
    out
}

/// `key=value` pairs split at the first `=`, decoded leniently (WHATWG).
fn pairs<'a>(form: &'a str, seps: &'a [char]) -> impl Iterator<Item = (String, String)> + 'a {
    form.split(seps).filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (www_decode(k), www_decode(v))
    })
}

/// The first value of `name` in a query string, as `URLSearchParams.get`.
fn url_first(qs: &str, name: &str) -> Option<String> {
    pairs(qs, &['&']).find(|(k, _)| k == name).map(|(_, v)| v)
}

fn www_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(x)) if b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() => {
                out.push(x);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `decodeURIComponent` after `+` -> space, or the input (with spaces) when
/// it throws: what `qs` does.
fn qs_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    let b = spaced.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let Some(x) = b
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
            else {
                return spaced;
            };
            out.push(x);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or(spaced)
}

/// `qs.parse(body, { allowDots: true })` as co-body runs it, reduced to
/// what Apollo reads: the top-level `query`, when it is one plain string.
pub fn qs_query(body: &str) -> Option<String> {
    let mut body = body.to_owned();
    for (from, to) in [("%5B", "["), ("%5b", "["), ("%5D", "]"), ("%5d", "]")] {
        body = body.replace(from, to);
    }
    let mut values = Vec::new();
    let mut nested = false;
    for part in body.split('&').take(1000) {
        let pos = match part.find("]=") {
            Some(i) => Some(i + 1),
            None => part.find('='),
        };
        let (k, v) = match pos {
            Some(p) => (&part[..p], &part[p + 1..]),
            None => (part, ""),
        };
        let key = qs_decode(k);
        if key.is_empty() {
            continue;
        }
        let key = dots_to_brackets(&key);
        let (root, children) = qs_chain(&key);
        if root != "query" {
            continue;
        }
        if children {
            nested = true;
        } else {
            values.push(qs_decode(v));
        }
    }
    (values.len() == 1 && !nested).then(|| values.remove(0))
}

/// `key.replace(/\.([^.[]+)/g, '[$1]')`.
fn dots_to_brackets(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '.' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                j += 1;
            }
            if j > i + 1 {
                out.push('[');
                out.extend(&chars[i + 1..j]);
                out.push(']');
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// `qs`'s parseKeys: the root of the chain (the parent, or the first
/// segment without brackets when there is no parent), and whether more
/// segments follow it (the value is then an object or an array).
fn qs_chain(key: &str) -> (String, bool) {
    // Every `[...]` without inner brackets, left to right (regex
    // `/(\[[^[\]]*])/g`).
    let mut segments = Vec::new();
    let mut start = None;
    for (i, c) in key.char_indices() {
        if c == '[' {
            start = Some(i);
        } else if c == ']' {
            if let Some(s) = start.take() {
                segments.push((s, i + 1));
            }
        }
    }
    let Some(&(first, _)) = segments.first() else {
        return (key.to_owned(), false);
    };
    let segments = &segments[..segments.len().min(5)];
    if first > 0 {
        return (key[..first].to_owned(), true);
    }
    let (s, e) = segments[0];
    (key[s + 1..e - 1].to_owned(), segments.len() > 1)
}

/// `{"query": ...}` objects (or a batch of them), keeping the first of
/// repeated keys.
fn json_first_wins(text: &str) -> Vec<String> {
    struct First;
    impl<'de> Visitor<'de> for First {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Vec<String>, A::Error> {
            let mut first = None;
            while let Some(k) = m.next_key::<String>()? {
                let v: Value = m.next_value()?;
                if k == "query" && first.is_none() {
                    first = Some(v);
                }
            }
            Ok(first
                .and_then(|v| v.as_str().map(str::to_owned))
                .into_iter()
                .collect())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut s: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(v) = s.next_element::<Value>()? {
                out.extend(json_first_wins(&v.to_string()));
            }
            Ok(out)
        }
    }
    let mut d = serde_json::Deserializer::from_str(text);
    let r = (&mut d).deserialize_any(First);
    r.ok().filter(|_| d.end().is_ok()).unwrap_or_default()
}

/// Parts of a multipart body as a lenient parser reads them: split on the
/// delimiter, LF or CRLF line ends, a preamble skipped; `(name, value)`.
pub fn multipart_lenient(text: &str, boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    for chunk in text.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or_else(|| chunk.strip_prefix('\n'))
            .unwrap_or(chunk);
        let Some((head, content)) = chunk
            .split_once("\r\n\r\n")
            .or_else(|| chunk.split_once("\n\n"))
        else {
            continue;
        };
        let content = content
            .strip_suffix("\r\n")
            .or_else(|| content.strip_suffix('\n'))
            .unwrap_or(content);
        // `name=`, not the end of `filename=`.
        let lower = head.to_ascii_lowercase();
        let Some(at) = lower
            .match_indices("name=")
            .map(|(i, _)| i)
            .find(|&i| i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric())
        else {
            continue;
        };
        let rest = &head[at + 5..];
        let name = match rest.strip_prefix('"') {
            Some(q) => q.split('"').next().unwrap_or(""),
            None => rest.split([';', '\r', '\n', ' ']).next().unwrap_or(""),
        };
        out.push((name.to_owned(), content.to_owned()));
    }
    out
}
