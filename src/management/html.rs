//! HTML building: the [`Html`] type and the page frame.
//!
//! Pages are plain Rust string building, no template engine: the pages are
//! few and small. Markup is an [`Html`] value, and text becomes one only by
//! being escaped ([`Html::text`], or as an argument of [`html!`]); the only
//! unescaped text is a `&'static str` written in this crate (templates and
//! [`Html::lit`]). So a value from a user, the database or a request cannot
//! reach a page unescaped. No inline script or style anywhere, so the
//! Content-Security-Policy can forbid them: behaviour lives in
//! `assets/app.js`, looks in `assets/app.css`, both embedded in the binary.

use std::time::SystemTime;

/// Markup: built from static templates, escaped text and other `Html`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    pub fn new() -> Self {
        Self::default()
    }

    /// `text`, escaped for element content and quoted attribute values.
    pub fn text(text: &str) -> Self {
        let mut h = Self::new();
        escape_into(&mut h.0, text);
        h
    }

    /// Markup written in this crate.
    pub fn lit(markup: &'static str) -> Self {
        Self(markup.to_owned())
    }

    /// Append markup, or text (escaped).
    pub fn push(&mut self, part: impl Markup) {
        part.write_to(&mut self.0);
    }

    /// `template` with each `{}` replaced by the next of `args`, each
    /// written as [`Markup`] (text escaped). Use it through [`html!`].
    pub fn fill(template: &'static str, args: &[&dyn Markup]) -> Self {
        let mut out = String::with_capacity(template.len() + 16 * args.len());
        let mut rest = template;
        let mut args = args.iter();
        while let Some(at) = rest.find("{}") {
            out.push_str(&rest[..at]);
            match args.next() {
                Some(a) => a.write_to(&mut out),
                None => debug_assert!(false, "html!: fewer arguments than `{{}}` in {template:?}"),
            }
            rest = &rest[at + 2..];
        }
        out.push_str(rest);
        debug_assert!(
            args.next().is_none(),
            "html!: more arguments than `{{}}` in {template:?}"
        );
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromIterator<Html> for Html {
    fn from_iter<I: IntoIterator<Item = Html>>(iter: I) -> Self {
        let mut h = Html::new();
        for part in iter {
            h.0.push_str(&part.0);
        }
        h
    }
}

/// What [`Html::push`] and [`html!`] accept: markup as it is, text escaped,
/// numbers as digits.
pub trait Markup {
    fn write_to(&self, out: &mut String);
}

impl Markup for Html {
    fn write_to(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

impl Markup for str {
    fn write_to(&self, out: &mut String) {
        escape_into(out, self);
    }
}

impl Markup for String {
    fn write_to(&self, out: &mut String) {
        escape_into(out, self);
    }
}

impl<T: Markup + ?Sized> Markup for &T {
    fn write_to(&self, out: &mut String) {
        (**self).write_to(out);
    }
}

macro_rules! digits_markup {
    ($($t:ty),*) => {$(
        impl Markup for $t {
            fn write_to(&self, out: &mut String) {
                out.push_str(&self.to_string());
            }
        }
    )*};
}
digits_markup!(i32, i64, u16, u32, u64, usize);

/// `html!("<p>{}</p>", name)`: a static template whose `{}` take the
/// arguments in order, text escaped (see [`Html::fill`]). Named or inline
/// `{x}` placeholders are not interpreted, so a variable can never slip in
/// unescaped.
macro_rules! html {
    ($template:literal $(, $arg:expr)* $(,)?) => {
        $crate::management::html::Html::fill(
            $template,
            &[$(&$arg as &dyn $crate::management::html::Markup),*],
        )
    };
}
pub(crate) use html;

fn escape_into(out: &mut String, s: &str) {
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
pub fn csrf_field(csrf: &str) -> Html {
    html!(r#"<input type="hidden" name="_csrf" value="{}">"#, csrf)
}

/// A whole page.
pub fn page(title: &str, nav: Option<&Nav<'_>>, main: Html) -> Html {
    let mut h = html!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>{} · authgate</title>
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
        title
    );
    if let Some(n) = nav {
        let tab = |t: Tab, href: &'static str, label: &'static str| {
            let current = if n.tab == t {
                Html::lit(r#" aria-current="page""#)
            } else {
                Html::new()
            };
            html!(r#"<li><a href="{}"{}>{}</a></li>"#, href, current, label)
        };
        h.push(html!(
            r#"<nav class="tabs" aria-label="Token settings"><ul>{}{}{}</ul></nav>
<div class="account"><span class="who">Signed in as <strong>{}</strong></span>
<form method="post" action="/logout">{}<button type="submit" class="button subtle">Sign out</button></form></div>
"#,
            tab(Tab::ApiTokens, "/api-tokens", "API Tokens"),
            tab(Tab::AdminTokens, "/admin-tokens", "Admin Tokens"),
            tab(Tab::AuditLog, "/audit-log", "Audit log"),
            n.email,
            csrf_field(n.csrf)
        ));
    }
    h.push(Html::lit(
        "</div>\n</header>\n<main id=\"main\" class=\"wrap\" tabindex=\"-1\">\n",
    ));
    h.push(main);
    h.push(Html::lit("</main>\n"));
    if nav.is_some() {
        h.push(Html::lit(
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
        ));
    }
    h.push(Html::lit("</body>\n</html>\n"));
    h
}

/// A date for a table cell, in UTC, with the exact time as `datetime`.
pub fn date(t: Option<SystemTime>, none: &str) -> Html {
    match t {
        None => html!(r#"<span class="muted">{}</span>"#, none),
        Some(t) => {
            let exact = humantime::format_rfc3339_seconds(t).to_string();
            // 2025-11-28T07:02:03Z -> 2025-11-28 07:02 UTC
            let shown = format!(
                "{} {} UTC",
                exact.get(..10).unwrap_or(&exact),
                exact.get(11..16).unwrap_or("")
            );
            html!(r#"<time datetime="{}">{}</time>"#, exact, shown)
        }
    }
}

/// An alert box; `error` ones are announced at once.
pub fn alert(kind: &str, text: &str) -> Html {
    let role = if kind == "error" { "alert" } else { "status" };
    html!(
        r#"<div class="alert {}" role="{}"><p>{}</p></div>"#,
        kind,
        role,
        text
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            Html::text(r#"<script>"a" & 'b'</script>"#).as_str(),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(Html::text("plain été").as_str(), "plain été");
    }

    #[test]
    fn templates_escape_text_and_keep_markup() {
        let name = "<img src=x onerror=alert(1)>";
        let inner = html!("<b>{}</b>", "&");
        let h = html!(
            r#"<p title="{}">{} {} {}</p>"#,
            name,
            inner,
            42i64,
            name.to_owned()
        );
        assert_eq!(
            h.as_str(),
            "<p title=\"&lt;img src=x onerror=alert(1)&gt;\"><b>&amp;</b> 42 &lt;img src=x onerror=alert(1)&gt;</p>"
        );
        // An inline `{name}` is not a placeholder: it stays as written.
        assert_eq!(Html::fill("<p>{name}</p>", &[]).as_str(), "<p>{name}</p>");
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
            Html::lit("<p>m</p>"),
        )
        .into_string();
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
            date(Some(t), "never").as_str(),
            r#"<time datetime="2025-11-28T07:02:03Z">2025-11-28 07:02 UTC</time>"#
        );
        assert_eq!(
            date(None, "never").as_str(),
            r#"<span class="muted">never</span>"#
        );
    }
}
