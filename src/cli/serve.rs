//! `serve`, `migrate` and `check-config`: the commands that start the
//! gateway or prepare and check what it runs on.

use std::path::{Path, PathBuf};

use super::CliError;
use crate::config::{Config, Layout};
use crate::store;

pub(super) fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse()
}

pub(super) async fn serve(cfg: Config, path: PathBuf) -> Result<(), CliError> {
    let layout = cfg.postgres.layout;
    let server = crate::server::Server::bind(cfg).await?;
    tracing::info!(listen = %server.local_addr(), metrics = ?server.metrics_addr(), management = ?server.management_addr(), decision = ?server.decision_addr(), config = %path.display(), %layout, "authgate started");
    let reloader = crate::reload::Reloader::new(
        path,
        server.metrics(),
        server.policy(),
        server.tls_acceptors(),
    );
    server.run(crate::reload::shutdown_signal(reloader)).await?;
    Ok(())
}

/// `check-config`: print the config, secrets redacted; when the tables are
/// another program's (the strapi5 layout), look at the database too.
pub(super) fn check_config(cfg: &Config, path: &Path) -> Result<(), CliError> {
    print!("{}", cfg.to_redacted_toml());
    say_err!("config {} is valid", path.display());
    if !store::capabilities(&cfg.postgres).owns_schema {
        super::runtime(1)?.block_on(check_strapi5(cfg));
    }
    Ok(())
}

/// `migrate`: create or upgrade the schema; when the tables are another
/// program's (the strapi5 layout), install authgate's triggers on them.
pub(super) async fn migrate(cfg: &Config) -> Result<(), CliError> {
    let applied = store::migrate(&cfg.postgres).await?;
    if !store::capabilities(&cfg.postgres).owns_schema {
        let schema = &cfg.postgres.schema;
        let functions = store::strapi5::FUNCTIONS_SCHEMA;
        if applied.is_empty() {
            say!("strapi5 layout: authgate's triggers on schema `{schema}` are up to date (functions in schema `{functions}`)");
        } else {
            say!("strapi5 layout: installed authgate's invalidation triggers on Strapi's tables in schema `{schema}` (functions in schema `{functions}`); Strapi's data was not touched");
        }
        return Ok(());
    }
    if applied.is_empty() {
        say!("schema `{}` is up to date", cfg.postgres.schema);
    } else {
        let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
        say!(
            "schema `{}`: applied migrations {}",
            cfg.postgres.schema,
            list.join(", ")
        );
    }
    Ok(())
}

/// `check-config` in the strapi5 layout: look at the database too, best
/// effort and briefly. Problems are warnings: the config itself is valid.
async fn check_strapi5(cfg: &Config) {
    let mut pg = cfg.postgres.clone();
    let bound = pg.connect_timeout.min(std::time::Duration::from_secs(3));
    pg.connect_timeout = bound;
    let looked = tokio::time::timeout(bound * 2, async {
        let mut client = store::connect(&pg).await?;
        let found = store::strapi5::inspect(&client, &pg.schema).await?;
        let types = if found.missing_tables.is_empty() {
            let tx = store::sql::begin_on(&mut client, &pg).await?;
            Some(crate::strapi5_sync::read_content_types(&tx).await)
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
                    say_err!("{line}");
                }
            }
            let warnings = store::strapi5::warnings(&pg.schema, &found);
            for w in &warnings {
                say_err!("authgate: warning: {w}");
            }
            if warnings.is_empty() {
                say_err!(
                    "strapi5 layout: Strapi's tables in schema `{}` are indexed and announce changes",
                    pg.schema
                );
            }
        }
        Ok(Err(e)) if e.is_unavailable() => say_err!(
            "authgate: note: could not reach the database at {} to check Strapi's tables: {e}",
            pg.url.redacted()
        ),
        Ok(Err(e)) => say_err!("authgate: note: could not check Strapi's tables: {e}"),
        Err(_) => say_err!(
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
