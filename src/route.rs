//! Which kind of token a request needs, and which action it performs.
//!
//! A gateway that decides by path is only as safe as its agreement with the
//! upstream on what the path is. So the path is normalised exactly once
//! ([`normalise`]), the normalised path is what gets classified, and the same
//! normalised path is what gets forwarded. Anything that cannot be
//! normalised without guessing (an encoded `/` or `\`, a NUL or control
//! byte, `..` above the root, bytes that are not UTF-8 once decoded) is
//! refused with 400. The bytes forwarded can still be read differently by
//! what is behind us (decoded once more, `..;/`, ...), so
//! [`RouteTable::judge`] also classifies every such reading ([`readings`])
//! and refuses the request unless they all agree: the one statement of the
//! property is its doc comment.
//!
//! Classification compares whole segments, ignoring ASCII case, `;` matrix
//! parameters and trailing dots or blanks (`/ADMIN`, `/admin;x=1` and
//! `/admin.` are admin routes; `/administrator` is not). Where the two sides
//! could disagree, this errs towards the stricter reading.
//!
//! Actions come from three tables, all compiled once from config:
//! the content types (`/api/<plural>[/<id>]` -> `api::x.x.find` ...), explicit
//! content-API patterns for plugin routes, and the admin action table
//! (`GET /content-manager/collection-types/:model` -> `explorer.read` on
//! `:model`). Patterns match segment-wise; literal segments beat parameters
//! from left to right; two patterns that match exactly the same requests
//! are a config error.

use std::borrow::Cow;
use std::sync::Arc;

use http::Method;

pub mod readings;

/// The three route classes of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Admin,
    ContentApi,
    Unprotected,
}

impl RouteClass {
    /// A bounded label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Admin => "admin",
            RouteClass::ContentApi => "content-api",
            RouteClass::Unprotected => "unprotected",
        }
    }
}

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the CMS could read this path as another route than authgate judged")]
    AmbiguousReading,
    #[error("method names are upper case")]
    MethodCase,
    #[error("CONNECT is never forwarded")]
    Connect,
    #[error("a `_method` query parameter could override the method")]
    MethodOverride,
    #[error("request target is not an absolute path")]
    NotAbsolute,
    #[error("malformed percent-encoding")]
    BadEscape,
    #[error("encoded `/` or `\\` in a segment")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("NUL or control character in path")]
    ControlChar,
    #[error("`..` above the root")]
    AboveRoot,
    #[error("not UTF-8 after percent-decoding")]
    InvalidUtf8,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// True when the path is already normal: no escapes, no backslash, no
/// empty, `.` or `..` segment except a single trailing slash.
fn is_already_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.iter()
        .any(|&c| c == b'%' || c == b'\\' || c < 0x21 || c == 0x7f)
    {
        return false;
    }
    let rest = &path[1..];
    if rest.is_empty() {
        return true;
    }
    let mut segs = rest.split('/').peekable();
    while let Some(seg) = segs.next() {
        let last = segs.peek().is_none();
        match seg {
            "" if last => {}
            "" | "." | ".." => return false,
            _ => {}
        }
    }
    true
}

/// Decode the escapes of one segment: unreserved characters become literal,
/// everything else stays escaped (with upper-case hex). Checks the fully
/// decoded bytes for separators, control characters and UTF-8.
fn decode_segment<'a>(raw: &'a str, scratch: &mut Vec<u8>) -> Result<Cow<'a, str>, PathError> {
    let b = raw.as_bytes();
    if b.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    if b.iter().any(|&c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlChar);
    }
    if !b.contains(&b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    scratch.clear();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c != b'%' {
            scratch.push(c);
            // `raw` is a str, so copying byte-wise keeps it valid UTF-8 as
            // long as whole characters are copied: do it by char boundary.
            let ch_len = utf8_len(c);
            out.push_str(&raw[i..i + ch_len]);
            scratch.extend_from_slice(&b[i + 1..i + ch_len]);
            i += ch_len;
            continue;
        }
        let (Some(h), Some(l)) = (
            b.get(i + 1).copied().and_then(hex_val),
            b.get(i + 2).copied().and_then(hex_val),
        ) else {
            return Err(PathError::BadEscape);
        };
        let d = h << 4 | l;
        match d {
            b'/' | b'\\' => return Err(PathError::EncodedSeparator),
            0..=0x1f | 0x7f => return Err(PathError::ControlChar),
            _ => {}
        }
        scratch.push(d);
        if is_unreserved(d) {
            out.push(d as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(d >> 4)] as char);
            out.push(HEX[usize::from(d & 0xf)] as char);
        }
        i += 3;
    }
    if std::str::from_utf8(scratch).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    Ok(Cow::Owned(out))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// Normalise a request path (without the query): decode unreserved escapes,
/// resolve `.` and `..`, merge repeated slashes. Keeps one trailing slash.
pub fn normalise(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut starts: Vec<usize> = Vec::new();
    let mut scratch = Vec::new();
    let mut trailing = false;
    let mut segs = path[1..].split('/').peekable();
    while let Some(raw) = segs.next() {
        let last = segs.peek().is_none();
        let seg = decode_segment(raw, &mut scratch)?;
        match seg.as_ref() {
            "" | "." => trailing = last,
            ".." => {
                let start = starts.pop().ok_or(PathError::AboveRoot)?;
                out.truncate(start);
                trailing = last;
            }
            s => {
                starts.push(out.len());
                out.push('/');
                out.push_str(s);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Fully percent-decode a (normalised, hence valid) segment.
fn decode_all(seg: &str) -> Cow<'_, str> {
    if !seg.contains('%') {
        return Cow::Borrowed(seg);
    }
    match String::from_utf8(readings::decode_round(seg.as_bytes(), false)) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Does a path segment name the literal `lit` (lower-case)? Ignores ASCII
/// case, `;` parameters and trailing dots/blanks, after decoding.
pub fn segment_is(seg: &str, lit: &str) -> bool {
    if !seg.contains(['%', ';', '.', ' ']) {
        return seg.eq_ignore_ascii_case(lit);
    }
    let decoded = decode_all(seg);
    let key = decoded.split(';').next().unwrap_or("");
    let key = key.trim_end_matches(['.', ' ', '\t']);
    key.eq_ignore_ascii_case(lit)
}

/// The deepest path, in segments, the action tables match.
const MAX_SEGMENTS: usize = 16;

/// Split a normalised path into its segments (no empty ones but a trailing
/// slash yields none).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Methods of the IANA HTTP method registry beyond the seven standard ones
/// (and CONNECT, which is never forwarded): the ones a table row may name.
const REGISTERED_EXTENSIONS: [&str; 32] = [
    "ACL",
    "BASELINE-CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "COPY",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "ORDERPATCH",
    "PROPFIND",
    "PROPPATCH",
    "PURGE",
    "QUERY",
    "REBIND",
    "REPORT",
    "SEARCH",
    "TRACE",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
];

/// A set of HTTP methods: the seven standard ones as bits (GET implies
/// HEAD), extension methods (`PROPFIND`, `SEARCH`, ...) by name, or `*`
/// for every method, known or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSet {
    bits: u8,
    extensions: Box<[Method]>,
}

impl MethodSet {
    const NAMES: [&'static str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    /// The bit standing for every method outside [`Self::NAMES`].
    const OTHER: u8 = 0x80;

    /// Every method, standard or not.
    pub fn all() -> MethodSet {
        MethodSet {
            bits: 0xff,
            extensions: Box::default(),
        }
    }

    fn bit(m: &Method) -> u8 {
        match *m {
            Method::GET => 1,
            Method::HEAD => 2,
            Method::POST => 4,
            Method::PUT => 8,
            Method::PATCH => 16,
            Method::DELETE => 32,
            Method::OPTIONS => 64,
            _ => 0,
        }
    }

    /// Is `m` one of the seven methods the action tables are written in?
    /// Any other method is judged as the most demanding one.
    pub fn is_standard(m: &Method) -> bool {
        Self::bit(m) != 0
    }

    /// Parse `GET|POST`, `PROPFIND`, or `*` for all.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut bits = 0u8;
        let mut extensions = Vec::new();
        for part in s.split('|') {
            let part = part.trim().to_ascii_uppercase();
            if part == "*" {
                bits = 0xff;
            } else if part == "GET" {
                bits |= 1 | 2;
            } else if let Some(i) = Self::NAMES.iter().position(|n| *n == part) {
                bits |= 1 << i;
            } else if REGISTERED_EXTENSIONS.contains(&part.as_str()) {
                let m = Method::from_bytes(part.as_bytes())
                    .map_err(|_| format!("unknown HTTP method `{part}`"))?;
                extensions.push(m);
            } else {
                // A typo (`GTE`) must not silently become a method of its own.
                return Err(format!("unknown HTTP method `{part}`"));
            }
        }
        Ok(MethodSet {
            bits,
            extensions: extensions.into(),
        })
    }

    pub fn contains(&self, m: &Method) -> bool {
        match Self::bit(m) {
            0 => self.bits & Self::OTHER != 0 || self.extensions.contains(m),
            b => self.bits & b != 0,
        }
    }

    pub fn intersects(&self, other: &MethodSet) -> bool {
        self.bits & other.bits != 0
            || self.extensions.iter().any(|m| other.contains(m))
            || other.extensions.iter().any(|m| self.contains(m))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatSeg {
    Lit(String),
    Param(String),
}

#[derive(Debug, Clone)]
enum SubjectFrom {
    Param(usize),
    Fixed(Arc<str>),
}

#[derive(Debug, Clone)]
struct PatternEntry {
    source: String,
    methods: MethodSet,
    segs: Vec<PatSeg>,
    /// `None`: the route needs no specific action (it shadows less specific
    /// patterns, as `/admin/users/me` shadows `/admin/users/:id`).
    action: Option<Arc<str>>,
    subject: Option<SubjectFrom>,
}

impl PatternEntry {
    /// Ranks for ordering: literal (1) beats parameter (0), left to right.
    fn rank(&self) -> Vec<u8> {
        self.segs
            .iter()
            .map(|s| u8::from(matches!(s, PatSeg::Lit(_))))
            .collect()
    }

    /// Two patterns that match exactly the same paths.
    fn same_shape(&self, other: &PatternEntry) -> bool {
        self.segs.len() == other.segs.len()
            && self
                .segs
                .iter()
                .zip(&other.segs)
                .all(|(a, b)| match (a, b) {
                    (PatSeg::Lit(x), PatSeg::Lit(y)) => x == y,
                    (PatSeg::Param(_), PatSeg::Param(_)) => true,
                    _ => false,
                })
    }
}

/// One row of an action table as written in config.
#[derive(Debug, Clone)]
pub struct PatternSpec {
    /// `GET|HEAD /content-manager/collection-types/:model`
    pub route: String,
    /// Empty: the route needs no specific action.
    pub action: String,
    /// `:param` to take the subject from the path, or a fixed subject.
    pub subject: Option<String>,
}

/// Where the subject of an admin action comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ActionSubject<'a> {
    /// The action is checked without a subject.
    None,
    /// A path parameter (e.g. the content type of `/content-manager/.../:model`).
    FromPath,
    /// A fixed subject written in the table.
    Fixed(&'a str),
}

/// A compiled table of `METHOD /path/:param` patterns.
#[derive(Debug, Clone, Default)]
pub struct PatternTable {
    entries: Vec<PatternEntry>,
}

/// The action (and subject) a pattern table assigns to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    pub action: Option<&'a str>,
    pub subject: Option<Cow<'a, str>>,
}

impl PatternTable {
    pub fn build(specs: &[PatternSpec]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(specs.len());
        for spec in specs {
            let (methods, path) = spec
                .route
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| format!("route `{}`: expected `METHOD /path`", spec.route))?;
            let methods =
                MethodSet::parse(methods).map_err(|e| format!("route `{}`: {e}", spec.route))?;
            let path = path.trim();
            if !path.starts_with('/') {
                return Err(format!(
                    "route `{}`: the path must start with `/`",
                    spec.route
                ));
            }
            let mut segs = Vec::new();
            for s in segments(path) {
                if let Some(name) = s.strip_prefix(':') {
                    if name.is_empty() {
                        return Err(format!("route `{}`: empty parameter name", spec.route));
                    }
                    segs.push(PatSeg::Param(name.to_owned()));
                } else {
                    segs.push(PatSeg::Lit(s.to_ascii_lowercase()));
                }
            }
            let subject = match spec.subject.as_deref() {
                None => None,
                Some(s) if s.starts_with(':') => {
                    let idx = segs
                        .iter()
                        .filter(|seg| matches!(seg, PatSeg::Param(_)))
                        .position(|seg| matches!(seg, PatSeg::Param(n) if n == &s[1..]))
                        .ok_or_else(|| {
                            format!(
                                "route `{}`: subject `{s}` is not a parameter of the path",
                                spec.route
                            )
                        })?;
                    Some(SubjectFrom::Param(idx))
                }
                Some(s) => Some(SubjectFrom::Fixed(Arc::from(s))),
            };
            let action = spec.action.trim();
            if action.is_empty() && subject.is_some() {
                return Err(format!("route `{}`: a subject needs an action", spec.route));
            }
            let entry = PatternEntry {
                source: spec.route.trim().to_owned(),
                methods,
                segs,
                action: (!action.is_empty()).then(|| Arc::from(action)),
                subject,
            };
            if let Some(other) = entries.iter().find(|e: &&PatternEntry| {
                e.methods.intersects(&entry.methods) && e.same_shape(&entry)
            }) {
                return Err(format!(
                    "routes `{}` and `{}` match the same requests (ambiguous action table)",
                    other.source, entry.source
                ));
            }
            entries.push(entry);
        }
        // Most specific first; the sort is stable so equal ranks keep
        // config order (they cannot both match: same_shape is rejected).
        entries.sort_by_key(|e| std::cmp::Reverse(e.rank()));
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The action of the most specific pattern matching the request.
    pub fn lookup<'a>(&'a self, method: &Method, path: &'a str) -> Option<Matched<'a>> {
        let mut segs: [&str; MAX_SEGMENTS] = [""; MAX_SEGMENTS];
        let mut n = 0;
        for s in segments(path) {
            if n == segs.len() {
                return None; // deeper than any pattern we accept
            }
            segs[n] = s;
            n += 1;
        }
        self.lookup_segments(method, &segs[..n])
    }

    /// [`PatternTable::lookup`] on a path already split.
    fn lookup_segments<'a>(&'a self, method: &Method, segs: &[&'a str]) -> Option<Matched<'a>> {
        self.entries
            .iter()
            .find(|e| e.methods.contains(method) && e.matches(segs))
            .map(|e| e.answer(segs))
    }

    /// Does some row, for any method, match this path?
    pub fn maps_path(&self, path: &str) -> bool {
        let segs: Vec<&str> = segments(path).collect();
        self.entries.iter().any(|e| e.matches(&segs))
    }
}

impl PatternEntry {
    fn matches(&self, segs: &[&str]) -> bool {
        self.segs.len() == segs.len()
            && self.segs.iter().zip(segs).all(|(p, s)| match p {
                PatSeg::Lit(l) => segment_is(s, l),
                PatSeg::Param(_) => true,
            })
    }

    fn answer<'a>(&'a self, segs: &[&'a str]) -> Matched<'a> {
        let subject = match &self.subject {
            None => None,
            Some(SubjectFrom::Fixed(s)) => Some(Cow::Borrowed(&**s)),
            Some(SubjectFrom::Param(idx)) => {
                let seg = self
                    .segs
                    .iter()
                    .zip(segs)
                    .filter(|(p, _)| matches!(p, PatSeg::Param(_)))
                    .nth(*idx)
                    .map(|(_, s)| *s)
                    .unwrap_or("");
                Some(decode_all(seg))
            }
        };
        Matched {
            action: self.action.as_deref(),
            subject,
        }
    }
}

/// A content type as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentTypeSpec {
    pub uid: String,
    pub plural: Option<String>,
    pub singular: Option<String>,
    pub single: bool,
}

#[derive(Debug, Clone)]
struct ContentType {
    uid: Arc<str>,
    plural: Option<String>,
    singular: String,
    single: bool,
    find: Arc<str>,
    find_one: Arc<str>,
    create: Arc<str>,
    update: Arc<str>,
    delete: Arc<str>,
}

/// What a route requires beyond its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction<'a> {
    /// No specific action is known for this route.
    None,
    /// A content-API action such as `api::article.article.find`.
    ContentApi(&'a str),
    /// An admin action, with a subject when the route names one.
    Admin {
        action: &'a str,
        subject: Option<Cow<'a, str>>,
    },
    /// The GraphQL endpoint: the operation decides.
    GraphQl,
    /// A method outside the standard seven on a path the action tables map,
    /// with no row naming it: no token holds it.
    Refused,
}

impl RouteAction<'_> {
    pub fn name(&self) -> Option<&str> {
        match self {
            RouteAction::ContentApi(a) => Some(a),
            RouteAction::Admin { action, .. } => Some(action),
            RouteAction::None | RouteAction::GraphQl | RouteAction::Refused => None,
        }
    }
}

/// The classified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    pub class: RouteClass,
    /// Anonymous requests are refused (`auth = "required"`).
    pub auth_required: bool,
    pub action: RouteAction<'a>,
}

/// A `[[routes.rule]]`.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub prefix: String,
    pub methods: Option<String>,
    pub auth_required: bool,
}

#[derive(Debug, Clone)]
struct Prefix {
    segs: Vec<String>,
    class: RouteClass,
}

#[derive(Debug, Clone)]
struct Rule {
    segs: Vec<String>,
    methods: MethodSet,
    auth_required: bool,
}

/// Everything needed to classify a request, compiled once from config.
#[derive(Debug, Clone)]
pub struct RouteTable {
    prefixes: Vec<Prefix>,
    rules: Vec<Rule>,
    graphql: Option<Vec<String>>,
    content_types: Vec<ContentType>,
    content_api_actions: PatternTable,
    admin_actions: PatternTable,
    known_content_actions: std::collections::HashSet<Arc<str>>,
}

/// Inputs of [`RouteTable::build`].
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    pub admin_prefixes: Vec<String>,
    pub content_api_prefixes: Vec<String>,
    pub graphql_path: Option<String>,
    pub rules: Vec<RuleSpec>,
    pub content_types: Vec<ContentTypeSpec>,
    pub content_api_actions: Vec<PatternSpec>,
    pub admin_actions: Vec<PatternSpec>,
}

fn prefix_segments(p: &str) -> Result<Vec<String>, String> {
    if !p.starts_with('/') {
        return Err(format!("prefix `{p}` must start with `/`"));
    }
    let segs: Vec<String> = segments(p).map(str::to_ascii_lowercase).collect();
    if segs.is_empty() {
        return Err(format!("prefix `{p}` must name at least one segment"));
    }
    Ok(segs)
}

fn has_prefix(path_segs: &[&str], prefix: &[String]) -> bool {
    path_segs.len() >= prefix.len() && path_segs.iter().zip(prefix).all(|(s, p)| segment_is(s, p))
}

impl RouteTable {
    pub fn build(spec: &RouteSpec) -> Result<Self, String> {
        let mut prefixes = Vec::new();
        for (list, class) in [
            (&spec.admin_prefixes, RouteClass::Admin),
            (&spec.content_api_prefixes, RouteClass::ContentApi),
        ] {
            for p in list {
                let segs = prefix_segments(p)?;
                if let Some(other) = prefixes.iter().find(|o: &&Prefix| o.segs == segs) {
                    return Err(format!(
                        "prefix `{p}` is listed twice (as {} and {})",
                        other.class.as_str(),
                        class.as_str()
                    ));
                }
                prefixes.push(Prefix { segs, class });
            }
        }
        // Longest prefix first, so `/api/admin-thing` can be carved out of `/api`.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.segs.len()));

        let mut rules = Vec::new();
        for r in &spec.rules {
            let methods = match &r.methods {
                Some(m) => MethodSet::parse(m).map_err(|e| format!("rule `{}`: {e}", r.prefix))?,
                None => MethodSet::all(),
            };
            rules.push(Rule {
                segs: prefix_segments(&r.prefix)?,
                methods,
                auth_required: r.auth_required,
            });
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.segs.len()));

        let graphql = match &spec.graphql_path {
            Some(p) => {
                let segs = prefix_segments(p)?;
                Some(segs)
            }
            None => None,
        };

        let mut content_types = Vec::new();
        let mut known = std::collections::HashSet::new();
        for ct in &spec.content_types {
            let model = ct
                .uid
                .rsplit_once('.')
                .map(|(_, m)| m)
                .filter(|m| !m.is_empty() && ct.uid.contains("::"))
                .ok_or_else(|| {
                    format!(
                        "content type uid `{}` is not of the form `api::name.name`",
                        ct.uid
                    )
                })?;
            let singular = ct
                .singular
                .clone()
                .unwrap_or_else(|| model.to_owned())
                .to_ascii_lowercase();
            if !ct.single && ct.plural.is_none() {
                return Err(format!(
                    "content type `{}`: a collection type needs `plural`",
                    ct.uid
                ));
            }
            let mk = |a: &str| -> Arc<str> { Arc::from(format!("{}.{a}", ct.uid)) };
            let c = ContentType {
                uid: Arc::from(ct.uid.as_str()),
                plural: ct.plural.as_ref().map(|p| p.to_ascii_lowercase()),
                singular,
                single: ct.single,
                find: mk("find"),
                find_one: mk("findOne"),
                create: mk("create"),
                update: mk("update"),
                delete: mk("delete"),
            };
            if c.single {
                known.extend([c.find.clone(), c.update.clone(), c.delete.clone()]);
            } else {
                known.extend([
                    c.find.clone(),
                    c.find_one.clone(),
                    c.create.clone(),
                    c.update.clone(),
                    c.delete.clone(),
                ]);
            }
            content_types.push(c);
        }
        let content_api_actions = PatternTable::build(&spec.content_api_actions)?;
        known.extend(
            content_api_actions
                .entries
                .iter()
                .filter_map(|e| e.action.clone()),
        );
        let admin_actions = PatternTable::build(&spec.admin_actions)?;
        Ok(Self {
            prefixes,
            rules,
            graphql,
            content_types,
            content_api_actions,
            admin_actions,
            known_content_actions: known,
        })
    }

    /// Is `action` a content-API action some route maps to?
    /// The uids of the content types the table routes (the config's, and
    /// in the strapi5 layout those Strapi stores).
    pub fn content_type_uids(&self) -> impl Iterator<Item = &str> {
        self.content_types.iter().map(|c| &*c.uid)
    }

    pub fn is_known_content_action(&self, action: &str) -> bool {
        self.known_content_actions.contains(action)
    }

    /// Every content-API action some route maps to, sorted.
    pub fn content_actions(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.known_content_actions.iter().map(|a| &**a).collect();
        v.sort_unstable();
        v
    }

    /// Every admin action the action table names, sorted and deduplicated.
    pub fn admin_actions(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .admin_actions
            .entries
            .iter()
            .filter_map(|e| e.action.as_deref())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every admin action the action table names (each alternative of an
    /// `a|b` row on its own), with how a request supplies its subject:
    /// sorted and deduplicated. The management page offers these.
    pub fn admin_action_subjects(&self) -> Vec<(&str, ActionSubject<'_>)> {
        let mut v: Vec<(&str, ActionSubject<'_>)> = self
            .admin_actions
            .entries
            .iter()
            .filter_map(|e| {
                let subject = match &e.subject {
                    None => ActionSubject::None,
                    Some(SubjectFrom::Param(_)) => ActionSubject::FromPath,
                    Some(SubjectFrom::Fixed(s)) => ActionSubject::Fixed(s),
                };
                Some(e.action.as_deref()?.split('|').map(move |a| (a, subject)))
            })
            .flatten()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Judge a request: classify `normal`, authgate's reading of the raw
    /// path `raw` (what [`normalise`] made of it), and prove it is the only
    /// reading that matters.
    ///
    /// **The property.** The route class, the admin subject, the action and
    /// whether a token is required are the same under every plausible
    /// reading of the request by what is behind authgate: percent-decoding
    /// repeated until nothing changes, `%uXXXX`, `\` read as `/`, a decoded
    /// `?` or `#` ending the path, `;` parameters dropped, ASCII case folded,
    /// trailing dots and blanks trimmed, dot segments resolved, repeated
    /// slashes merged (see [`readings`]). A request for which any reading
    /// disagrees is refused, never forwarded. Methods are read one way too
    /// (a `_method` query parameter on a protected route, which Express's
    /// `method-override` can take for the method, is refused):
    /// a method with lower-case letters (a lenient reader folds it into a
    /// standard one) and `CONNECT` (forwarded, it would lose the path) are
    /// refused; any other method outside the standard seven is judged as
    /// the most demanding (see [`MethodSet::is_standard`]).
    pub fn judge<'a>(
        &'a self,
        method: &Method,
        raw: &str,
        query: Option<&str>,
        normal: &'a str,
    ) -> Result<Route<'a>, PathError> {
        if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(PathError::MethodCase);
        }
        if method == Method::CONNECT {
            return Err(PathError::Connect);
        }
        let route = self.classify(method, normal);
        if route.class != RouteClass::Unprotected && query.is_some_and(overrides_method) {
            return Err(PathError::MethodOverride);
        }
        if readings::is_plain(raw) {
            return Ok(route);
        }
        for reading in readings::readings(raw)? {
            if self.classify(method, &reading) != route {
                return Err(PathError::AmbiguousReading);
            }
        }
        Ok(route)
    }

    /// Classify a normalised path.
    pub fn classify<'a>(&'a self, method: &Method, path: &'a str) -> Route<'a> {
        // One split serves the prefixes, the rules and the action tables;
        // one segment more than the tables take says the path is deeper.
        let mut buf: [&str; MAX_SEGMENTS + 1] = [""; MAX_SEGMENTS + 1];
        let mut n = 0;
        for s in segments(path).take(buf.len()) {
            buf[n] = s;
            n += 1;
        }
        let deep = n > MAX_SEGMENTS;
        let segs = &buf[..n.min(MAX_SEGMENTS)];
        let lookup = |table: &'a PatternTable| match deep {
            true => None,
            false => table.lookup_segments(method, segs),
        };
        let class = self
            .prefixes
            .iter()
            .find(|p| has_prefix(segs, &p.segs))
            .map(|p| (p.class, p.segs.len()));
        let standard = MethodSet::is_standard(method);
        // A method outside the standard seven is judged as the most
        // demanding: any rule on the path that requires a token applies.
        let auth_required = if standard {
            self.rules
                .iter()
                .find(|r| r.methods.contains(method) && has_prefix(segs, &r.segs))
                .is_some_and(|r| r.auth_required)
        } else {
            self.rules
                .iter()
                .any(|r| r.auth_required && has_prefix(segs, &r.segs))
        };
        let (class, action) = match class {
            None => (RouteClass::Unprotected, RouteAction::None),
            Some((RouteClass::Admin, _)) => {
                let action = match lookup(&self.admin_actions) {
                    Some(Matched {
                        action: Some(action),
                        subject,
                    }) => RouteAction::Admin { action, subject },
                    Some(_) => RouteAction::None,
                    None if !standard && self.admin_actions.maps_path(path) => RouteAction::Refused,
                    None => RouteAction::None,
                };
                (RouteClass::Admin, action)
            }
            Some((RouteClass::ContentApi, plen)) => {
                let action = if self.graphql.as_ref().is_some_and(|g| has_prefix(segs, g)) {
                    RouteAction::GraphQl
                } else if let Some(m) = lookup(&self.content_api_actions) {
                    m.action.map_or(RouteAction::None, RouteAction::ContentApi)
                } else if !standard && self.content_api_actions.maps_path(path) {
                    RouteAction::Refused
                } else {
                    self.crud_action(method, &segs[plen.min(segs.len())..])
                };
                (RouteClass::ContentApi, action)
            }
            Some((RouteClass::Unprotected, _)) => (RouteClass::Unprotected, RouteAction::None),
        };
        Route {
            class,
            auth_required,
            action,
        }
    }

    /// Map `/<plural>[/<id>]` or `/<singular>` (after the prefix) to a
    /// content type's CRUD action.
    fn crud_action(&self, method: &Method, rest: &[&str]) -> RouteAction<'_> {
        let (first, tail) = match rest {
            [first, tail @ ..] if tail.len() <= 1 => (*first, tail.len()),
            _ => return RouteAction::None,
        };
        for ct in &self.content_types {
            if ct.single {
                if tail == 0 && segment_is(first, &ct.singular) {
                    let a = match *method {
                        Method::GET | Method::HEAD => &ct.find,
                        Method::PUT | Method::PATCH => &ct.update,
                        Method::DELETE => &ct.delete,
                        _ => return unmapped(method),
                    };
                    return RouteAction::ContentApi(a);
                }
                continue;
            }
            let Some(plural) = &ct.plural else { continue };
            if !segment_is(first, plural) {
                continue;
            }
            let a = match (tail, method) {
                (0, &Method::GET | &Method::HEAD) => &ct.find,
                (0, &Method::POST) => &ct.create,
                (1, &Method::GET | &Method::HEAD) => &ct.find_one,
                (1, &Method::PUT | &Method::PATCH) => &ct.update,
                (1, &Method::DELETE) => &ct.delete,
                _ => return unmapped(method),
            };
            return RouteAction::ContentApi(a);
        }
        RouteAction::None
    }
}

/// Does the query carry a `_method` parameter (any case, its name
/// percent-decoded as a query parser does)? Express's `method-override`
/// with a query getter takes it for the request's method.
fn overrides_method(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or("");
        match name.contains('%') {
            false => name.eq_ignore_ascii_case("_method"),
            true => readings::decode_round(name.as_bytes(), false).eq_ignore_ascii_case(b"_method"),
        }
    })
}

/// What a content type's path answers for a method it has no action for:
/// nothing specific for a standard method, refusal for any other.
fn unmapped(method: &Method) -> RouteAction<'static> {
    if MethodSet::is_standard(method) {
        RouteAction::None
    } else {
        RouteAction::Refused
    }
}

/// Small constructors for the table tests here and in `authz`.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{ContentTypeSpec, PatternSpec, RouteSpec, RuleSpec};

    /// An action-table row.
    pub fn pattern(route: &str, action: &str, subject: Option<&str>) -> PatternSpec {
        PatternSpec {
            route: route.into(),
            action: action.into(),
            subject: subject.map(Into::into),
        }
    }

    /// A content type: a collection when `plural` is given, else a single type.
    pub fn content_type(uid: &str, plural: Option<&str>) -> ContentTypeSpec {
        ContentTypeSpec {
            uid: uid.into(),
            plural: plural.map(Into::into),
            singular: None,
            single: plural.is_none(),
        }
    }

    /// Strapi's prefixes, GraphQL, and `/api/private` requiring a token;
    /// no content types or actions.
    pub fn spec() -> RouteSpec {
        RouteSpec {
            admin_prefixes: vec!["/admin".into(), "/content-manager".into(), "/upload".into()],
            content_api_prefixes: vec!["/api".into(), "/graphql".into()],
            graphql_path: Some("/graphql".into()),
            rules: vec![RuleSpec {
                prefix: "/api/private".into(),
                methods: None,
                auth_required: true,
            }],
            ..RouteSpec::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_table() {
        let ok: &[(&str, &str)] = &[
            ("/", "/"),
            ("/api/articles", "/api/articles"),
            ("/api/articles/", "/api/articles/"),
            ("//admin", "/admin"),
            ("/admin//users", "/admin/users"),
            ("/admin/../api", "/api"),
            ("/admin/./users", "/admin/users"),
            ("/admin/.", "/admin/"),
            ("/admin/..", "/"),
            ("/%61dmin", "/admin"),
            ("/%41DMIN", "/ADMIN"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E/x", "/api/x"),
            ("/a%7eb", "/a~b"),
            ("/a%20b", "/a%20b"),
            ("/a%3bb", "/a%3Bb"),
            ("/api;x=1/articles", "/api;x=1/articles"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/admin.", "/admin."),
            ("/%252e%252e/admin", "/%252e%252e/admin"),
        ];
        for (input, want) in ok {
            assert_eq!(normalise(input).as_deref(), Ok(*want), "input {input}");
        }
        let bad: &[(&str, PathError)] = &[
            ("api", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("/admin%2f..", PathError::EncodedSeparator),
            ("/admin%2F..", PathError::EncodedSeparator),
            ("/admin%5c..", PathError::EncodedSeparator),
            ("/admin\\..", PathError::Backslash),
            ("/a%00b", PathError::ControlChar),
            ("/a%0ab", PathError::ControlChar),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e", PathError::AboveRoot),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/%C0%AE%C0%AE/admin", PathError::InvalidUtf8),
            ("/%ff", PathError::InvalidUtf8),
        ];
        for (input, want) in bad {
            assert_eq!(normalise(input), Err(*want), "input {input}");
        }
    }

    #[test]
    fn normalise_is_idempotent_on_samples() {
        for p in ["/a//b/../c/./%64", "/x/%2e/y/", "/%7E%41", "/a;b/..;/c"] {
            let once = normalise(p).unwrap().into_owned();
            assert_eq!(normalise(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn segment_matching() {
        assert!(segment_is("admin", "admin"));
        assert!(segment_is("ADMIN", "admin"));
        assert!(segment_is("admin;x=1", "admin"));
        assert!(segment_is("admin.", "admin"));
        assert!(segment_is("admin%20", "admin"));
        assert!(segment_is("admin%3Bx", "admin"));
        assert!(!segment_is("administrator", "admin"));
        assert!(!segment_is("adm", "admin"));
        assert!(!segment_is("x-admin", "admin"));
    }

    fn table() -> RouteTable {
        use super::fixtures::{content_type, pattern as p, spec};
        let read = "plugin::content-manager.explorer.read";
        RouteTable::build(&RouteSpec {
            content_types: vec![
                content_type("api::article.article", Some("articles")),
                content_type("api::homepage.homepage", None),
            ],
            content_api_actions: vec![p(
                "GET /api/upload/files",
                "plugin::upload.content-api.find",
                None,
            )],
            admin_actions: vec![
                p(
                    "GET /content-manager/collection-types/:model",
                    read,
                    Some(":model"),
                ),
                p(
                    "GET /content-manager/collection-types/:model/:id",
                    read,
                    Some(":model"),
                ),
                p(
                    "POST /content-manager/collection-types/:model",
                    "plugin::content-manager.explorer.create",
                    Some(":model"),
                ),
                p(
                    "POST /content-manager/collection-types/:model/actions/publish",
                    "plugin::content-manager.explorer.publish",
                    Some(":model"),
                ),
                p(
                    "POST /content-manager/collection-types/:model/:id",
                    "x.y",
                    Some(":model"),
                ),
                p("GET /admin/users", "admin::users.read", None),
                p("GET /admin/users/:id", "admin::users.read", None),
            ],
            ..spec()
        })
        .unwrap()
    }

    #[test]
    fn classify_table() {
        use RouteClass::*;
        let t = table();
        let cases: &[(&str, &str, RouteClass, Option<&str>)] = &[
            (
                "GET",
                "/api/articles",
                ContentApi,
                Some("api::article.article.find"),
            ),
            (
                "HEAD",
                "/api/articles",
                ContentApi,
                Some("api::article.article.find"),
            ),
            (
                "GET",
                "/api/articles/7",
                ContentApi,
                Some("api::article.article.findOne"),
            ),
            (
                "POST",
                "/api/articles",
                ContentApi,
                Some("api::article.article.create"),
            ),
            (
                "PUT",
                "/api/articles/7",
                ContentApi,
                Some("api::article.article.update"),
            ),
            (
                "PATCH",
                "/api/articles/7",
                ContentApi,
                Some("api::article.article.update"),
            ),
            (
                "DELETE",
                "/api/articles/7",
                ContentApi,
                Some("api::article.article.delete"),
            ),
            ("POST", "/api/articles/7", ContentApi, None),
            ("DELETE", "/api/articles", ContentApi, None),
            ("GET", "/api/articles/7/extra", ContentApi, None),
            (
                "GET",
                "/API/Articles",
                ContentApi,
                Some("api::article.article.find"),
            ),
            (
                "GET",
                "/api;x=1/articles",
                ContentApi,
                Some("api::article.article.find"),
            ),
            (
                "GET",
                "/api/homepage",
                ContentApi,
                Some("api::homepage.homepage.find"),
            ),
            (
                "PUT",
                "/api/homepage",
                ContentApi,
                Some("api::homepage.homepage.update"),
            ),
            ("POST", "/api/homepage", ContentApi, None),
            (
                "GET",
                "/api/upload/files",
                ContentApi,
                Some("plugin::upload.content-api.find"),
            ),
            ("GET", "/api/unknown", ContentApi, None),
            ("GET", "/api", ContentApi, None),
            ("POST", "/graphql", ContentApi, None),
            ("GET", "/admin", Admin, None),
            ("GET", "/ADMIN/users", Admin, Some("admin::users.read")),
            ("GET", "/admin/users/3", Admin, Some("admin::users.read")),
            ("POST", "/admin/users", Admin, None),
            ("GET", "/administrator", Unprotected, None),
            ("GET", "/apis", Unprotected, None),
            ("GET", "/uploads/x.png", Unprotected, None),
            ("GET", "/upload/files", Admin, None),
            ("GET", "/", Unprotected, None),
            ("GET", "/_health", Unprotected, None),
            (
                "GET",
                "/content-manager/collection-types/api::article.article",
                Admin,
                Some("plugin::content-manager.explorer.read"),
            ),
            (
                "POST",
                "/content-manager/collection-types/api::article.article",
                Admin,
                Some("plugin::content-manager.explorer.create"),
            ),
            (
                "POST",
                "/content-manager/collection-types/api::article.article/actions/publish",
                Admin,
                Some("plugin::content-manager.explorer.publish"),
            ),
            (
                "POST",
                "/content-manager/collection-types/api::article.article/9",
                Admin,
                Some("x.y"),
            ),
        ];
        for (m, p, class, action) in cases {
            let r = t.classify(&m.parse().unwrap(), p);
            assert_eq!(r.class, *class, "{m} {p}");
            assert_eq!(r.action.name(), *action, "{m} {p}");
        }
        assert_eq!(
            t.classify(&Method::POST, "/graphql").action,
            RouteAction::GraphQl
        );
        assert!(t.classify(&Method::GET, "/api/private/x").auth_required);
        assert!(!t.classify(&Method::GET, "/api/articles").auth_required);
    }

    #[test]
    fn subject_is_decoded_from_path() {
        let t = table();
        let r = t.classify(
            &Method::GET,
            "/content-manager/collection-types/api%3A%3Aarticle.article/4",
        );
        assert_eq!(
            r.action,
            RouteAction::Admin {
                action: "plugin::content-manager.explorer.read",
                subject: Some(Cow::Owned("api::article.article".into()))
            }
        );
    }

    #[test]
    fn ambiguous_patterns_are_rejected() {
        let p = |route: &str| PatternSpec {
            route: route.into(),
            action: "a".into(),
            subject: None,
        };
        let err = PatternTable::build(&[p("GET /a/:x"), p("GET|POST /A/:y")]).unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(PatternTable::build(&[p("GET /a/:x"), p("POST /a/:y")]).is_ok());
        assert!(PatternTable::build(&[p("GET /a/:x"), p("GET /a/b")]).is_ok());
        assert!(PatternTable::build(&[p("FETCH /a")]).is_err());
        assert!(PatternTable::build(&[p("GET a")]).is_err());
        let bad_subject = PatternSpec {
            route: "GET /a/:x".into(),
            action: "a".into(),
            subject: Some(":y".into()),
        };
        assert!(PatternTable::build(&[bad_subject]).is_err());
    }

    #[test]
    fn literal_beats_parameter() {
        let p = |route: &str, action: &str| PatternSpec {
            route: route.into(),
            action: action.into(),
            subject: None,
        };
        let t = PatternTable::build(&[
            p("GET /a/:x/c", "param-first"),
            p("GET /a/b/:y", "lit-first"),
            p("GET /a/b/c", "exact"),
        ])
        .unwrap();
        assert_eq!(
            t.lookup(&Method::GET, "/a/b/c").unwrap().action,
            Some("exact")
        );
        assert_eq!(
            t.lookup(&Method::GET, "/a/b/d").unwrap().action,
            Some("lit-first")
        );
        assert_eq!(
            t.lookup(&Method::GET, "/a/z/c").unwrap().action,
            Some("param-first")
        );
        assert_eq!(
            t.lookup(&Method::HEAD, "/a/z/c").unwrap().action,
            Some("param-first")
        );
        assert!(t.lookup(&Method::POST, "/a/z/c").is_none());
        let t = PatternTable::build(&[p("GET /u/:id", "read"), p("GET /u/me", "")]).unwrap();
        assert_eq!(t.lookup(&Method::GET, "/u/me").unwrap().action, None);
        assert_eq!(t.lookup(&Method::GET, "/u/3").unwrap().action, Some("read"));
    }

    #[test]
    fn bad_prefixes_are_rejected() {
        let mut spec = RouteSpec {
            admin_prefixes: vec!["admin".into()],
            ..Default::default()
        };
        assert!(RouteTable::build(&spec).is_err());
        spec.admin_prefixes = vec!["/".into()];
        assert!(RouteTable::build(&spec).is_err());
        spec.admin_prefixes = vec!["/api".into()];
        spec.content_api_prefixes = vec!["/API".into()];
        assert!(RouteTable::build(&spec).is_err());
    }

    /// `judge` on the raw target, as the proxy calls it.
    fn judged(t: &RouteTable, method: &str, raw: &str) -> Result<RouteClass, PathError> {
        let m = Method::from_bytes(method.as_bytes()).unwrap();
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        let n = normalise(path)?;
        t.judge(&m, path, query, &n).map(|r| r.class)
    }

    #[test]
    fn requests_people_send_every_day_pass() {
        use RouteClass::*;
        let t = table();
        let rows: &[(&str, &str, RouteClass)] = &[
            ("GET", "/api/articles", ContentApi),
            ("GET", "/api/articles/", ContentApi),
            ("GET", "/api/articles/abc123def", ContentApi),
            ("PUT", "/api/articles/7", ContentApi),
            ("POST", "/graphql", ContentApi),
            ("GET", "/api/articles/hello%20world", ContentApi),
            ("GET", "/api/search/caf%C3%A9", ContentApi),
            ("GET", "/uploads/my%25file.png", Unprotected),
            ("GET", "/uploads/100%25%20off.JPG", Unprotected),
            ("GET", "/uploads/IMG_2041.JPG", Unprotected),
            ("GET", "/uploads/a%3Bb.png", Unprotected),
            ("GET", "/admin", Admin),
            ("GET", "/admin/", Admin),
            ("GET", "/ADMIN/users", Admin),
            ("GET", "/admin/users/me", Admin),
            ("GET", "/admin/auth/login", Admin),
            (
                "GET",
                "/content-manager/collection-types/api::article.article",
                Admin,
            ),
            (
                "GET",
                "/content-manager/collection-types/api%3A%3Aarticle.article/1",
                Admin,
            ),
            ("OPTIONS", "/api/articles", ContentApi),
            ("GET", "/favicon.ico", Unprotected),
            ("GET", "/", Unprotected),
            (
                "GET",
                "/api/articles?filters[title][$eq]=a&sort=title",
                ContentApi,
            ),
            ("POST", "/uploads/x?_method=DELETE", Unprotected),
        ];
        for (m, raw, class) in rows {
            assert_eq!(judged(&t, m, raw), Ok(*class), "{m} {raw}");
        }
    }

    #[test]
    fn requests_read_differently_behind_us_are_refused() {
        let t = table();
        let refused: &[(&str, &str, PathError)] = &[
            ("GET", "/%2561dmin/users", PathError::AmbiguousReading),
            ("GET", "/admin%252fusers", PathError::AmbiguousReading),
            ("GET", "/%2575pload/files", PathError::AmbiguousReading),
            ("GET", "/%2561pi/articles", PathError::AmbiguousReading),
            ("GET", "/%252561dmin/users", PathError::AmbiguousReading),
            ("GET", "/%25u0061dmin/users", PathError::AmbiguousReading),
            ("GET", "/api/..;/admin/users", PathError::AmbiguousReading),
            ("GET", "/api/%252e%252e/admin", PathError::AmbiguousReading),
            (
                "GET",
                "/api/x%255c..%255c..%255cadmin",
                PathError::AmbiguousReading,
            ),
            ("GET", "/admin%253f/x", PathError::AmbiguousReading),
            ("GET", "/admin%3F/x", PathError::AmbiguousReading),
            ("GET", "/api/..%2520/admin", PathError::AmbiguousReading),
            (
                "GET",
                "/content-manager/collection-types/API::ARTICLE.ARTICLE",
                PathError::AmbiguousReading,
            ),
            (
                "GET",
                "/content-manager/collection-types/api::article.article;x",
                PathError::AmbiguousReading,
            ),
            ("GET", "/api/x/%2500", PathError::ControlChar),
            // Found by the fuzz target: drop `;` parameters, then decode
            // again, then `\` as `/`, then trim: /admin/articles...
            (
                "TRACE",
                "/;ADMIN41....3fADMIN23apiADMIN2F%252f5c/admin..%255carticlesarticlesarticles",
                PathError::AmbiguousReading,
            ),
            ("get", "/admin/users", PathError::MethodCase),
            ("Get", "/api/articles", PathError::MethodCase),
            ("CONNECT", "/admin/users", PathError::Connect),
            (
                "POST",
                "/admin/users/1?_method=DELETE",
                PathError::MethodOverride,
            ),
            (
                "POST",
                "/api/articles?a=1&_METHOD=DELETE",
                PathError::MethodOverride,
            ),
            (
                "POST",
                "/api/articles?%5Fmethod=DELETE",
                PathError::MethodOverride,
            ),
        ];
        for (m, raw, want) in refused {
            assert_eq!(judged(&t, m, raw), Err(*want), "{m} {raw}");
        }
    }

    #[test]
    fn unknown_methods_are_judged_as_the_most_demanding() {
        let t = table();
        let m = |s: &str| Method::from_bytes(s.as_bytes()).unwrap();
        for method in ["PROPFIND", "SEARCH", "TRACE", "PURGE"] {
            let method = m(method);
            // Mapped admin and content-API paths: no token holds the method.
            for path in [
                "/content-manager/collection-types/api::article.article",
                "/api/articles",
                "/api/articles/7",
                "/api/upload/files",
            ] {
                assert_eq!(
                    t.classify(&method, path).action,
                    RouteAction::Refused,
                    "{path}"
                );
            }
            // A rule requiring a token applies to it whatever its methods.
            assert!(t.classify(&method, "/api/private/x").auth_required);
        }
        // A row may name a registered extension method.
        let table = PatternTable::build(&[PatternSpec {
            route: "PROPFIND /a/:id".into(),
            action: "read".into(),
            subject: None,
        }])
        .unwrap();
        assert_eq!(
            table.lookup(&m("PROPFIND"), "/a/1").unwrap().action,
            Some("read")
        );
        assert!(table.lookup(&m("SEARCH"), "/a/1").is_none());
        assert!(table.maps_path("/a/1"));
    }
}
