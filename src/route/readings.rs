//! Every plausible reading of a request path by what sits behind authgate.
//!
//! authgate forwards one normal form of the path ([`super::normalise()`]), but
//! the CMS, its framework or a proxy behind it may read those bytes
//! differently: decode percent-escapes again (`%2561dmin` -> `%61dmin` ->
//! `admin`), decode IIS's `%uXXXX`, take `\` for `/`, re-parse a decoded
//! `?` or `#`, drop `;` parameters before resolving dot segments (Tomcat's
//! `..;/`), trim trailing dots and blanks (IIS, Windows file systems), fold
//! case. [`readings`] lists the distinct paths those readings produce, each
//! with dot segments resolved (clamped at the root, as lenient readers do)
//! and repeated slashes merged, ready for [`super::RouteTable::classify`]
//! (a literal `%` is re-escaped as `%25`, so classifying does not decode a
//! reading once more).
//!
//! The readings are every state reachable from the path decoded once (every
//! reader decodes at least once, as authgate's classification does) by
//! applying those steps in any order, any number of times (a reader may drop `;`
//! parameters and then decode again), so a reader that applies any
//! sequence of them is covered. Steps that cannot change a path leave it
//! as it is, so a path needs one reading per distinct result, not one per
//! sequence: an ordinary path has one or two.

use super::PathError;

/// More percent-decoding rounds than this is an attack, not a file name.
const MAX_DEPTH: usize = 6;
/// More distinct readings than this is an attack too.
const MAX_READINGS: usize = 64;

/// Can no reading of `raw` differ from authgate's own? True for a path with
/// no escapes, no `;`, no `\`, no upper case and no segment ending in a dot
/// or blank: every transformation above is then the identity (dot segments
/// and repeated slashes are resolved alike by every reader, and `..` above
/// the root is refused by [`super::normalise()`] before this is asked).
pub fn is_plain(raw: &str) -> bool {
    let b = raw.as_bytes();
    let no_special = b.iter().fold(true, |ok, &c| {
        ok & !matches!(c, b'%' | b';' | b'\\' | b'A'..=b'Z')
    });
    no_special
        && !raw
            .split('/')
            .any(|seg| seg.ends_with(['.', ' ', '\t']) && seg != "." && seg != "..")
}

/// The distinct readings of `raw` (a request path, without the query).
/// Fails when a reading yields a control character (a reader may stop at
/// a NUL) or when the path needs more decoding rounds or readings than any
/// real path does.
pub fn readings(raw: &str) -> Result<Vec<String>, PathError> {
    let mut depth = 0;
    let mut cur = raw.as_bytes().to_vec();
    loop {
        let next = decode_round(&cur, true);
        if next == cur {
            break;
        }
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(PathError::AmbiguousReading);
        }
        cur = next;
    }
    // Every reader decodes at least once (so does authgate's own
    // classification): the readings start from one round of decoding.
    let mut states: Vec<Vec<u8>> = vec![decode_round(raw.as_bytes(), false)];
    let mut seen: std::collections::HashSet<Vec<u8>> = states.iter().cloned().collect();
    let mut i = 0;
    while let Some(state) = states.get(i).cloned() {
        for step in Step::ALL {
            let next = step.apply(&state);
            if seen.insert(next.clone()) {
                if states.len() == MAX_READINGS {
                    return Err(PathError::AmbiguousReading);
                }
                states.push(next);
            }
        }
        i += 1;
    }
    let mut out: Vec<String> = Vec::with_capacity(states.len());
    for state in &states {
        let r = resolve(state)?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u32> {
    super::normalise::hex_val(b).map(u32::from)
}

/// One round of lenient percent-decoding: a valid `%XX` becomes its byte,
/// `%uXXXX` (when `iis`) its character in UTF-8, anything else stays (also
/// what classification decodes a segment with, and query parsers a name).
pub(super) fn decode_round(b: &[u8], iis: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if iis && matches!(b.get(i + 1), Some(b'u' | b'U')) {
                let digits: Option<u32> = b
                    .get(i + 2..i + 6)
                    .and_then(|d| d.iter().try_fold(0u32, |acc, &c| Some(acc << 4 | hex(c)?)));
                if let Some(ch) = digits.and_then(char::from_u32) {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    continue;
                }
            }
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h << 4 | l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// One step a lenient reader may take.
#[derive(Clone, Copy)]
enum Step {
    Decode,
    DecodeIis,
    Backslash,
    CutQuery,
    DropParams,
    Trim,
    Fold,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Decode,
        Step::DecodeIis,
        Step::Backslash,
        Step::CutQuery,
        Step::DropParams,
        Step::Trim,
        Step::Fold,
    ];

    fn apply(self, p: &[u8]) -> Vec<u8> {
        match self {
            Step::Decode => decode_round(p, false),
            Step::DecodeIis => decode_round(p, true),
            Step::Backslash => p
                .iter()
                .map(|&c| if c == b'\\' { b'/' } else { c })
                .collect(),
            Step::CutQuery => {
                let end = p.iter().position(|c| matches!(c, b'?' | b'#'));
                p[..end.unwrap_or(p.len())].to_vec()
            }
            Step::DropParams => per_segment(p, |seg| {
                let end = seg.iter().position(|&c| c == b';').unwrap_or(seg.len());
                &seg[..end]
            }),
            Step::Trim => per_segment(p, |seg| {
                let mut s = seg;
                while let [rest @ .., b' ' | b'\t'] = s {
                    s = rest;
                }
                if s != b"." && s != b".." {
                    while let [rest @ .., b'.' | b' ' | b'\t'] = s {
                        s = rest;
                    }
                }
                s
            }),
            Step::Fold => p.to_ascii_lowercase(),
        }
    }
}

fn per_segment(p: &[u8], f: impl Fn(&[u8]) -> &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for (i, seg) in p.split(|&c| c == b'/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(f(seg));
    }
    out
}

/// A state as a path: dot segments resolved (clamped at the root), empty
/// segments dropped, a literal `%` re-escaped.
fn resolve(p: &[u8]) -> Result<String, PathError> {
    if p.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlChar);
    }
    let text = String::from_utf8_lossy(p);
    let mut stack: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    for s in &stack {
        out.push('/');
        // Classification decodes `%XX` once: keep a literal `%` literal.
        out.push_str(&s.replace('%', "%25"));
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(raw: &str, want: &str) -> bool {
        readings(raw).unwrap().iter().any(|r| r == want)
    }

    #[test]
    fn plain_paths_need_no_readings() {
        for p in [
            "/api/articles",
            "/admin/users/3",
            "/uploads/a.png",
            "/",
            "/a/../b",
        ] {
            assert!(is_plain(p), "{p}");
        }
        for p in ["/%2561dmin", "/a;b", "/Admin", "/admin.", "/a%20"] {
            assert!(!is_plain(p), "{p}");
        }
    }

    #[test]
    fn readings_cover_the_tricks() {
        assert!(has("/%2561dmin/users", "/admin/users"));
        assert!(has("/%252561dmin/users", "/admin/users"));
        assert!(has("/admin%252fusers", "/admin/users"));
        assert!(has("/%25u0061dmin/users", "/admin/users"));
        assert!(has("/api/..%253b/admin", "/admin"));
        assert!(has("/api/..;/admin", "/admin"));
        assert!(has("/api/x%255c..%255c..%255cadmin", "/admin"));
        assert!(has("/admin%253fx/users", "/admin"));
        assert!(has("/api/..%2520/admin", "/admin"));
        assert!(has("/ADMIN/Users", "/admin/users"));
        assert!(has("/uploads/100%25.png", "/uploads/100%25.png"));
    }

    #[test]
    fn control_characters_and_deep_encodings_are_refused() {
        assert_eq!(readings("/a%2500b"), Err(PathError::ControlChar));
        let deep = format!("/%{}61dmin", "25".repeat(8));
        assert_eq!(readings(&deep), Err(PathError::AmbiguousReading));
    }
}
