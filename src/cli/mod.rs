//! The `authgate` command line (SPEC §5).
//!
//! Exit status: 0 on success, 2 on bad usage (clap's own errors), 1 on any
//! other error, always with one clear line on stderr. The plaintext key is
//! printed by `token create` and `token regenerate` (and by `token show
//! --reveal`, when an encryption key is configured and the actor may view
//! it). `--json` prints one JSON object per line.
//!
//! | file | commands |
//! | --- | --- |
//! | `mod.rs` | the command tree, [`main`], [`run`], [`CliError`] |
//! | `serve.rs` | `serve`, `migrate`, `check-config` (with the strapi5 layout's look at the database) |
//! | `token.rs` | `token create`, `import`, `list`, `show`, `update`, `regenerate`, `delete` |
//! | `user.rs`, `role.rs` | `user ...`, `role ...` |
//! | `audit.rs` | `audit verify`, `list`, `prune` |
//! | `explain.rs` | `explain METHOD TARGET`: how the gateway decides a request, and why |
//! | `print.rs` | the text and JSON printers the command groups share |
//! | `display.rs` | what reaches the terminal: [`display::escape`] (C0, DEL, C1), `say!`, [`display::json_line`] |
//! | `fanout.rs` | what a command changed, published to Redis for replicas that cannot LISTEN |

#[macro_use]
pub mod display;
mod audit;
mod explain;
mod fanout;
mod print;
mod role;
mod serve;
mod token;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Layout};
use crate::control::{self, Actor, Manager};
use crate::store::{self, Store};

pub use audit::AuditCmd;
pub use role::RoleCmd;
pub use token::{ActAs, Lifespan, NewTokenArgs, TokenCmd, UpdateArgs};
pub use user::UserCmd;

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
        #[arg(long, value_parser = serve::parse_layout)]
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
    /// Say how the gateway decides a request, and why: route, readings,
    /// token (never the key), decision.
    Explain(explain::ExplainArgs),
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
            say_err!("authgate: {e}");
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
        Command::CheckConfig => serve::check_config(&cfg, &path),
        Command::Serve => {
            crate::telemetry::init(&cfg.log);
            let rt = runtime(cfg.server.worker_threads)?;
            rt.block_on(serve::serve(cfg, path))
        }
        other => {
            let rt = runtime(1)?;
            rt.block_on(admin_command(cfg, other))
        }
    }
}

/// The name of a command that writes tokens, users or roles (refused where
/// the store does not write); `None` for the others.
fn writes(cmd: &Command) -> Option<&'static str> {
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
        Command::Serve
        | Command::Migrate { .. }
        | Command::CheckConfig
        | Command::Audit(_)
        | Command::Explain(_) => return None,
    };
    Some(what)
}

/// The commands that work on the database: `migrate`, and the management
/// commands (`token`, `user`, `role`, `audit`).
async fn admin_command(cfg: Config, cmd: Command) -> Result<(), CliError> {
    if !store::capabilities(&cfg.postgres).writes {
        if let Some(what) = writes(&cmd) {
            return Err(CliError::Other(format!(
                "`{what}` is not available in the strapi5 layout: tokens, users and roles are managed in Strapi's admin panel (authgate only reads them; `token list` and `token show` work)"
            )));
        }
    }
    if let Command::Migrate { .. } = cmd {
        return serve::migrate(&cfg).await;
    }
    if let Command::Explain(args) = cmd {
        return explain::explain_command(&cfg, args).await;
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
    let event = match &cfg.redis {
        Some(_) => fanout::changed_by(&store, &cmd).await,
        None => None,
    };
    let ctx = mgr.audit(&Actor::Operator);
    let result = match cmd {
        Command::Token(t) => token::token_command(&mgr, t).await,
        Command::User(u) => user::user_command(&store, &ctx, u).await,
        Command::Role(r) => role::role_command(&store, &ctx, r).await,
        Command::Audit(a) => audit::audit_command(&store, &cfg, &ctx, a).await,
        Command::Serve | Command::Migrate { .. } | Command::CheckConfig | Command::Explain(_) => {
            Ok(())
        }
    };
    if let (Ok(()), Some(event)) = (&result, event) {
        fanout::publish(&cfg, event).await;
    }
    result
}
