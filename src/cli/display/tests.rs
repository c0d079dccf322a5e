//! [`escape`] over generated strings: nothing a terminal acts on survives,
//! and the escaping can be undone (so it is injective).

use proptest::prelude::*;

use super::*;

fn is_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x1f | 0x7f | 0x80..=0x9f)
}

/// The inverse of [`escape`], written apart from it.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            '\\' => out.push('\\'),
            't' => out.push('\t'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'x' => {
                let hex: String = [it.next()?, it.next()?].iter().collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).ok()?));
            }
            'u' => {
                if it.next()? != '{' {
                    return None;
                }
                let hex: String = it.by_ref().take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Strings rich in what matters here: C0, DEL, C1, `\`, escapes' own
/// letters, and any other Unicode.
fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap_or('?')),
        Just('\u{7f}'),
        (0x80u32..0xa0).prop_map(|c| char::from_u32(c).unwrap_or('?')),
        prop::sample::select(vec!['\\', 'x', 'u', '{', '}', '[', ']', ';', '0', 'n']),
        any::<char>(),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn escaped_text_holds_no_control_character_and_can_be_undone(s in hostile()) {
        let e = escape(&s);
        prop_assert!(!e.chars().any(is_control), "{:?} -> {:?}", s, e);
        prop_assert_eq!(unescape(&e), Some(s.clone()));
    }

    #[test]
    fn json_lines_hold_no_control_character_and_parse_back(s in hostile()) {
        let v = serde_json::json!({"name": s, "n": [1, s]});
        let line = json_line(&v);
        prop_assert!(!line.chars().any(is_control), "{:?}", line);
        prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&line).ok(), Some(v));
    }
}

#[test]
fn plain_text_is_unchanged_and_borrowed() {
    for s in ["", "site token", "Zoë – ünïcode ✓ 日本", "a/b:c@d.e"] {
        assert!(matches!(escape(s), Cow::Borrowed(x) if x == s));
    }
    assert_eq!(
        escape("ok\u{1b}]0;pwned\u{7}\r\u{1b}[2K\u{7f}\u{9b}\\"),
        r"ok\x1b]0;pwned\x07\r\x1b[2K\x7f\u{9b}\\"
    );
}
