//! `authgate explain METHOD TARGET`: how the gateway decides a request, and
//! why (see `crate::explain`), printed as text or, with `--json`, as one
//! JSON object. The key comes from a file or stdin, never the command line
//! (where `ps` would show it), and is never printed.

use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use http::{HeaderMap, Method, Uri};

use super::CliError;
use crate::config::Config;
use crate::explain::{self, Explanation, Question};
use crate::store::Store;

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The request method, as a client sends it (GET, POST, ...).
    pub method: String,
    /// The request target: `/path?query`, or an absolute URL.
    pub target: String,
    /// Read the key (sent as `Authorization: Bearer KEY`) from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "key_stdin")]
    pub key_file: Option<PathBuf>,
    /// Read the key from standard input.
    #[arg(long)]
    pub key_stdin: bool,
    /// The client address the gateway would see (pinned tokens).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub from: IpAddr,
    /// A request header, `Name: value` (repeatable); `Host` defaults to
    /// `localhost`.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A request body (a GraphQL POST's operation is read from it).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn usage(msg: String) -> CliError {
    CliError::Usage(msg)
}

/// The question the arguments ask.
fn question(args: &ExplainArgs) -> Result<Question, CliError> {
    let method = Method::from_bytes(args.method.as_bytes())
        .map_err(|_| usage(format!("`{}` is not an HTTP method", args.method)))?;
    let target: Uri = args
        .target
        .parse()
        .map_err(|e| usage(format!("`{}` is not a request target: {e}", args.target)))?;
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| usage(format!("--header `{h}`: write `Name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| usage(format!("--header `{h}`: not a header name")))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| usage(format!("--header `{h}`: not a header value")))?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) && target.authority().is_none() {
        headers.insert(HOST, HeaderValue::from_static("localhost"));
    }
    if let Some(key) = read_key(args)? {
        let v = HeaderValue::from_str(&format!("Bearer {}", key.trim()))
            .map_err(|_| CliError::Other("the key is not a header value".into()))?;
        headers.insert(AUTHORIZATION, v);
    }
    let body = match &args.body_file {
        Some(p) => Some(Bytes::from(std::fs::read(p).map_err(|e| {
            CliError::Other(format!("cannot read {}: {e}", p.display()))
        })?)),
        None => None,
    };
    Ok(Question {
        method,
        target,
        headers,
        client: args.from,
        body,
    })
}

fn read_key(args: &ExplainArgs) -> Result<Option<zeroize::Zeroizing<String>>, CliError> {
    let mut key = zeroize::Zeroizing::new(String::new());
    if let Some(p) = &args.key_file {
        *key = std::fs::read_to_string(p)
            .map_err(|e| CliError::Other(format!("cannot read {}: {e}", p.display())))?;
    } else if args.key_stdin {
        std::io::stdin()
            .read_to_string(&mut key)
            .map_err(|e| CliError::Other(format!("cannot read standard input: {e}")))?;
    } else {
        return Ok(None);
    }
    if key.trim().is_empty() {
        return Err(CliError::Other(
            "no key given (the file or input is empty)".into(),
        ));
    }
    Ok(Some(key))
}

pub(super) async fn explain_command(cfg: &Config, args: ExplainArgs) -> Result<(), CliError> {
    let q = question(&args)?;
    let store = Store::new(&cfg.postgres)?;
    let gate = explain::dry_gate(cfg, store).await?;
    let e = explain::explain(&gate, q).await;
    if args.json {
        let line = serde_json::to_string(&e).map_err(|e| CliError::Other(e.to_string()))?;
        println!("{}", super::display::json_text(line));
    } else {
        for line in text(&e).lines() {
            say!("{line}");
        }
    }
    Ok(())
}

/// The explanation as text, one fact a line.
fn text(e: &Explanation) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "request    {} {} (from {})",
        e.method, e.target, e.client
    );
    match &e.normal_path {
        Ok(p) => {
            let _ = writeln!(out, "normal     {p}");
        }
        Err(why) => {
            let _ = writeln!(out, "normal     none: {why}");
        }
    }
    if let Some(r) = &e.route {
        let _ = writeln!(
            out,
            "route      {} ({}){}",
            r.class,
            if r.auth_required {
                "token required"
            } else {
                "token optional"
            },
            r.prefix
                .as_deref()
                .map(|p| format!(", prefix {p}"))
                .unwrap_or_default()
        );
        if let Some(rule) = &r.rule {
            let _ = writeln!(out, "rule       {rule}");
        }
        let action = r.action.as_deref().unwrap_or("none");
        let subject = r
            .subject
            .as_deref()
            .map(|s| format!(" on {s}"))
            .unwrap_or_default();
        let _ = writeln!(out, "action     {action}{subject}, from {}", r.mapped_by);
    }
    let verdict = if e.readings.agree {
        "agree"
    } else {
        "DISAGREE (refused with 400)"
    };
    let _ = writeln!(
        out,
        "readings   {} reading(s), {verdict}",
        e.readings.readings.len()
    );
    for r in &e.readings.readings {
        let mark = if r.differs { "  <- differs" } else { "" };
        let _ = writeln!(
            out,
            "           {:?} -> {} {}{mark}",
            r.path,
            r.class,
            r.action.as_deref().unwrap_or("-")
        );
    }
    match &e.token {
        None => {
            let _ = writeln!(out, "token      none found");
        }
        Some(t) => {
            let ty = t.token_type.map(|t| format!(" {t}")).unwrap_or_default();
            let expiry = match (&t.expires_at, t.expired) {
                (None, _) => "never expires".to_owned(),
                (Some(at), true) => format!("EXPIRED at {at}"),
                (Some(at), false) => format!("expires {at}"),
            };
            let _ = writeln!(
                out,
                "token      #{} {}{ty} {:?}, {expiry}",
                t.id, t.kind, t.name
            );
            if let Some(o) = &t.owner {
                let who = o
                    .email
                    .as_deref()
                    .map_or("(missing)".to_owned(), |e| format!("{e:?}"));
                let _ = writeln!(
                    out,
                    "owner      {who}{}{}",
                    if o.active { "" } else { ", deactivated" },
                    if o.blocked { ", blocked" } else { "" }
                );
            }
            if !t.networks.is_empty() {
                let _ = writeln!(out, "networks   {}", t.networks.join(", "));
            }
        }
    }
    let d = &e.decision;
    let line = match (d.decision, d.status) {
        ("allow", _) => "allow: forwarded with identity".to_owned(),
        ("pass", _) => "pass: forwarded without identity (the CMS decides)".to_owned(),
        (kind, Some(status)) => format!(
            "{kind}: {status} {} \"{}\" ({})",
            d.name.unwrap_or(""),
            d.message.unwrap_or(""),
            d.reason.unwrap_or("")
        ),
        (kind, None) => kind.to_owned(),
    };
    for note in &e.notes {
        let _ = writeln!(out, "note       {note}");
    }
    let _ = writeln!(out, "decision   {line}");
    if d.decision == "would_deny" {
        let _ = writeln!(
            out,
            "           report mode: forwarded without identity instead"
        );
    }
    out
}
