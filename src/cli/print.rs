//! How the commands print tokens and users: a table or labelled lines for
//! people, one JSON object a line with `--json`.

use std::time::SystemTime;

use serde_json::json;

use super::display::json_line;
use crate::model::ContentApiType;
use crate::store::admin::{TokenRow, UserRow};

/// `token list`: a table, or one JSON object a line.
pub(super) fn print_token_list(rows: &[TokenRow], json: bool) {
    if json {
        for t in rows {
            println!("{}", json_line(&token_json(t, None)));
        }
    } else {
        say!(
            "{:<6} {:<12} {:<28} {:<12} {:<24} {:<20} {:<20}",
            "ID",
            "KIND",
            "NAME",
            "TYPE",
            "OWNER",
            "EXPIRES",
            "LAST USED"
        );
        for t in rows {
            let d = |t: Option<SystemTime>, none: &str| {
                t.map_or(none.to_owned(), |t| {
                    humantime::format_rfc3339_seconds(t).to_string()
                })
            };
            say!(
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

pub(super) fn print_token(t: &TokenRow, key: Option<&str>, as_json: bool) {
    if as_json {
        println!("{}", json_line(&token_json(t, key)));
        return;
    }
    say!("id:          {}", t.id);
    say!("kind:        {}", t.kind);
    say!("name:        {}", t.name);
    if !t.description.is_empty() {
        say!("description: {}", t.description);
    }
    if let Some(ty) = t.token_type {
        say!("type:        {ty}");
    }
    if let Some(o) = &t.owner_email {
        say!("owner:       {o}");
    }
    let fmt = |t: Option<SystemTime>, none: &str| {
        t.map_or(none.to_owned(), |t| {
            humantime::format_rfc3339_seconds(t).to_string()
        })
    };
    say!("expires:     {}", fmt(t.expires_at, "never"));
    if let Some(at) = t.old_key_expires_at {
        say!("old key:     works until {}", fmt(Some(at), "-"));
    }
    say!("last used:   {}", fmt(t.last_used_at, "never"));
    say!("created:     {}", fmt(Some(t.created_at), "-"));
    if !t.permissions.is_empty() {
        say!("permissions: {}", join(&t.permissions));
    }
    if !t.allowed_cidrs.is_empty() {
        say!("networks:    {}", join(&t.allowed_cidrs));
    }
    if let Some(k) = key {
        say!("key:         {k}");
    }
}

fn join<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn user_json(u: &UserRow) -> serde_json::Value {
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

/// `user list`: a table, or one JSON object a line.
pub(super) fn print_user_list(users: &[UserRow], json: bool) {
    for u in users {
        if json {
            println!("{}", json_line(&user_json(u)));
        } else {
            let status = match (u.is_active, u.blocked) {
                (_, true) => "blocked",
                (false, _) => "inactive",
                _ => "active",
            };
            say!(
                "{:<6} {:<32} {:<9} {}",
                u.id,
                u.email,
                status,
                u.roles.join(",")
            );
        }
    }
}
