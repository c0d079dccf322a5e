//! The route table: everything needed to classify a request, compiled once
//! from config, and the judgement of a request against it.
//!
//! Actions come from three tables, all compiled once from config:
//! the content types (`/api/<plural>[/<id>]` -> `api::x.x.find` ...), explicit
//! content-API patterns for plugin routes, and the admin action table
//! (`GET /content-manager/collection-types/:model` -> `explorer.read` on
//! `:model`); the last two are [`PatternTable`]s. Prefixes give the route
//! class, `[[routes.rule]]`s whether a token is required.
//!
//! [`RouteTable::classify`] reads one normalised path; [`RouteTable::judge`]
//! is what the proxy calls: it also refuses methods and queries that could
//! be read another way, and every path that some reading behind authgate
//! ([`readings`]) would classify differently.

use std::collections::HashSet;
use std::sync::Arc;

use http::Method;

use super::actions::{ActionSubject, Matched, PatternSpec, PatternTable, MAX_SEGMENTS};
use super::methods::MethodSet;
use super::normalise::{segment_is, segments};
use super::{readings, PathError, Route, RouteAction, RouteClass};

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

impl ContentType {
    /// Check a configured content type and name its five actions.
    fn compile(ct: &ContentTypeSpec) -> Result<Self, String> {
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
        Ok(ContentType {
            uid: Arc::from(ct.uid.as_str()),
            plural: ct.plural.as_ref().map(|p| p.to_ascii_lowercase()),
            singular,
            single: ct.single,
            find: mk("find"),
            find_one: mk("findOne"),
            create: mk("create"),
            update: mk("update"),
            delete: mk("delete"),
        })
    }

    /// The actions its routes map to: a single type has no `findOne` or
    /// `create`.
    fn actions(&self) -> Vec<&Arc<str>> {
        if self.single {
            vec![&self.find, &self.update, &self.delete]
        } else {
            vec![
                &self.find,
                &self.find_one,
                &self.create,
                &self.update,
                &self.delete,
            ]
        }
    }
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
    /// The `find` action of every content type, for [`RouteAction::GraphQl`].
    graphql_finds: Vec<Arc<str>>,
    content_api_actions: PatternTable,
    admin_actions: PatternTable,
    known_content_actions: HashSet<Arc<str>>,
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

/// The admin and content-API prefixes, longest first.
fn build_prefixes(spec: &RouteSpec) -> Result<Vec<Prefix>, String> {
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
    Ok(prefixes)
}

/// The `[[routes.rule]]`s, longest prefix first.
fn build_rules(specs: &[RuleSpec]) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for r in specs {
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
    Ok(rules)
}

impl RouteTable {
    pub fn build(spec: &RouteSpec) -> Result<Self, String> {
        let prefixes = build_prefixes(spec)?;
        let rules = build_rules(&spec.rules)?;
        let graphql = match &spec.graphql_path {
            Some(p) => {
                let segs = prefix_segments(p)?;
                Some(segs)
            }
            None => None,
        };

        let mut content_types = Vec::new();
        let mut known = HashSet::new();
        for ct in &spec.content_types {
            let c = ContentType::compile(ct)?;
            known.extend(c.actions().into_iter().cloned());
            content_types.push(c);
        }
        let content_api_actions = PatternTable::build(&spec.content_api_actions)?;
        known.extend(content_api_actions.actions().cloned());
        let admin_actions = PatternTable::build(&spec.admin_actions)?;
        let graphql_finds = content_types.iter().map(|c| c.find.clone()).collect();
        Ok(Self {
            prefixes,
            rules,
            graphql,
            content_types,
            graphql_finds,
            content_api_actions,
            admin_actions,
            known_content_actions: known,
        })
    }

    /// The uids of the content types the table routes (the config's, and
    /// in the strapi5 layout those Strapi stores).
    pub fn content_type_uids(&self) -> impl Iterator<Item = &str> {
        self.content_types.iter().map(|c| &*c.uid)
    }

    /// Is `action` a content-API action some route maps to?
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
        let mut v: Vec<&str> = self.admin_actions.actions().map(|a| &**a).collect();
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
            .action_subjects()
            .flat_map(|(action, subject)| action.split('|').map(move |a| (a, subject)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Judge a request: classify `normal`, authgate's reading of the raw
    /// path `raw` (what [`normalise`](super::normalise()) made of it), and prove it is the only
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
    pub fn judge<'t>(
        &'t self,
        method: &Method,
        raw: &str,
        query: Option<&str>,
        normal: &str,
    ) -> Result<Route<'t>, PathError> {
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
    pub fn classify<'t>(&'t self, method: &Method, path: &str) -> Route<'t> {
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
        let lookup = |table: &'t PatternTable| match deep {
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
                    RouteAction::GraphQl {
                        finds: &self.graphql_finds,
                    }
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

/// Where a route's class, token requirement and action come from, in the
/// config's words: what `authgate explain` shows. The route itself is
/// always [`RouteTable::classify`]'s; this names the table entries that
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping<'t> {
    /// The prefix that gave the class (`/admin`, `/api`), if any.
    pub prefix: Option<String>,
    /// The `[[routes.rule]]` that decides whether a token is required.
    pub rule: Option<String>,
    /// Where the action comes from.
    pub action: MappedBy<'t>,
}

/// The source of a route's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappedBy<'t> {
    /// No action: the class alone decides.
    Nothing,
    /// A row of an action table (`[[admin_actions]]`, `[[content_api_actions]]`
    /// or the built-in ones), as written.
    Row(&'t str),
    /// A content type's CRUD routes.
    ContentType(&'t str),
    /// The GraphQL endpoint: the operation decides.
    GraphQl,
}

impl RouteTable {
    /// Which entries of the table classify `path` as they do.
    pub fn mapping(&self, method: &Method, path: &str) -> Mapping<'_> {
        let route = self.classify(method, path);
        let segs: Vec<&str> = segments(path).take(MAX_SEGMENTS + 1).collect();
        let prefix = self
            .prefixes
            .iter()
            .find(|p| has_prefix(&segs, &p.segs))
            .map(|p| format!("/{}", p.segs.join("/")));
        let rule = self
            .rules
            .iter()
            .find(|r| {
                has_prefix(&segs, &r.segs)
                    && (r.methods.contains(method)
                        || (!MethodSet::is_standard(method) && r.auth_required))
            })
            .map(|r| {
                let auth = if r.auth_required {
                    "required"
                } else {
                    "optional"
                };
                format!(
                    "[[routes.rule]] prefix = /{} (auth = {auth})",
                    r.segs.join("/")
                )
            });
        let table = match route.class {
            RouteClass::Admin => Some(&self.admin_actions),
            RouteClass::ContentApi => Some(&self.content_api_actions),
            RouteClass::Unprotected => None,
        };
        let action = match (&route.action, table) {
            (RouteAction::GraphQl { .. }, _) => MappedBy::GraphQl,
            (RouteAction::None, _) | (_, None) => MappedBy::Nothing,
            (_, Some(table)) => match table.row_for(method, &segs) {
                Some(row) => MappedBy::Row(row),
                None => route
                    .action
                    .name()
                    .and_then(|a| {
                        self.content_types
                            .iter()
                            .find(|ct| a.strip_prefix(&*ct.uid).is_some_and(|r| r.starts_with('.')))
                    })
                    .map_or(MappedBy::Nothing, |ct| MappedBy::ContentType(&ct.uid)),
            },
        };
        Mapping {
            prefix,
            rule,
            action,
        }
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
