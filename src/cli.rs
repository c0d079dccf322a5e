//! The `authgate` command line (SPEC §5).
//!
//! Exit status: 0 on success, 2 on bad usage (clap's own errors), 1 on any
//! other error, always with one clear line on stderr. The plaintext key is
//! printed by `token create` and `token regenerate` (and by `token show
//! --reveal`, when an encryption key is configured and the actor may view
//! it). `--json` prints one JSON object per line.

use std::path::PathBuf;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::audit::{self, AuditCtx, AuditKey};
use crate::cidr::Cidr;
use crate::config::{self, Config, Layout};
use crate::control::{self, Actor, CreateRequest, Manager};
use crate::invalidation::{Event, Message};
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::{TokenRow, TokenUpdate, UserFlag, UserRow};
use crate::store::audit::AuditFilter;
use crate::store::{self, Store};

#[derive(Parser, Debug)]
#[command(
    name = "authgate",
    version,
    about = "Token-checking reverse proxy for Strapi-style CMSs"
)]
pub struct Cli {
    /// Config file (default: $AUTHGATE_CONFIG, else ./config.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Create or upgrade the database schema (idempotent). In the strapi5
    /// layout: install only authgate's invalidation triggers on Strapi's
    /// tables (opt-in; Strapi's data is never written).
    Migrate {
        /// Override `postgres.layout` (authgate or strapi5) for this run.
        #[arg(long, value_parser = parse_layout)]
        layout: Option<Layout>,
    },
    /// Validate the config and print it, secrets redacted.
    CheckConfig,
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage admin users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage roles and their permissions.
    #[command(subcommand)]
    Role(RoleCmd),
    /// Read and check the audit trail of management actions.
    #[command(subcommand)]
    Audit(AuditCmd),
}

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Walk the hash chain: exit 0 when intact, 1 naming the first event
    /// that was edited, deleted or reordered.
    Verify,
    /// List events, newest first.
    List {
        /// Only events of the last DURATION (e.g. 24h, 7d), or since an RFC 3339 time.
        #[arg(long, value_parser = parse_since)]
        since: Option<SystemTime>,
        /// Only this action (e.g. api-token.regenerate).
        #[arg(long)]
        action: Option<String>,
        /// Only this actor (an email, or `operator`).
        #[arg(long)]
        actor: Option<String>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Delete events older than `audit.retention` now (the server also
    /// does it hourly), leaving a checkpoint event.
    Prune,
}

fn parse_since(s: &str) -> Result<SystemTime, String> {
    audit::parse_since(s)
        .ok_or_else(|| format!("`{s}`: expected a duration (24h, 7d) or an RFC 3339 time"))
}

#[derive(Args, Debug)]
pub struct ActAs {
    /// Act as this admin user, with their permissions (default: the host
    /// operator, with every right).
    #[arg(long = "as", value_name = "EMAIL")]
    pub as_user: Option<String>,
}

/// What `token create` and `token import` say of the new token.
#[derive(Args, Debug)]
pub struct NewTokenArgs {
    #[arg(long, value_parser = parse_kind)]
    kind: TokenKind,
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// 7d, 30d, 90d or unlimited.
    #[arg(long, default_value = "unlimited", value_parser = parse_lifespan)]
    duration: Lifespan,
    /// Content-API tokens: read-only (default), full-access or custom.
    #[arg(long = "type", value_parser = parse_type)]
    token_type: Option<ContentApiType>,
    /// Admin tokens: the owner's email (default: the --as user).
    #[arg(long)]
    owner: Option<String>,
    /// ACTION (custom content-API tokens) or ACTION[@SUBJECT] (admin tokens); repeatable.
    #[arg(long = "permission", value_parser = Permission::parse)]
    permissions: Vec<Permission>,
    /// Only requests from this network (a CIDR block, or one address)
    /// may use the token; repeatable. Default: any address.
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    allow_cidrs: Vec<String>,
}

impl NewTokenArgs {
    /// The request the management rules check.
    fn request(self) -> Result<CreateRequest, CliError> {
        let token_type = match (self.kind, self.token_type) {
            (TokenKind::ContentApi, None) => Some(ContentApiType::ReadOnly),
            (_, t) => t,
        };
        Ok(CreateRequest {
            kind: self.kind,
            name: self.name,
            description: self.description,
            token_type,
            lifespan_ms: self.duration.0,
            owner: self.owner,
            permissions: self.permissions,
            allowed_cidrs: parse_cidrs(&self.allow_cidrs)?,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print its key (shown once).
    Create {
        #[command(flatten)]
        token: NewTokenArgs,
        #[command(flatten)]
        act: ActAs,
        #[arg(long)]
        json: bool,
    },
    /// Change a token's name, description or networks (the same
    /// `*-token.update` audit event as an edit through the API or the page).
    Update(UpdateArgs),
    /// List tokens.
    List {
        #[arg(long, value_parser = parse_kind)]
        kind: Option<TokenKind>,
        /// Only active tokens that expire within DURATION (e.g. 7d, 36h),
        /// soonest first.
        #[arg(long, value_parser = parse_window)]
        expiring: Option<std::time::Duration>,
        #[command(flatten)]
        act: ActAs,
        #[arg(long)]
        json: bool,
    },
    /// Show one token.
    Show {
        id: i64,
        /// Also print the key, when an encryption key is configured and the
        /// actor may view it (admin keys: their owner only).
        #[arg(long)]
        reveal: bool,
        #[command(flatten)]
        act: ActAs,
        #[arg(long)]
        json: bool,
    },
    /// Give a token a new key; the old key stops working at once, or
    /// after --keep-old-for.
    Regenerate {
        id: i64,
        /// Keep the old key working this long (e.g. 1h, 2d; at most 7d),
        /// with the same identity, so clients can move to the new one.
        #[arg(long, value_name = "DURATION", value_parser = parse_window)]
        keep_old_for: Option<std::time::Duration>,
        #[command(flatten)]
        act: ActAs,
        #[arg(long)]
        json: bool,
    },
    /// Bring an existing key along from a legacy CMS: the key is read from
    /// standard input (never from the command line, where `ps` shows it)
    /// and works at once.
    Import {
        #[command(flatten)]
        token: NewTokenArgs,
        /// Standard input holds the key's stored hash (a Strapi row's
        /// 128-hex `access_key`, made with the same salt), not the key.
        #[arg(long)]
        hash: bool,
        #[command(flatten)]
        act: ActAs,
        #[arg(long)]
        json: bool,
    },
    /// Delete (revoke) a token.
    Delete {
        id: i64,
        #[command(flatten)]
        act: ActAs,
        #[arg(long)]
        json: bool,
    },
}

/// `token update`: at least one change.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("change").required(true).multiple(true)))]
pub struct UpdateArgs {
    pub id: i64,
    #[arg(long, group = "change")]
    pub name: Option<String>,
    #[arg(long, group = "change")]
    pub description: Option<String>,
    /// Only requests from this network (a CIDR block, or one address) may
    /// use the token; repeatable; replaces the whole list.
    #[arg(long = "allow-cidr", value_name = "CIDR", group = "change")]
    pub allow_cidrs: Vec<String>,
    /// Remove the networks: the token works from any address again.
    #[arg(long, group = "change", conflicts_with = "allow_cidrs")]
    pub clear_cidrs: bool,
    #[command(flatten)]
    pub act: ActAs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create an admin user.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a user: their admin tokens get 401 until re-activated.
    Deactivate {
        email: String,
    },
    Activate {
        email: String,
    },
    /// Block a user: their admin tokens get 401 until unblocked.
    Block {
        email: String,
    },
    Unblock {
        email: String,
    },
    /// Delete a user and, with them, their admin tokens.
    Delete {
        email: String,
    },
    /// Add a user to a role.
    AddRole {
        email: String,
        role: String,
    },
    /// Remove a user from a role.
    RemoveRole {
        email: String,
        role: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RoleCmd {
    Create {
        name: String,
    },
    /// Delete a role: its members lose what it granted, and their admin
    /// tokens what no other role of theirs grants.
    Delete {
        name: String,
    },
    /// Grant ACTION[@SUBJECT] to a role.
    Grant {
        role: String,
        #[arg(value_parser = Permission::parse)]
        permission: Permission,
    },
    /// Revoke ACTION[@SUBJECT]; also removes it from the admin tokens of the
    /// role's users (unless they hold it through another role).
    Revoke {
        role: String,
        #[arg(value_parser = Permission::parse)]
        permission: Permission,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A token lifespan in ms; `None` = unlimited.
#[derive(Debug, Clone, Copy)]
pub struct Lifespan(pub Option<i64>);

fn parse_window(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration `{s}` ({e}); write e.g. 7d or 36h"))
}

fn parse_lifespan(s: &str) -> Result<Lifespan, String> {
    control::parse_duration(s).map(Lifespan)
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse()
}

fn parse_kind(s: &str) -> Result<TokenKind, String> {
    s.parse()
}

fn parse_type(s: &str) -> Result<ContentApiType, String> {
    s.parse()
}

/// A CLI failure: one line for stderr, exit status 1 (2 for [`CliError::Usage`]).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A value clap cannot check by itself, refused in one line: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{}", control_message(.0))]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Serve(#[from] crate::serve_error::ServeError),
    #[error("{0}")]
    Other(String),
}

/// A management error in the command line's terms (flags, not fields).
fn control_message(e: &control::ControlError) -> String {
    match e {
        control::ControlError::Rule(r) => r.cli_message().to_owned(),
        other => other.to_string(),
    }
}

/// Parse arguments, run, and return the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("authgate: {e}");
            if matches!(e, CliError::Usage(_)) {
                2
            } else {
                1
            }
        }
    }
}

fn runtime(workers: usize) -> Result<tokio::runtime::Runtime, CliError> {
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            b.worker_threads(workers);
        }
        b
    };
    b.enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the runtime: {e}")))
}

pub fn run(cli: Cli) -> Result<(), CliError> {
    let path = config::resolve_path(cli.config.as_deref());
    let cfg = match &cli.command {
        // The layout decides defaults (the schema), so override it before
        // the config is compiled.
        Command::Migrate {
            layout: Some(layout),
        } => {
            let mut raw = config::load_raw_with_env(&path, std::env::vars())?;
            raw.postgres.layout = layout.as_str().to_owned();
            raw.compile()?
        }
        _ => config::load(&path)?,
    };
    match cli.command {
        Command::CheckConfig => {
            print!("{}", cfg.to_redacted_toml());
            eprintln!("config {} is valid", path.display());
            if cfg.postgres.layout == Layout::Strapi5 {
                runtime(1)?.block_on(check_strapi5(&cfg));
            }
            Ok(())
        }
        Command::Serve => {
            crate::telemetry::init(&cfg.log);
            let rt = runtime(cfg.server.worker_threads)?;
            rt.block_on(serve(cfg, path))
        }
        other => {
            let rt = runtime(1)?;
            rt.block_on(admin_command(cfg, other))
        }
    }
}

/// `check-config` in the strapi5 layout: look at the database too, best
/// effort and briefly. Problems are warnings: the config itself is valid.
async fn check_strapi5(cfg: &Config) {
    let mut pg = cfg.postgres.clone();
    let bound = pg.connect_timeout.min(std::time::Duration::from_secs(3));
    pg.connect_timeout = bound;
    let looked = tokio::time::timeout(bound * 2, async {
        let client = store::connect(&pg).await?;
        let found = store::strapi5::inspect(&client, &pg.schema).await?;
        let types = if found.missing_tables.is_empty() {
            Some(crate::strapi5_sync::read_content_types(&client).await)
        } else {
            None
        };
        Ok::<_, store::StoreError>((found, types))
    })
    .await;
    match looked {
        Ok(Ok((found, types))) => {
            if let Some(types) = types {
                for line in content_types_report(cfg, types) {
                    eprintln!("{line}");
                }
            }
            let warnings = store::strapi5::warnings(&pg.schema, &found);
            for w in &warnings {
                eprintln!("authgate: warning: {w}");
            }
            if warnings.is_empty() {
                eprintln!(
                    "strapi5 layout: Strapi's tables in schema `{}` are indexed and announce changes",
                    pg.schema
                );
            }
        }
        Ok(Err(e)) if e.is_unavailable() => eprintln!(
            "authgate: note: could not reach the database at {} to check Strapi's tables: {e}",
            pg.url.redacted()
        ),
        Ok(Err(e)) => eprintln!("authgate: note: could not check Strapi's tables: {e}"),
        Err(_) => eprintln!(
            "authgate: note: could not reach the database at {} to check Strapi's tables: no answer within {bound:?}",
            pg.url.redacted()
        ),
    }
}

/// What `check-config` says about the content types Strapi stores.
fn content_types_report(
    cfg: &Config,
    read: Result<Option<crate::content_types::Discovered>, store::StoreError>,
) -> Vec<String> {
    let configured = &cfg.route_spec.content_types;
    let route = |t: &crate::route::ContentTypeSpec| {
        if t.single {
            format!("/api/{}", t.singular.as_deref().unwrap_or("?"))
        } else {
            format!("/api/{}", t.plural.as_deref().unwrap_or("?"))
        }
    };
    let mut out = Vec::new();
    match read {
        Ok(Some(d)) => {
            let merged = crate::content_types::merge(configured, &d.types);
            out.push(format!(
                "strapi5 layout: {} content type(s) stored by Strapi, {} in [[content_types]]; mapped:",
                d.types.len(),
                configured.len()
            ));
            for t in &merged {
                let from = if configured.iter().any(|c| c.uid == t.uid) {
                    "config"
                } else {
                    "Strapi"
                };
                out.push(format!("  {} {} ({from})", t.uid, route(t)));
            }
            for t in d.types.iter().filter(|t| !merged.contains(t)) {
                if !configured.iter().any(|c| c.uid == t.uid) {
                    out.push(format!(
                        "  {} {}: not mapped, a [[content_types]] entry uses that path",
                        t.uid,
                        route(t)
                    ));
                }
            }
            for (uid, why) in &d.skipped {
                out.push(format!("  skipped {uid}: {why}"));
            }
        }
        Ok(None) => out.push(format!(
            "authgate: warning: strapi5 layout: no `{}` row in strapi_core_store_settings: only the {} [[content_types]] of the config are mapped",
            crate::content_types::CORE_STORE_KEY,
            configured.len()
        )),
        Err(e) => out.push(format!(
            "authgate: warning: strapi5 layout: cannot read Strapi's content types: {e}"
        )),
    }
    out
}

/// Why a command cannot run in the strapi5 layout, if it is a write.
fn strapi5_refusal(cmd: &Command) -> Option<&'static str> {
    let what = match cmd {
        Command::Token(TokenCmd::List { .. } | TokenCmd::Show { .. }) => return None,
        Command::Token(TokenCmd::Create { .. }) => "token create",
        Command::Token(TokenCmd::Import { .. }) => "token import",
        Command::Token(TokenCmd::Update(_)) => "token update",
        Command::Token(TokenCmd::Regenerate { .. }) => "token regenerate",
        Command::Token(TokenCmd::Delete { .. }) => "token delete",
        Command::User(u) => match u {
            UserCmd::Create { .. } => "user create",
            UserCmd::Deactivate { .. } => "user deactivate",
            UserCmd::Activate { .. } => "user activate",
            UserCmd::Block { .. } => "user block",
            UserCmd::Unblock { .. } => "user unblock",
            UserCmd::Delete { .. } => "user delete",
            UserCmd::AddRole { .. } => "user add-role",
            UserCmd::RemoveRole { .. } => "user remove-role",
            UserCmd::List { .. } => return None,
        },
        Command::Role(r) => match r {
            RoleCmd::Create { .. } => "role create",
            RoleCmd::Delete { .. } => "role delete",
            RoleCmd::Grant { .. } => "role grant",
            RoleCmd::Revoke { .. } => "role revoke",
            RoleCmd::List { .. } => return None,
        },
        Command::Serve | Command::Migrate { .. } | Command::CheckConfig | Command::Audit(_) => {
            return None
        }
    };
    Some(what)
}

/// `token list`: a table, or one JSON object a line.
fn print_token_list(rows: &[TokenRow], json: bool) {
    if json {
        for t in rows {
            println!("{}", token_json(t, None));
        }
    } else {
        println!(
            "{:<6} {:<12} {:<28} {:<12} {:<24} {:<20} {:<20}",
            "ID", "KIND", "NAME", "TYPE", "OWNER", "EXPIRES", "LAST USED"
        );
        for t in rows {
            let d = |t: Option<SystemTime>, none: &str| {
                t.map_or(none.to_owned(), |t| {
                    humantime::format_rfc3339_seconds(t).to_string()
                })
            };
            println!(
                "{:<6} {:<12} {:<28} {:<12} {:<24} {:<20} {:<20}",
                t.id,
                t.kind.as_str(),
                t.name,
                t.token_type.map_or("-", ContentApiType::as_str),
                t.owner_email.as_deref().unwrap_or("-"),
                d(t.expires_at, "never"),
                d(t.last_used_at, "never"),
            );
        }
    }
}

async fn serve(cfg: Config, path: PathBuf) -> Result<(), CliError> {
    let layout = cfg.postgres.layout;
    let server = crate::server::Server::bind(cfg).await?;
    tracing::info!(listen = %server.local_addr(), metrics = ?server.metrics_addr(), management = ?server.management_addr(), config = %path.display(), %layout, "authgate started");
    let reloader =
        crate::reload::Reloader::new(path, server.metrics(), server.policy(), server.tls());
    server.run(crate::reload::shutdown_signal(reloader)).await?;
    Ok(())
}

fn ts(t: Option<SystemTime>) -> serde_json::Value {
    match t {
        Some(t) => json!(humantime::format_rfc3339_millis(t).to_string()),
        None => serde_json::Value::Null,
    }
}

fn token_json(t: &TokenRow, key: Option<&str>) -> serde_json::Value {
    let mut v = json!({
        "id": t.id,
        "kind": t.kind.as_str(),
        "name": t.name,
        "description": t.description,
        "type": t.token_type.map(ContentApiType::as_str),
        "owner": t.owner_email,
        "owner_id": t.owner_id,
        "lifespan": t.lifespan_ms,
        "expires_at": ts(t.expires_at),
        "last_used_at": ts(t.last_used_at),
        "created_at": ts(Some(t.created_at)),
        "permissions": t.permissions.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "old_key_expires_at": ts(t.old_key_expires_at),
        "allowed_cidrs": t.allowed_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if let Some(k) = key {
        v["key"] = json!(k);
    }
    v
}

fn print_token(t: &TokenRow, key: Option<&str>, as_json: bool) {
    if as_json {
        println!("{}", token_json(t, key));
        return;
    }
    println!("id:          {}", t.id);
    println!("kind:        {}", t.kind);
    println!("name:        {}", t.name);
    if !t.description.is_empty() {
        println!("description: {}", t.description);
    }
    if let Some(ty) = t.token_type {
        println!("type:        {ty}");
    }
    if let Some(o) = &t.owner_email {
        println!("owner:       {o}");
    }
    let fmt = |t: Option<SystemTime>, none: &str| {
        t.map_or(none.to_owned(), |t| {
            humantime::format_rfc3339_seconds(t).to_string()
        })
    };
    println!("expires:     {}", fmt(t.expires_at, "never"));
    if let Some(at) = t.old_key_expires_at {
        println!("old key:     works until {}", fmt(Some(at), "-"));
    }
    println!("last used:   {}", fmt(t.last_used_at, "never"));
    println!("created:     {}", fmt(Some(t.created_at), "-"));
    if !t.permissions.is_empty() {
        println!("permissions: {}", join(&t.permissions));
    }
    if !t.allowed_cidrs.is_empty() {
        println!("networks:    {}", join(&t.allowed_cidrs));
    }
    if let Some(k) = key {
        println!("key:         {k}");
    }
}

/// The most standard input may hold for `token import`: a key of 512
/// characters, and room for blanks around it.
const MAX_IMPORT_INPUT: u64 = 4096;

/// The key (or, with `hash`, its stored hash) `token import` reads from
/// standard input, kept out of the command line and zeroed when dropped.
fn read_key_from_stdin(hash: bool) -> Result<zeroize::Zeroizing<String>, CliError> {
    use std::io::{IsTerminal, Read};
    let what = if hash {
        "the 128-hex access_key"
    } else {
        "the key"
    };
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!(
            "authgate: paste {what}, then press Enter and Ctrl-D (a pipe keeps it off the screen)"
        );
    }
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_IMPORT_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::Other(format!("cannot read {what} from standard input: {e}")))?;
    if buf.len() as u64 > MAX_IMPORT_INPUT {
        return Err(CliError::Other(format!(
            "standard input holds more than {what}: give only {what}"
        )));
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| CliError::Other(format!("{what} on standard input is not text")))?;
    if text.trim().is_empty() {
        return Err(CliError::Other(format!(
            "no key on standard input: pipe {what} in, e.g. `authgate token import ... < key.txt`"
        )));
    }
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The values of `--allow-cidr`, each a CIDR block or one address.
fn parse_cidrs(values: &[String]) -> Result<Vec<Cidr>, CliError> {
    values
        .iter()
        .map(|v| Cidr::parse(v).map_err(|e| CliError::Usage(format!("--allow-cidr: {e}"))))
        .collect()
}

fn user_json(u: &UserRow) -> serde_json::Value {
    json!({
        "id": u.id,
        "email": u.email,
        "name": u.name,
        "is_active": u.is_active,
        "blocked": u.blocked,
        "roles": u.roles,
        "super_admin": u.super_admin,
    })
}

fn note_actor(actor: &Actor) {
    if matches!(actor, Actor::Operator) {
        eprintln!("authgate: acting as the host operator (all rights); use --as EMAIL to act as an admin user");
    }
}

async fn admin_command(cfg: Config, cmd: Command) -> Result<(), CliError> {
    if cfg.postgres.layout == Layout::Strapi5 {
        if let Some(what) = strapi5_refusal(&cmd) {
            return Err(CliError::Other(format!(
                "`{what}` is not available in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel (authgate only reads them; `token list` and `token show` work)"
            )));
        }
    }
    if let Command::Migrate { .. } = cmd {
        let applied = store::migrate(&cfg.postgres).await?;
        if cfg.postgres.layout == Layout::Strapi5 {
            let schema = &cfg.postgres.schema;
            let functions = store::strapi5::FUNCTIONS_SCHEMA;
            if applied.is_empty() {
                println!("strapi5 layout: authgate's triggers on schema `{schema}` are up to date (functions in schema `{functions}`)");
            } else {
                println!("strapi5 layout: installed authgate's invalidation triggers on Strapi's tables in schema `{schema}` (functions in schema `{functions}`); Strapi's data was not touched");
            }
            return Ok(());
        }
        if applied.is_empty() {
            println!("schema `{}` is up to date", cfg.postgres.schema);
        } else {
            let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
            println!(
                "schema `{}`: applied migrations {}",
                cfg.postgres.schema,
                list.join(", ")
            );
        }
        return Ok(());
    }
    // Each audit event is one log line on stderr (target authgate::audit),
    // as the server's are, for shipping to a SIEM; other lines only from
    // warnings up.
    crate::telemetry::init(&config::LogConfig {
        format: cfg.log.format,
        level: "warn,authgate::audit=info".into(),
    });
    let store = Store::new(&cfg.postgres)?;
    let mgr = Manager::new(&store, &cfg);
    // Replicas hear about changes from Postgres triggers; with Redis
    // configured the change is also published there, for replicas whose
    // Postgres connection cannot LISTEN (e.g. behind PgBouncer).
    let event = match &cfg.redis {
        Some(_) => changed_by(&store, &cmd).await,
        None => None,
    };
    let ctx = mgr.audit(&Actor::Operator);
    let result = match cmd {
        Command::Token(t) => token_command(&mgr, t).await,
        Command::User(u) => user_command(&store, &ctx, u).await,
        Command::Role(r) => role_command(&store, &ctx, r).await,
        Command::Audit(a) => audit_command(&store, &cfg, &ctx, a).await,
        Command::Serve | Command::Migrate { .. } | Command::CheckConfig => Ok(()),
    };
    if let (Ok(()), Some(event), Some(r)) = (&result, event, &cfg.redis) {
        let metrics = crate::metrics::Metrics::new();
        let channel = crate::redis_link::channel(&cfg.postgres.schema);
        match crate::redis_link::RedisLink::new(r.url.expose(), r.timeout, channel, metrics.clone())
        {
            Ok(link) => {
                let sent_ms = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                link.publish(
                    &Message {
                        event,
                        sent_ms: Some(sent_ms),
                    }
                    .encode(),
                )
                .await;
                if metrics.redis_errors.with_label_values(&["publish"]).get() > 0 {
                    eprintln!("authgate: warning: could not publish the change to redis; replicas rely on Postgres NOTIFY and the cache TTL");
                }
            }
            Err(e) => eprintln!("authgate: warning: redis.url: {e}"),
        }
    }
    result
}

/// What a management command is about to change, for the Redis fan-out.
async fn changed_by(store: &Store, cmd: &Command) -> Option<Event> {
    let user = |email: &str| {
        let email = email.to_owned();
        async move {
            store
                .user_by_email(&email)
                .await
                .ok()
                .flatten()
                .map(|u| Event::User(u.id))
        }
    };
    let role = |name: &str| {
        let name = name.to_owned();
        async move {
            let roles = store.list_roles().await.ok()?;
            roles
                .into_iter()
                .find(|r| r.name == name)
                .map(|r| Event::Role(r.id))
        }
    };
    match cmd {
        Command::Token(
            TokenCmd::Regenerate { id, .. }
            | TokenCmd::Delete { id, .. }
            | TokenCmd::Update(UpdateArgs { id, .. }),
        ) => Some(Event::Token {
            id: *id,
            hash: None,
        }),
        Command::User(
            UserCmd::Deactivate { email }
            | UserCmd::Activate { email }
            | UserCmd::Block { email }
            | UserCmd::Unblock { email }
            | UserCmd::Delete { email }
            | UserCmd::AddRole { email, .. }
            | UserCmd::RemoveRole { email, .. },
        ) => user(email).await,
        Command::Role(
            RoleCmd::Grant { role: r, .. }
            | RoleCmd::Revoke { role: r, .. }
            | RoleCmd::Delete { name: r },
        ) => role(r).await,
        _ => None,
    }
}

async fn token_command(mgr: &Manager<'_>, cmd: TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::Create { token, act, json } => {
            let req = token.request()?;
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            note_actor(&actor);
            let created = mgr.create(&actor, req).await?;
            print_token(
                &created.token,
                created.key.as_deref().map(String::as_str),
                json,
            );
            if !json {
                eprintln!(
                    "authgate: copy the key now: it is not shown again{}",
                    if mgr.cfg.tokens.encryption_key.is_some() {
                        " (except with `token show --reveal`)"
                    } else {
                        ""
                    }
                );
            }
        }
        TokenCmd::List {
            kind,
            expiring,
            act,
            json,
        } => {
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            let mut rows = mgr.list(&actor, kind).await?;
            if let Some(window) = expiring {
                control::keep_expiring(&mut rows, window, SystemTime::now());
            }
            print_token_list(&rows, json);
        }
        TokenCmd::Show {
            id,
            reveal,
            act,
            json,
        } => {
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            let t = mgr.show(&actor, id, reveal).await?;
            print_token(&t.token, t.key.as_deref().map(String::as_str), json);
        }
        TokenCmd::Update(args) => update_token(mgr, args).await?,
        TokenCmd::Regenerate {
            id,
            keep_old_for,
            act,
            json,
        } => {
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            note_actor(&actor);
            let keep = keep_old_for.unwrap_or_default();
            let t = mgr.regenerate(&actor, id, keep).await?;
            print_token(&t.token, t.key.as_deref().map(String::as_str), json);
            if !json {
                match t.token.old_key_expires_at {
                    Some(at) => eprintln!(
                        "authgate: the old key keeps working until {}; copy the new key now",
                        humantime::format_rfc3339_seconds(at)
                    ),
                    None => {
                        eprintln!("authgate: the old key no longer works; copy the new key now")
                    }
                }
            }
        }
        TokenCmd::Import {
            token,
            hash,
            act,
            json,
        } => {
            // Refused before anything is read from standard input.
            let req = token.request()?;
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            note_actor(&actor);
            let text = read_key_from_stdin(hash)?;
            let key = if hash {
                control::NewKey::hash(&text)?
            } else {
                control::NewKey::plain(&text)?
            };
            let t = mgr.import(&actor, req, &key).await?;
            print_token(&t, None, json);
            if !json {
                eprintln!("authgate: imported; the key works at once");
            }
        }
        TokenCmd::Delete { id, act, json } => {
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            note_actor(&actor);
            let t = mgr.delete(&actor, id).await?;
            if json {
                println!(
                    "{}",
                    json!({"id": t.id, "kind": t.kind.as_str(), "name": t.name, "deleted": true})
                );
            } else {
                println!("deleted {} token {} ({})", t.kind, t.id, t.name);
            }
        }
    }
    Ok(())
}

/// `token update`: the manager's update, as the API and the page call it.
async fn update_token(mgr: &Manager<'_>, args: UpdateArgs) -> Result<(), CliError> {
    let allowed_cidrs = match (args.clear_cidrs, args.allow_cidrs.is_empty()) {
        (true, _) => Some(Vec::new()),
        (false, true) => None,
        (false, false) => Some(parse_cidrs(&args.allow_cidrs)?),
    };
    let actor = mgr.actor(args.act.as_user.as_deref()).await?;
    note_actor(&actor);
    let update = TokenUpdate {
        name: args.name,
        description: args.description,
        allowed_cidrs,
        ..TokenUpdate::default()
    };
    let t = mgr.update(&actor, args.id, update).await?;
    print_token(&t, None, args.json);
    Ok(())
}

async fn user_command(store: &Store, ctx: &AuditCtx, cmd: UserCmd) -> Result<(), CliError> {
    let missing = |e: &str| CliError::Other(format!("no user with email {e}"));
    match cmd {
        UserCmd::Create {
            email,
            name,
            roles,
            json,
        } => {
            if !email.contains('@') {
                return Err(CliError::Other(format!(
                    "`{email}` is not an email address"
                )));
            }
            let u = store.create_user(&email, &name, &roles, ctx).await?;
            if json {
                println!("{}", user_json(&u));
            } else {
                println!(
                    "created user {} ({}), roles: {}",
                    u.email,
                    u.id,
                    if u.roles.is_empty() {
                        "none".into()
                    } else {
                        u.roles.join(", ")
                    }
                );
            }
        }
        UserCmd::Deactivate { email } => {
            store
                .set_user_flag(&email, UserFlag::Active, false, ctx)
                .await?
                .then_some(())
                .ok_or_else(|| missing(&email))?;
            println!(
                "deactivated {email}: their admin tokens now get 401 Token owner is deactivated"
            );
        }
        UserCmd::Activate { email } => {
            store
                .set_user_flag(&email, UserFlag::Active, true, ctx)
                .await?
                .then_some(())
                .ok_or_else(|| missing(&email))?;
            println!("activated {email}");
        }
        UserCmd::Block { email } => {
            store
                .set_user_flag(&email, UserFlag::Blocked, true, ctx)
                .await?
                .then_some(())
                .ok_or_else(|| missing(&email))?;
            println!("blocked {email}: their admin tokens now get 401 Token owner is deactivated");
        }
        UserCmd::Unblock { email } => {
            store
                .set_user_flag(&email, UserFlag::Blocked, false, ctx)
                .await?
                .then_some(())
                .ok_or_else(|| missing(&email))?;
            println!("unblocked {email}");
        }
        UserCmd::Delete { email } => {
            let tokens = store
                .delete_user(&email, ctx)
                .await?
                .ok_or_else(|| missing(&email))?;
            println!("deleted {email} and their {tokens} admin token(s)");
        }
        UserCmd::AddRole { email, role } => {
            let changed = store.set_user_role(&email, &role, true, ctx).await?;
            println!(
                "{email} {} role {role}",
                if changed { "now has" } else { "already had" }
            );
        }
        UserCmd::RemoveRole { email, role } => {
            let changed = store.set_user_role(&email, &role, false, ctx).await?;
            println!(
                "{email} {} role {role}",
                if changed {
                    "no longer has"
                } else {
                    "did not have"
                }
            );
        }
        UserCmd::List { json } => {
            for u in store.list_users().await? {
                if json {
                    println!("{}", user_json(&u));
                } else {
                    let status = match (u.is_active, u.blocked) {
                        (_, true) => "blocked",
                        (false, _) => "inactive",
                        _ => "active",
                    };
                    println!(
                        "{:<6} {:<32} {:<9} {}",
                        u.id,
                        u.email,
                        status,
                        u.roles.join(",")
                    );
                }
            }
        }
    }
    Ok(())
}

async fn role_command(store: &Store, ctx: &AuditCtx, cmd: RoleCmd) -> Result<(), CliError> {
    match cmd {
        RoleCmd::Create { name } => {
            let r = store.create_role(&name, ctx).await?;
            println!("created role {} ({})", r.name, r.id);
        }
        RoleCmd::Delete { name } => match store.delete_role(&name, ctx).await? {
            Some(n) => println!("deleted role {name}; its {n} member(s) lost what it granted"),
            None => return Err(CliError::Other(format!("no role named `{name}`"))),
        },
        RoleCmd::Grant { role, permission } => {
            let added = store.grant(&role, &permission, ctx).await?;
            println!(
                "role {role} {} {permission}",
                if added { "now holds" } else { "already held" }
            );
        }
        RoleCmd::Revoke { role, permission } => {
            match store.revoke(&role, &permission, ctx).await? {
                Some(n) => println!(
                    "revoked {permission} from role {role}; removed it from {n} admin token(s)"
                ),
                None => {
                    return Err(CliError::Other(format!(
                        "role {role} does not hold {permission}"
                    )))
                }
            }
        }
        RoleCmd::List { json } => {
            for r in store.list_roles().await? {
                let perms: Vec<String> = r.permissions.iter().map(|p| p.to_string()).collect();
                if json {
                    println!(
                        "{}",
                        json!({"id": r.id, "name": r.name, "super_admin": r.super_admin, "permissions": perms})
                    );
                } else {
                    let p = if r.super_admin {
                        "(every permission)".to_owned()
                    } else {
                        perms.join(", ")
                    };
                    println!("{:<6} {:<24} {}", r.id, r.name, p);
                }
            }
        }
    }
    Ok(())
}

async fn audit_command(
    store: &Store,
    cfg: &Config,
    ctx: &AuditCtx,
    cmd: AuditCmd,
) -> Result<(), CliError> {
    match cmd {
        AuditCmd::Verify => {
            let chain = store.audit_chain().await?;
            match audit::verify(&chain, &AuditKey::from_config(cfg)) {
                Ok(n) => println!("audit chain intact: {n} events"),
                Err(broken) => {
                    return Err(CliError::Other(format!("audit chain broken: {broken}")))
                }
            }
        }
        AuditCmd::List {
            since,
            action,
            actor,
            limit,
            json,
        } => {
            let filter = AuditFilter {
                since,
                action,
                actor,
            };
            let (events, _) = store.audit_events(&filter, limit.max(0), 0).await?;
            for e in events {
                if json {
                    println!("{}", e.to_json());
                } else {
                    println!(
                        "{:<6} {} {:<24} {:<28} {:<9} {} {} ({})",
                        e.id,
                        audit::rfc3339(e.at),
                        e.action,
                        e.actor,
                        e.via,
                        e.target_kind,
                        e.target_id,
                        e.target_name
                    );
                }
            }
        }
        AuditCmd::Prune => {
            let n = store.prune_audit(ctx, cfg.audit.retention).await?;
            println!(
                "pruned {n} audit event(s) older than {}",
                humantime::format_duration(cfg.audit.retention)
            );
        }
    }
    Ok(())
}
