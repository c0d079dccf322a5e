//! Every plausible reading of a request path by what sits behind authgate.
//!
//! authgate forwards one normal form of the path ([`super::normalise`]), but
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
//! Each transformation is applied or not, after every depth of
//! percent-decoding from one round to the fixpoint, so a reader that
//! applies any subset of them at any depth is covered. Transformations that
//! cannot change a given path are skipped, so a path needs one reading per
//! distinct result, not one per combination.

use super::PathError;

/// More percent-decoding rounds than this is an attack, not a file name.
const MAX_DEPTH: usize = 6;
/// More distinct readings than this is an attack too.
const MAX_READINGS: usize = 512;

/// Can no reading of `raw` differ from authgate's own? True for a path with
/// no escapes, no `;`, no `\`, no upper case and no segment ending in a dot
/// or blank: every transformation above is then the identity (dot segments
/// and repeated slashes are resolved alike by every reader, and `..` above
/// the root is refused by [`super::normalise`] before this is asked).
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
    let mut out: Vec<String> = Vec::new();
    for decoded in decodings(raw)? {
        let ops = Ops::relevant(&decoded);
        // Every subset of the relevant transformations.
        let mut subset = ops.0;
        loop {
            let reading = read(&decoded, Ops(subset))?;
            if !out.contains(&reading) {
                if out.len() == MAX_READINGS {
                    return Err(PathError::AmbiguousReading);
                }
                out.push(reading);
            }
            if subset == 0 {
                break;
            }
            subset = (subset - 1) & ops.0;
        }
    }
    Ok(out)
}

/// `raw` percent-decoded once, twice, ... until nothing changes, with and
/// without `%uXXXX`; distinct results only.
fn decodings(raw: &str) -> Result<Vec<Vec<u8>>, PathError> {
    let mut all: Vec<Vec<u8>> = Vec::new();
    for iis in [false, true] {
        let mut cur = raw.as_bytes().to_vec();
        let mut depth = 0;
        loop {
            let next = decode_round(&cur, iis);
            if next == cur {
                break;
            }
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(PathError::AmbiguousReading);
            }
            if !all.contains(&next) {
                all.push(next.clone());
            }
            cur = next;
        }
    }
    if all.is_empty() {
        all.push(raw.as_bytes().to_vec());
    }
    Ok(all)
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// `s` percent-decoded once, leniently (what query parsers do to names).
pub(super) fn decode_once(s: &str) -> Vec<u8> {
    decode_round(s.as_bytes(), false)
}

/// One round of lenient percent-decoding: a valid `%XX` becomes its byte,
/// `%uXXXX` (when `iis`) its character in UTF-8, anything else stays.
fn decode_round(b: &[u8], iis: bool) -> Vec<u8> {
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

/// A set of transformations, as bits.
#[derive(Clone, Copy)]
struct Ops(u8);

impl Ops {
    const BACKSLASH: u8 = 1;
    const CUT_QUERY: u8 = 2;
    const DROP_PARAMS: u8 = 4;
    const TRIM: u8 = 8;
    const FOLD: u8 = 16;

    /// The transformations that can change this decoded path.
    fn relevant(p: &[u8]) -> Ops {
        let mut bits = 0;
        if p.contains(&b'\\') {
            bits |= Self::BACKSLASH;
        }
        if p.iter().any(|c| matches!(c, b'?' | b'#')) {
            bits |= Self::CUT_QUERY;
        }
        if p.contains(&b';') {
            bits |= Self::DROP_PARAMS;
        }
        if p.iter().any(|c| matches!(c, b'.' | b' ' | b'\t')) {
            bits |= Self::TRIM;
        }
        if p.iter().any(u8::is_ascii_uppercase) {
            bits |= Self::FOLD;
        }
        Ops(bits)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// Apply `ops` to a decoded path and resolve it to `/a/b` form.
fn read(decoded: &[u8], ops: Ops) -> Result<String, PathError> {
    let mut p: Vec<u8> = decoded.to_vec();
    if ops.has(Ops::BACKSLASH) {
        for c in &mut p {
            if *c == b'\\' {
                *c = b'/';
            }
        }
    }
    if ops.has(Ops::CUT_QUERY) {
        if let Some(i) = p.iter().position(|c| matches!(c, b'?' | b'#')) {
            p.truncate(i);
        }
    }
    if ops.has(Ops::FOLD) {
        p.make_ascii_lowercase();
    }
    if p.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlChar);
    }
    let text = String::from_utf8_lossy(&p);
    let mut stack: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        let mut seg = seg;
        if ops.has(Ops::DROP_PARAMS) {
            seg = seg.split(';').next().unwrap_or("");
        }
        if ops.has(Ops::TRIM) {
            seg = seg.trim_end_matches([' ', '\t']);
            if seg != "." && seg != ".." {
                seg = seg.trim_end_matches(['.', ' ', '\t']);
            }
        }
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
