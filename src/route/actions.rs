//! Action tables: which action (and on which subject) a `METHOD /path`
//! request performs.
//!
//! Two of the route table's three sources of actions are written this way
//! in config: the content-API patterns for plugin routes, and the admin
//! action table (`GET /content-manager/collection-types/:model` ->
//! `explorer.read` on `:model`). Patterns match segment-wise; literal
//! segments beat parameters from left to right; two patterns that match
//! exactly the same requests are a config error.

use std::borrow::Cow;
use std::sync::Arc;

use http::Method;

use super::methods::MethodSet;
use super::normalise::{decode_all, segment_is, segments};

/// The deepest path, in segments, the action tables match.
pub(super) const MAX_SEGMENTS: usize = 16;

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
    pub fn lookup<'t>(&'t self, method: &Method, path: &str) -> Option<Matched<'t>> {
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
    pub(super) fn lookup_segments<'t>(
        &'t self,
        method: &Method,
        segs: &[&str],
    ) -> Option<Matched<'t>> {
        self.entry_for(method, segs).map(|e| e.answer(segs))
    }

    /// The most specific row matching the request.
    fn entry_for(&self, method: &Method, segs: &[&str]) -> Option<&PatternEntry> {
        self.entries
            .iter()
            .find(|e| e.methods.contains(method) && e.matches(segs))
    }

    /// The row (as written) that [`PatternTable::lookup`] answers from.
    pub(super) fn row_for(&self, method: &Method, segs: &[&str]) -> Option<&str> {
        if segs.len() > MAX_SEGMENTS {
            return None;
        }
        self.entry_for(method, segs).map(|e| e.source.as_str())
    }

    /// Does some row, for any method, match this path?
    pub fn maps_path(&self, path: &str) -> bool {
        let segs: Vec<&str> = segments(path).collect();
        self.entries.iter().any(|e| e.matches(&segs))
    }

    /// The action of every row that names one, in table order.
    pub(super) fn actions(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().filter_map(|e| e.action.as_ref())
    }

    /// The action of every row that names one, with how a request supplies
    /// its subject.
    pub(super) fn action_subjects(&self) -> impl Iterator<Item = (&str, ActionSubject<'_>)> {
        self.entries.iter().filter_map(|e| {
            let subject = match &e.subject {
                None => ActionSubject::None,
                Some(SubjectFrom::Param(_)) => ActionSubject::FromPath,
                Some(SubjectFrom::Fixed(s)) => ActionSubject::Fixed(s),
            };
            Some((e.action.as_deref()?, subject))
        })
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

    /// The row's action and subject. A subject taken from the path is
    /// copied out of it, so the route borrows the table only (a request
    /// keeps its route beside the path it was read from).
    fn answer<'t>(&'t self, segs: &[&str]) -> Matched<'t> {
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
                Some(Cow::Owned(decode_all(seg).into_owned()))
            }
        };
        Matched {
            action: self.action.as_deref(),
            subject,
        }
    }
}
