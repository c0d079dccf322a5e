//! `token ...`: create, import, list, show, update, regenerate and delete
//! tokens, through the same rules ([`crate::control::Manager`]) as the
//! management API and web page.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use serde_json::json;

use super::print::{print_token, print_token_list};
use super::CliError;
use crate::cidr::Cidr;
use crate::control::{self, Actor, CreateRequest, Manager};
use crate::model::{ContentApiType, Permission, TokenKind};
use crate::store::admin::TokenUpdate;

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

fn parse_kind(s: &str) -> Result<TokenKind, String> {
    s.parse()
}

fn parse_type(s: &str) -> Result<ContentApiType, String> {
    s.parse()
}

pub(super) async fn token_command(mgr: &Manager<'_>, cmd: TokenCmd) -> Result<(), CliError> {
    match cmd {
        TokenCmd::Create { token, act, json } => create_token(mgr, token, act, json).await?,
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
        } => regenerate_token(mgr, id, keep_old_for.unwrap_or_default(), act, json).await?,
        TokenCmd::Import {
            token,
            hash,
            act,
            json,
        } => import_token(mgr, token, hash, act, json).await?,
        TokenCmd::Delete { id, act, json } => {
            let actor = mgr.actor(act.as_user.as_deref()).await?;
            note_actor(&actor);
            let t = mgr.delete(&actor, id).await?;
            if json {
                println!(
                    "{}",
                    super::display::json_line(
                        &json!({"id": t.id, "kind": t.kind.as_str(), "name": t.name, "deleted": true})
                    )
                );
            } else {
                say!("deleted {} token {} ({})", t.kind, t.id, t.name);
            }
        }
    }
    Ok(())
}

/// `token create`: the key is printed once.
async fn create_token(
    mgr: &Manager<'_>,
    token: NewTokenArgs,
    act: ActAs,
    json: bool,
) -> Result<(), CliError> {
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
        say_err!(
            "authgate: copy the key now: it is not shown again{}",
            if mgr.cfg.tokens.encryption_key.is_some() {
                " (except with `token show --reveal`)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `token regenerate`: the new key is printed once; says until when the
/// old one works.
async fn regenerate_token(
    mgr: &Manager<'_>,
    id: i64,
    keep_old_for: std::time::Duration,
    act: ActAs,
    json: bool,
) -> Result<(), CliError> {
    let actor = mgr.actor(act.as_user.as_deref()).await?;
    note_actor(&actor);
    let t = mgr.regenerate(&actor, id, keep_old_for).await?;
    print_token(&t.token, t.key.as_deref().map(String::as_str), json);
    if !json {
        match t.token.old_key_expires_at {
            Some(at) => say_err!(
                "authgate: the old key keeps working until {}; copy the new key now",
                humantime::format_rfc3339_seconds(at)
            ),
            None => say_err!("authgate: the old key no longer works; copy the new key now"),
        }
    }
    Ok(())
}

/// `token import`: the key (or its stored hash) comes from standard input.
async fn import_token(
    mgr: &Manager<'_>,
    token: NewTokenArgs,
    hash: bool,
    act: ActAs,
    json: bool,
) -> Result<(), CliError> {
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
        say_err!("authgate: imported; the key works at once");
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
        say_err!(
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

/// The values of `--allow-cidr`, each a CIDR block or one address.
fn parse_cidrs(values: &[String]) -> Result<Vec<Cidr>, CliError> {
    values
        .iter()
        .map(|v| Cidr::parse(v).map_err(|e| CliError::Usage(format!("--allow-cidr: {e}"))))
        .collect()
}

fn note_actor(actor: &Actor) {
    if matches!(actor, Actor::Operator) {
        say_err!("authgate: acting as the host operator (all rights); use --as EMAIL to act as an admin user");
    }
}
