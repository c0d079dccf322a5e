//! `multipart/form-data` bodies, read strictly: their `operations` fields
//! (the GraphQL multipart request spec, served by graphql-upload, which
//! Strapi mounts on its GraphQL path) and any `query` field (a server
//! behind a generic multipart parser reads fields as a form).
//!
//! Multipart parsers disagree on nearly everything at the edges: a preamble,
//! a delimiter after a bare LF, blanks after a delimiter, folded or repeated
//! part headers, `name*=` (RFC 2231, busboy only), escapes in quoted names,
//! a part's `charset` (busboy decodes with it), `Content-Transfer-Encoding:
//! base64`. A body is read only when none of that occurs: it starts with the
//! delimiter, every line ends in CRLF, the delimiter occurs (in any case)
//! exactly where this parser found one, and every part is plain; anything
//! else is `None`, and the request is refused.

use super::media::{ascii, is_token, Params};

/// The fields of a multipart body that carry GraphQL.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields<'a> {
    /// `operations` fields: JSON, one request object or a batch.
    pub operations: Vec<&'a [u8]>,
    /// `query` fields: a document.
    pub queries: Vec<&'a [u8]>,
}

/// Read `body` with `boundary`; `None` when any parser could read it
/// differently.
pub fn fields<'a>(body: &'a [u8], boundary: &str) -> Option<Fields<'a>> {
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let next = [b"\r\n", &delimiter[..]].concat();
    let mut rest = body.strip_prefix(&delimiter[..])?;
    let mut delimiters = 1;
    let mut out = Fields::default();
    loop {
        if let Some(epilogue) = rest.strip_prefix(b"--") {
            if !epilogue.is_empty() && epilogue != b"\r\n" {
                return None;
            }
            break;
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let (head, after_head) = match rest.strip_prefix(b"\r\n") {
            Some(content) => (&b""[..], content),
            None => {
                let end = find(rest, b"\r\n\r\n")?;
                (&rest[..end], &rest[end + 4..])
            }
        };
        let end = find(after_head, &next)?;
        let content = &after_head[..end];
        rest = &after_head[end + next.len()..];
        delimiters += 1;
        let name = part_name(head)?;
        if name.eq_ignore_ascii_case("operations") {
            out.operations.push(content);
        } else if name.eq_ignore_ascii_case("query") {
            out.queries.push(content);
        }
    }
    (occurrences(body, &delimiter) == delimiters).then_some(out)
}

/// The field name of a part, from its header lines; `None` unless they
/// are plain.
fn part_name(head: &[u8]) -> Option<&str> {
    let mut disposition = None;
    let mut media_type = None;
    let mut coding = None;
    for line in split(head, b"\r\n") {
        let line = ascii(line)?;
        let (name, value) = line.split_once(':')?;
        if !is_token(name) {
            // Also a folded line (leading blank) or a blank before `:`.
            return None;
        }
        let slot = match name.to_ascii_lowercase().as_str() {
            "content-disposition" => &mut disposition,
            "content-type" => &mut media_type,
            "content-transfer-encoding" => &mut coding,
            _ => continue,
        };
        if slot.replace(value.trim_matches([' ', '\t'])).is_some() {
            return None;
        }
    }
    if let Some(c) = coding {
        if !["7bit", "8bit", "binary"]
            .iter()
            .any(|ok| c.eq_ignore_ascii_case(ok))
        {
            return None;
        }
    }
    if let Some(t) = media_type {
        let (essence, params) = t.split_at(t.find(';').unwrap_or(t.len()));
        let (ty, sub) = essence.trim_end_matches([' ', '\t']).split_once('/')?;
        if !is_token(ty) || !is_token(sub) {
            return None;
        }
        Params::parse(params).ok()?.utf8().ok()?;
    }
    let d = disposition?;
    let (ty, params) = d.split_at(d.find(';')?);
    if !ty
        .trim_end_matches([' ', '\t'])
        .eq_ignore_ascii_case("form-data")
    {
        return None;
    }
    Params::parse(params).ok()?.get("name")
}

/// How often `needle` occurs in `hay`, ASCII case ignored, not overlapping.
fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        if hay[i..i + needle.len()].eq_ignore_ascii_case(needle) {
            n += 1;
            i += needle.len();
        } else {
            i += 1;
        }
    }
    n
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `hay` cut at every `sep`.
fn split<'a>(hay: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    let mut rest = Some(hay);
    std::iter::from_fn(move || {
        let r = rest?;
        match find(r, sep) {
            Some(i) => {
                rest = Some(&r[i + sep.len()..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: &str = r#"{"query":"{ a }"}"#;

    fn body(parts: &[(&str, &str)]) -> String {
        let mut b = String::new();
        for (head, content) in parts {
            b.push_str(&format!("--XyZ\r\n{head}\r\n\r\n{content}\r\n"));
        }
        b.push_str("--XyZ--\r\n");
        b
    }

    fn read(b: &str) -> Option<(Vec<&str>, Vec<&str>)> {
        let f = fields(b.as_bytes(), "XyZ")?;
        Some((text(f.operations), text(f.queries)))
    }

    fn text(v: Vec<&[u8]>) -> Vec<&str> {
        v.into_iter()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect()
    }

    #[test]
    fn plain_bodies() {
        let ops = "Content-Disposition: form-data; name=\"operations\"";
        let map = "Content-Disposition: form-data; name=\"map\"";
        let file = "Content-Disposition: form-data; name=\"0\"; filename=\"a.txt\"\r\nContent-Type: text/plain";
        let b = body(&[(ops, OPS), (map, "{}"), (file, "--Xy\r\nfile")]);
        assert_eq!(read(&b), Some((vec![OPS], vec![])));
        let b = body(&[
            ("content-disposition: FORM-DATA; name=OPERATIONS", OPS),
            ("Content-Disposition: form-data; name=query\r\nContent-Type: text/plain; charset=utf-8", "{ b }"),
            (ops, "[]"),
        ]);
        assert_eq!(read(&b), Some((vec![OPS, "[]"], vec!["{ b }"])));
        // No epilogue, an empty field.
        let b = format!("--XyZ\r\n{ops}\r\n\r\n\r\n--XyZ--");
        assert_eq!(read(&b), Some((vec![""], vec![])));
        assert_eq!(read("--XyZ--"), Some((vec![], vec![])));
    }

    #[test]
    fn anything_read_two_ways_is_refused() {
        let ops = "Content-Disposition: form-data; name=\"operations\"";
        let good = body(&[(ops, OPS)]);
        assert!(read(&good).is_some());
        let refused = [
            format!("preamble\r\n{good}"),
            good.replace("\r\n", "\n"),
            good.replace("--XyZ--\r\n", "--XyZ--\r\nepilogue"),
            good.replace("--XyZ\r\n", "--XyZ \r\n"),
            good.replace(
                OPS,
                "{}\n--XyZ\r\nContent-Disposition: form-data; name=operations\r\n\r\n{}",
            ),
            good.replace(OPS, "{}--xyz"),
            good.replace("--XyZ--\r\n", ""),
            good.replace("name=\"operations\"", "name*=utf-8''operations"),
            good.replace("name=\"operations\"", "name=\"operations\"; name=\"x\""),
            good.replace("name=\"operations\"", "name=\"oper\\ations\""),
            good.replace("name=\"operations\"", "name=\"operations\"\r\n\tx"),
            good.replace(
                "name=\"operations\"",
                "name=\"operations\"\r\nContent-Type: application/json; charset=utf-16le",
            ),
            good.replace(
                "name=\"operations\"",
                "name=\"operations\"\r\nContent-Transfer-Encoding: base64",
            ),
            good.replace(ops, &format!("{ops}\r\n{ops}")),
            good.replace("form-data", "attachment"),
            good.replace(ops, "Content-Type: text/plain"),
            good.replace(ops, "Content-Disposition : form-data; name=operations"),
            good.replace("operations", "op\u{e9}rations"),
            format!("--XyZ\r\n\r\n{OPS}\r\n--XyZ--"),
        ];
        for b in refused {
            assert_eq!(read(&b), None, "{b:?}");
        }
    }
}
