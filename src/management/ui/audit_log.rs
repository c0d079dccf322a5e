//! The "Audit log" tab: the events of `GET /admin/audit-logs`, with the
//! same filters (action, actor, since), pages of 25, and a detail view of
//! one event. Reading needs `admin::audit-logs.read`, as the API does.

use std::fmt::Write as _;

use http::StatusCode;

use super::{signed_in_page, Ctx, Resp};
use crate::audit::{rfc3339, Event, READ_PERMISSION};
use crate::management::api::AuditQuery;
use crate::management::html::{alert, esc, Tab};
use crate::management::State;
use crate::model::Permission;

const TITLE: &str = "Audit log";

fn refused(ctx: &Ctx, status: StatusCode, message: &str) -> Resp {
    let main = format!("<h1>{TITLE}</h1>{}", alert("error", message));
    signed_in_page(ctx, Tab::AuditLog, status, TITLE, &main)
}

fn may_read(ctx: &Ctx) -> bool {
    ctx.actor.holds(&Permission::new(READ_PERMISSION, None))
}

fn target(e: &Event) -> String {
    format!("{} {} ({})", e.target_kind, e.target_id, e.target_name)
}

/// `GET /audit-log?action=&actor=&since=&page=`
pub(super) async fn list(state: &State, ctx: &Ctx, query: Option<&str>) -> Resp {
    if !may_read(ctx) {
        return refused(
            ctx,
            StatusCode::FORBIDDEN,
            &format!("Reading the audit log needs the permission {READ_PERMISSION}."),
        );
    }
    let q = match AuditQuery::parse(query) {
        Ok(q) => q,
        Err(e) => return refused(ctx, e.status, &e.message),
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => return refused(ctx, e.status, &e.message),
    };
    let (events, total) = match state
        .store
        .audit_events(&filter, q.page_size, (q.page - 1) * q.page_size)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "management: audit log unavailable");
            return refused(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "The audit log is unavailable right now. Try again in a moment.",
            );
        }
    };
    let value = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    let mut main = String::new();
    let _ = write!(
        main,
        r#"<div class="page-head"><div><h1>{TITLE}</h1><p class="lead">Every management action on tokens, users and roles, from every way in, in a tamper-evident chain (<code>authgate audit verify</code>).</p></div></div>
<form class="filters" method="get" action="/audit-log" role="search" aria-label="Filter the audit log">
<div class="field"><label for="f-action">Action</label><input type="text" id="f-action" name="action" value="{action}" placeholder="api-token.regenerate"></div>
<div class="field"><label for="f-actor">Actor</label><input type="text" id="f-actor" name="actor" value="{actor}" placeholder="email or operator"></div>
<div class="field"><label for="f-since">Since</label><input type="text" id="f-since" name="since" value="{since}" placeholder="24h, 7d"></div>
<div class="form-actions"><button type="submit" class="button">Filter</button></div>
</form>
<div class="table-wrap"><table class="tokens audit">
<caption class="visually-hidden">{TITLE}</caption>
<thead><tr><th scope="col">When</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Via</th><th scope="col">Target</th></tr></thead>
<tbody>
"#,
        action = value(&q.action),
        actor = value(&q.actor),
        since = value(&q.since),
    );
    if events.is_empty() {
        main.push_str(r#"<tr><td colspan="5" class="empty">No events match.</td></tr>"#);
    }
    for e in &events {
        let _ = writeln!(
            main,
            r#"<tr><td data-label="When"><a href="/audit-log/{id}"><time datetime="{at}">{at}</time></a></td><th scope="row" data-label="Action">{action}</th><td data-label="Actor">{actor}</td><td data-label="Via">{via}</td><td data-label="Target">{target}</td></tr>"#,
            id = e.id,
            at = esc(&rfc3339(e.at)),
            action = esc(&e.action),
            actor = esc(&e.actor),
            via = esc(&e.via),
            target = esc(&target(e)),
        );
    }
    main.push_str("</tbody></table></div>\n");
    let pages = (total + q.page_size - 1) / q.page_size;
    if pages > 1 {
        let link = |page: i64, label: &str| {
            let mut href = format!("/audit-log?page={page}");
            for (k, v) in [
                ("action", &q.action),
                ("actor", &q.actor),
                ("since", &q.since),
            ] {
                if let Some(v) = v {
                    let _ = write!(href, "&{k}={}", form_escape(v));
                }
            }
            format!(
                r#"<a class="button small" href="{}">{label}</a>"#,
                esc(&href)
            )
        };
        let _ = write!(
            main,
            r#"<nav class="pager" aria-label="Pages"><span>Page {} of {pages} ({total} events)</span> "#,
            q.page
        );
        if q.page > 1 {
            main.push_str(&link(q.page - 1, "Newer"));
        }
        if q.page < pages {
            main.push_str(&link(q.page + 1, "Older"));
        }
        main.push_str("</nav>\n");
    }
    signed_in_page(ctx, Tab::AuditLog, StatusCode::OK, TITLE, &main)
}

/// `GET /audit-log/:id`
pub(super) async fn detail(state: &State, ctx: &Ctx, id: i64) -> Resp {
    if !may_read(ctx) {
        return refused(
            ctx,
            StatusCode::FORBIDDEN,
            &format!("Reading the audit log needs the permission {READ_PERMISSION}."),
        );
    }
    let e = match state.store.audit_event(id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return refused(
                ctx,
                StatusCode::NOT_FOUND,
                &format!("There is no audit event {id}."),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "management: audit log unavailable");
            return refused(
                ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                "The audit log is unavailable right now. Try again in a moment.",
            );
        }
    };
    let mut main = String::new();
    let _ = write!(
        main,
        r#"<p><a href="/audit-log">← Audit log</a></p><h1>Event {id}: {action}</h1>
<dl class="facts">
<dt>When</dt><dd><time datetime="{at}">{at}</time></dd>
<dt>Actor</dt><dd>{actor}</dd>
<dt>Via</dt><dd>{via}</dd>
<dt>Target</dt><dd>{target}</dd>
<dt>Request id</dt><dd>{rid}</dd>
<dt>Client address</dt><dd>{ip}</dd>
<dt>Hash</dt><dd><code class="hash">{hash}</code></dd>
</dl>
<h2>Changes</h2>
"#,
        id = e.id,
        action = esc(&e.action),
        at = esc(&rfc3339(e.at)),
        actor = esc(&e.actor),
        via = esc(&e.via),
        target = esc(&target(&e)),
        rid = esc(e.request_id.as_deref().unwrap_or("—")),
        ip = esc(e.client_ip.as_deref().unwrap_or("—")),
        hash = esc(&e.hash),
    );
    let changes = e.changes.as_object().filter(|m| !m.is_empty());
    match changes {
        None => main.push_str(r#"<p class="muted">No field changed.</p>"#),
        Some(m) => {
            main.push_str(
                r#"<div class="table-wrap"><table class="tokens changes"><thead><tr><th scope="col">Field</th><th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>"#,
            );
            for (field, v) in m {
                let show = |x: &serde_json::Value| match x {
                    serde_json::Value::Null => "—".to_owned(),
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let (before, after) = match (v.get("before"), v.get("after")) {
                    (Some(b), Some(a)) => (show(b), show(a)),
                    _ => (String::new(), show(v)),
                };
                let _ = write!(
                    main,
                    r#"<tr><th scope="row" data-label="Field">{}</th><td data-label="Before">{}</td><td data-label="After">{}</td></tr>"#,
                    esc(field),
                    esc(&before),
                    esc(&after)
                );
            }
            main.push_str("</tbody></table></div>\n");
        }
    }
    signed_in_page(ctx, Tab::AuditLog, StatusCode::OK, TITLE, &main)
}

/// Percent-encode a query value (everything but unreserved characters).
fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
