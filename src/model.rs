//! The facts about a token that a decision needs, as the store returns them
//! and the cache keeps them.
//!
//! These are facts, never decisions: the route is judged anew on every
//! request, so a record cached while serving one route is never mistaken for
//! permission on a stricter one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

pub use crate::cidr::Networks;

/// The two kinds of bearer token. Each is rejected on the other's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    ContentApi,
    Admin,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::ContentApi => "content-api",
            TokenKind::Admin => "admin",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "content-api" => Ok(TokenKind::ContentApi),
            "admin" => Ok(TokenKind::Admin),
            other => Err(format!(
                "unknown token kind `{other}` (expected content-api or admin)"
            )),
        }
    }
}

/// The type of a content-API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentApiType {
    /// Only actions ending in `find` or `findOne`.
    ReadOnly,
    /// Every content-API route.
    FullAccess,
    /// Exactly the listed actions.
    Custom,
}

impl ContentApiType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentApiType::ReadOnly => "read-only",
            ContentApiType::FullAccess => "full-access",
            ContentApiType::Custom => "custom",
        }
    }
}

impl fmt::Display for ContentApiType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ContentApiType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read-only" => Ok(ContentApiType::ReadOnly),
            "full-access" => Ok(ContentApiType::FullAccess),
            "custom" => Ok(ContentApiType::Custom),
            other => Err(format!(
                "unknown token type `{other}` (expected read-only, full-access or custom)"
            )),
        }
    }
}

/// An action, with the subject it applies to for admin permissions
/// (e.g. `plugin::content-manager.explorer.read` on `api::article.article`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    pub action: String,
    pub subject: Option<String>,
}

impl Permission {
    pub fn new(action: impl Into<String>, subject: Option<String>) -> Self {
        Self {
            action: action.into(),
            subject,
        }
    }

    /// Parse the CLI form `ACTION[@SUBJECT]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (action, subject) = match s.split_once('@') {
            Some((a, sub)) => (a, Some(sub)),
            None => (s, None),
        };
        if action.is_empty() || action.chars().any(char::is_whitespace) {
            return Err(format!(
                "invalid permission `{s}`: expected ACTION[@SUBJECT]"
            ));
        }
        if subject.is_some_and(|sub| sub.is_empty() || sub.chars().any(char::is_whitespace)) {
            return Err(format!("invalid permission `{s}`: empty or blank subject"));
        }
        Ok(Self::new(action, subject.map(str::to_owned)))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.subject {
            Some(s) => write!(f, "{}@{}", self.action, s),
            None => f.write_str(&self.action),
        }
    }
}

/// A set of permissions with the lookups the decision needs, indexed by
/// action so a check never allocates or scans. An empty set (most
/// content-API tokens) costs one pointer in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet {
    inner: Option<Box<Inner>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Inner {
    by_action: HashMap<String, Subjects>,
    len: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Subjects {
    without_subject: bool,
    subjects: HashSet<String>,
}

impl PermissionSet {
    fn get(&self, action: &str) -> Option<&Subjects> {
        self.inner.as_ref()?.by_action.get(action)
    }

    /// Does the set grant `action` (on `subject`, when the route names one)?
    ///
    /// Strapi's (CASL's) rule: a permission without a subject applies to
    /// every subject; a check without a subject is met only by a permission
    /// without one.
    pub fn grants(&self, action: &str, subject: Option<&str>) -> bool {
        match (self.get(action), subject) {
            (None, _) => false,
            (Some(s), None) => s.without_subject,
            (Some(s), Some(subject)) => s.without_subject || s.subjects.contains(subject),
        }
    }

    pub fn iter_actions(&self) -> impl Iterator<Item = &str> {
        self.inner
            .iter()
            .flat_map(|i| i.by_action.keys().map(String::as_str))
    }

    pub fn contains_action(&self, action: &str) -> bool {
        self.get(action).is_some()
    }

    /// Exact membership of one (action, subject) pair.
    pub fn contains(&self, p: &Permission) -> bool {
        match (self.get(&p.action), &p.subject) {
            (None, _) => false,
            (Some(s), None) => s.without_subject,
            (Some(s), Some(subject)) => s.subjects.contains(subject),
        }
    }

    pub fn insert(&mut self, p: Permission) {
        let inner = self.inner.get_or_insert_with(Default::default);
        let entry = inner.by_action.entry(p.action).or_default();
        let added = match p.subject {
            None => !std::mem::replace(&mut entry.without_subject, true),
            Some(s) => entry.subjects.insert(s),
        };
        inner.len += usize::from(added);
    }

    /// Every permission, sorted (for display and stable output).
    pub fn to_sorted_vec(&self) -> Vec<Permission> {
        let mut out: Vec<Permission> = Vec::with_capacity(self.len());
        for (action, s) in self.inner.iter().flat_map(|i| i.by_action.iter()) {
            if s.without_subject {
                out.push(Permission::new(action.clone(), None));
            }
            out.extend(
                s.subjects
                    .iter()
                    .map(|sub| Permission::new(action.clone(), Some(sub.clone()))),
            );
        }
        out.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = Self::default();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

/// The admin user who owns an admin token, as of the lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: i64,
    pub email: String,
    /// `is_active` is true.
    pub is_active: bool,
    pub blocked: bool,
    /// Holds the super-admin role: every permission.
    pub super_admin: bool,
    /// The union of the permissions of the owner's roles.
    pub permissions: PermissionSet,
    /// The owner's roles, so a role change can find the tokens to forget.
    pub role_ids: Vec<i64>,
}

impl Owner {
    pub fn holds(&self, action: &str, subject: Option<&str>) -> bool {
        self.super_admin || self.permissions.grants(action, subject)
    }
}

/// Who owns a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Content-API tokens have no owner.
    None,
    /// An admin token whose owner row is gone.
    Missing,
    /// Boxed: content-API records (no owner) stay small in the cache.
    Owner(Box<Owner>),
}

impl Ownership {
    pub fn owner(o: Owner) -> Self {
        Ownership::Owner(Box::new(o))
    }
}

/// A token's own request limit, overriding `rate_limit.per_token`; `Some(0)`
/// exempts the token. Four bytes instead of `Option<u32>`'s eight, so a
/// cached record stays in a smaller allocation size class (a million cached
/// tokens: 16 MB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateOverride(Option<NonMaxU32>);

/// A `u32` below `u32::MAX` (the database column is a non-negative `integer`,
/// so at most `i32::MAX`); `u32::MAX` is the niche that stands for `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NonMaxU32(std::num::NonZeroU32);

impl RateOverride {
    /// `None`: no override. `u32::MAX` cannot be stored (the column never
    /// holds it) and reads back as no override.
    pub fn new(limit: Option<u32>) -> Self {
        Self(
            limit
                .and_then(|l| std::num::NonZeroU32::new(!l))
                .map(NonMaxU32),
        )
    }

    pub fn get(self) -> Option<u32> {
        self.0.map(|n| !n.0.get())
    }
}

/// When something ends, or never, in 8 bytes where `Option<SystemTime>`
/// takes 16 (a cached token's record is counted in bytes: BENCHMARKS.md):
/// microseconds since the Unix epoch, `i64::MAX` for never. Postgres keeps
/// timestamps in microseconds, so nothing stored is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry(i64);

impl Expiry {
    pub const NEVER: Expiry = Expiry(i64::MAX);

    /// `t`, to the microsecond (before the epoch counts as the epoch).
    pub fn at(t: SystemTime) -> Self {
        let micros = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        Expiry(
            i64::try_from(micros)
                .unwrap_or(i64::MAX - 1)
                .min(i64::MAX - 1),
        )
    }

    /// The time, or `None` for never.
    pub fn get(self) -> Option<SystemTime> {
        (self != Self::NEVER).then(|| {
            SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(self.0.unsigned_abs())
        })
    }

    /// Has it passed at `now`?
    pub fn is_before(self, now: SystemTime) -> bool {
        self != Self::NEVER && self < Expiry::at(now)
    }
}

impl From<Option<SystemTime>> for Expiry {
    fn from(t: Option<SystemTime>) -> Self {
        t.map_or(Self::NEVER, Self::at)
    }
}

/// What ends at a record's `expires_at`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ending {
    /// The token's own expiry: after it, `Token expired`.
    #[default]
    Token,
    /// The end of a replaced key's overlap (`token regenerate
    /// --keep-old-for`), earlier than the token's expiry: after it the key
    /// is refused as if it had never been issued.
    OldKey,
}

/// One token, as stored (never the key, never the hash), as seen through
/// the key that was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub kind: TokenKind,
    pub name: Box<str>,
    /// Content-API tokens only.
    pub token_type: Option<ContentApiType>,
    /// When the presented key stops working: the token's expiry, or the
    /// earlier end of an old key's overlap (see `ends`).
    pub expires_at: Expiry,
    /// Which of the two `expires_at` is. A byte in the record's padding,
    /// where a second time would take 16 bytes a cached token.
    pub ends: Ending,
    /// Custom content-API actions, or an admin token's own permissions.
    pub permissions: PermissionSet,
    pub ownership: Ownership,
    /// Per-token request limit override (requests per rate-limit window).
    pub rate_limit: RateOverride,
    /// The networks the token may be used from; unpinned: anywhere.
    pub networks: Networks,
}

impl TokenRecord {
    /// A content-API token of type `ty` with no expiry, permissions, rate
    /// limit or networks (what tests and benchmarks start from).
    pub fn content_api(id: i64, name: &str, ty: ContentApiType) -> Self {
        TokenRecord {
            id,
            kind: TokenKind::ContentApi,
            name: name.into(),
            token_type: Some(ty),
            expires_at: Expiry::NEVER,
            ends: Ending::Token,
            permissions: PermissionSet::default(),
            ownership: Ownership::None,
            rate_limit: RateOverride::default(),
            networks: Networks::default(),
        }
    }

    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_before(now)
    }

    /// The record as seen through a replaced key that works until
    /// `key_until`: the earlier of that and the token's own expiry.
    pub fn through_old_key(mut self, key_until: SystemTime) -> Self {
        let key_until = Expiry::at(key_until);
        if key_until < self.expires_at {
            self.expires_at = key_until;
            self.ends = Ending::OldKey;
        }
        self
    }
}

impl AsRef<TokenRecord> for TokenRecord {
    fn as_ref(&self) -> &TokenRecord {
        self
    }
}

/// How many tokens of one kind the store holds, for the `authgate_tokens*`
/// gauges (`expiring_*`: active tokens whose expiry falls within that much
/// time from now; each window includes the shorter ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub active: u64,
    pub expired: u64,
    pub expiring_1d: u64,
    pub expiring_7d: u64,
    pub expiring_30d: u64,
}

/// True when a token that expires at `expires_at` is still active at `now`
/// and expires within `window` of it (`None`: it never expires).
pub fn expires_within(
    expires_at: Option<SystemTime>,
    now: SystemTime,
    window: std::time::Duration,
) -> bool {
    expires_at.is_some_and(|at| at > now && at <= now + window)
}

/// [`TokenCounts`] of both kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    pub content_api: TokenCounts,
    pub admin: TokenCounts,
}

impl TokenStats {
    pub fn of(&self, kind: TokenKind) -> &TokenCounts {
        match kind {
            TokenKind::ContentApi => &self.content_api,
            TokenKind::Admin => &self.admin,
        }
    }
}

#[cfg(test)]
mod tests;
