//! `audit ...`: check the hash chain of the audit trail, list its events,
//! prune it by `audit.retention`.

use std::time::SystemTime;

use clap::Subcommand;

use super::CliError;
use crate::audit::{self, AuditCtx, AuditKey};
use crate::config::Config;
use crate::store::audit::AuditFilter;
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Walk the hash chain: exit 0 when intact, 1 naming the first event
    /// that was edited, deleted or reordered.
    Verify {
        /// A head kept outside the database (`head=ID:HASH` of an
        /// `authgate::audit` log line): fail unless the chain reaches it, so
        /// newest events cut or a wiped table are caught.
        #[arg(long, value_name = "ID:HASH")]
        head: Option<audit::Head>,
    },
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

pub(super) async fn audit_command(
    store: &Store,
    cfg: &Config,
    ctx: &AuditCtx,
    cmd: AuditCmd,
) -> Result<(), CliError> {
    match cmd {
        AuditCmd::Verify { head } => {
            if let Some(warning) = store.audit_guard().await? {
                say_err!("authgate: warning: {warning}");
            }
            let chain = store.audit_chain().await?;
            let key = AuditKey::from_config(cfg);
            let checked = match &head {
                Some(h) => audit::verify_head(&chain, &key, h),
                None => audit::verify(&chain, &key),
            };
            match checked {
                Ok(n) => {
                    say!("audit chain intact: {n} events");
                    if let Some(newest) = chain.last() {
                        say_err!(
                            "authgate: head {} (keep it outside the database; check against it with --head)",
                            newest.head()
                        );
                    }
                }
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
                    println!("{}", super::display::json_line(&e.to_json()));
                } else {
                    let mut ids = String::new();
                    if let Some(r) = &e.request_id {
                        ids.push_str(&format!(" request-id={r}"));
                    }
                    if let Some(c) = &e.client_request_id {
                        ids.push_str(&format!(" client-request-id={c}"));
                    }
                    say!(
                        "{:<6} {} {:<24} {:<28} {:<9} {} {} ({}){ids}",
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
            say!(
                "pruned {n} audit event(s) older than {}",
                humantime::format_duration(cfg.audit.retention)
            );
        }
    }
    Ok(())
}
