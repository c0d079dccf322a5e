//! Text for a terminal: what the operator's commands print of values that
//! anyone with a management right chose (token names and descriptions,
//! user and role names, audit targets, error messages quoting them).
//!
//! A terminal acts on control characters: `\r` and `ESC [2K` rewrite the
//! line an operator is reading, an OSC sequence sets the window title or
//! (in some terminals) writes the clipboard, and C1 `CSI` (U+009B) does
//! what `ESC [` does. So every text-mode printer passes such values through
//! [`escape`], which writes C0 (U+0000..U+001F), DEL (U+007F) and C1
//! (U+0080..U+009F) as visible escapes, and `\` as `\\`: the output never
//! holds a control character, and the escaping is reversible (no two
//! strings print alike). JSON output (`--json`) stays JSON: serde escapes
//! C0 there, and [`json_line`] writes DEL and C1 as `\u00XX` too.

use std::borrow::Cow;

/// `println!` for a terminal: the formatted line, [`escape`]d. Every
/// text-mode line the commands print goes through it (or through
/// [`json_line`] with `--json`).
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::cli::display::escape(&format!($($arg)*)))
    };
}

/// `eprintln!` for a terminal, like [`say`].
macro_rules! say_err {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::cli::display::escape(&format!($($arg)*)))
    };
}

/// `s` with C0, DEL and C1 characters written as escapes (`\t`, `\n`,
/// `\r`, `\xNN` for the rest of C0 and DEL, `\u{NN}` for C1) and `\` as
/// `\\`; borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_control(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && is_control(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// C0, DEL or C1.
fn is_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x1f | 0x7f..=0x9f)
}

/// One JSON value as one line for a terminal: serde's text (C0 already
/// escaped), with DEL and C1 inside strings written as `\u00XX`. The line
/// parses to the same value.
pub fn json_line(v: &serde_json::Value) -> String {
    json_text(v.to_string())
}

/// [`json_line`] of JSON text serde wrote.
pub fn json_text(text: String) -> String {
    // serde writes every C0 character escaped, so what is left to do is
    // DEL and C1, which JSON allows raw and may appear only inside strings.
    if !text.chars().any(is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_control(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
