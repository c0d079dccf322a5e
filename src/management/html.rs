//! HTML building: escaping and the page frame.
//!
//! Pages are plain Rust string building, no template engine: the pages are
//! few and small, and every value that did not come from this file goes
//! through [`esc`] (text and attribute values alike, quotes included). No
//! inline script or style anywhere, so the Content-Security-Policy can
//! forbid them: behaviour lives in `assets/app.js`, looks in
//! `assets/app.css`, both embedded in the binary.

use std::fmt::Write as _;
use std::time::SystemTime;

/// Escape text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The stylesheet, embedded.
pub const CSS: &str = include_str!("assets/app.css");
/// The icon.
pub const FAVICON: &str = include_str!("assets/favicon.svg");
/// The script (copy buttons, confirmation dialogs, the type switch), embedded.
pub const JS: &str = include_str!("assets/app.js");

/// The Content-Security-Policy of every page: nothing but our own assets.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Which tab the page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    ApiTokens,
    AdminTokens,
    AuditLog,
    None,
}

/// The signed-in header: who, the tabs, and sign-out.
pub struct Nav<'a> {
    pub email: &'a str,
    pub csrf: &'a str,
    pub tab: Tab,
}

/// A hidden CSRF field for a form.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        r#"<input type="hidden" name="_csrf" value="{}">"#,
        esc(csrf)
    )
}

/// A whole page.
pub fn page(title: &str, nav: Option<&Nav<'_>>, main: &str) -> String {
    let mut h = String::with_capacity(main.len() + 4096);
    let _ = write!(
        h,
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{title} · authgate</title>
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="site-header">
<div class="wrap header-inner">
<a class="brand" href="/">authgate <span class="brand-sub">tokens</span></a>
"##,
        title = esc(title)
    );
    if let Some(n) = nav {
        let tab = |t: Tab, href: &str, label: &str| {
            let current = if n.tab == t {
                r#" aria-current="page""#
            } else {
                ""
            };
            format!(r#"<li><a href="{href}"{current}>{label}</a></li>"#)
        };
        let _ = write!(
            h,
            r#"<nav class="tabs" aria-label="Token settings"><ul>{}{}{}</ul></nav>
<div class="account"><span class="who">Signed in as <strong>{}</strong></span>
<form method="post" action="/logout">{}<button type="submit" class="button subtle">Sign out</button></form></div>
"#,
            tab(Tab::ApiTokens, "/api-tokens", "API Tokens"),
            tab(Tab::AdminTokens, "/admin-tokens", "Admin Tokens"),
            tab(Tab::AuditLog, "/audit-log", "Audit log"),
            esc(n.email),
            csrf_field(n.csrf),
        );
    }
    h.push_str("</div>\n</header>\n<main id=\"main\" class=\"wrap\" tabindex=\"-1\">\n");
    h.push_str(main);
    h.push_str("</main>\n");
    if nav.is_some() {
        h.push_str(
            r#"<dialog id="confirm-dialog" class="dialog" aria-labelledby="confirm-title" aria-describedby="confirm-message">
<form method="dialog">
<h2 id="confirm-title">Are you sure?</h2>
<p id="confirm-message"></p>
<div class="form-actions">
<button type="submit" value="cancel" class="button" id="confirm-cancel">Cancel</button>
<button type="submit" value="confirm" class="button danger" id="confirm-ok">Confirm</button>
</div>
</form>
</dialog>
"#,
        );
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// A date for a table cell, in UTC, with the exact time as `datetime`.
pub fn date(t: Option<SystemTime>, none: &str) -> String {
    match t {
        None => format!(r#"<span class="muted">{}</span>"#, esc(none)),
        Some(t) => {
            let exact = humantime::format_rfc3339_seconds(t).to_string();
            // 2025-11-28T07:02:03Z -> 2025-11-28 07:02 UTC
            let shown = format!(
                "{} {} UTC",
                exact.get(..10).unwrap_or(&exact),
                exact.get(11..16).unwrap_or("")
            );
            format!(r#"<time datetime="{}">{}</time>"#, esc(&exact), esc(&shown))
        }
    }
}

/// An alert box; `error` ones are announced at once.
pub fn alert(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(
        r#"<div class="alert {kind}" role="{role}"><p>{}</p></div>"#,
        esc(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(esc("plain été"), "plain été");
    }

    #[test]
    fn page_escapes_the_title_and_user() {
        let p = page(
            "<x>",
            Some(&Nav {
                email: "a\"@b",
                csrf: "t\"",
                tab: Tab::ApiTokens,
            }),
            "<p>m</p>",
        );
        assert!(p.contains("<title>&lt;x&gt; · authgate</title>"));
        assert!(p.contains("a&quot;@b"));
        assert!(p.contains(r#"value="t&quot;""#));
        assert!(p.contains(r#"<a href="/api-tokens" aria-current="page">"#));
        assert!(!p.contains("<script>"), "no inline script");
    }

    #[test]
    fn dates() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_313_323);
        assert_eq!(
            date(Some(t), "never"),
            r#"<time datetime="2025-11-28T07:02:03Z">2025-11-28 07:02 UTC</time>"#
        );
        assert_eq!(date(None, "never"), r#"<span class="muted">never</span>"#);
    }
}
