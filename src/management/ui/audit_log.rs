//! The "Audit log" tab: the events of `GET /admin/audit-logs`, with the
//! same filters (action, actor, since), pages of 25, and a detail view of
//! one event. Reading needs `admin::audit-logs.read`, as the API does.

use std::fmt::Write as _;

use http::StatusCode;

use super::{signed_in_page, Ctx, Resp};
use crate::audit::{rfc3339, Event, READ_PERMISSION};
use crate::management::api::AuditQuery;
use crate::management::html::{alert, html, Html, Tab};
use crate::management::State;
use crate::model::Permission;

const TITLE: &str = "Audit log";

fn refused(ctx: &Ctx, status: StatusCode, message: &str) -> Resp {
    let main = html!("<h1>{}</h1>{}", TITLE, alert("error", message));
    signed_in_page(ctx, Tab::AuditLog, status, TITLE, main)
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
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut main = html!(
        r#"<div class="page-head"><div><h1>{}</h1><p class="lead">Every management action on tokens, users and roles, from every way in, in a tamper-evident chain (<code>authgate audit verify</code>).</p></div></div>
<form class="filters" method="get" action="/audit-log" role="search" aria-label="Filter the audit log">
<div class="field"><label for="f-action">Action</label><input type="text" id="f-action" name="action" value="{}" placeholder="api-token.regenerate"></div>
<div class="field"><label for="f-actor">Actor</label><input type="text" id="f-actor" name="actor" value="{}" placeholder="email or operator"></div>
<div class="field"><label for="f-since">Since</label><input type="text" id="f-since" name="since" value="{}" placeholder="24h, 7d"></div>
<div class="form-actions"><button type="submit" class="button">Filter</button></div>
</form>
<div class="table-wrap"><table class="tokens audit">
<caption class="visually-hidden">{}</caption>
<thead><tr><th scope="col">When</th><th scope="col">Action</th><th scope="col">Actor</th><th scope="col">Via</th><th scope="col">Target</th></tr></thead>
<tbody>
"#,
        TITLE,
        value(&q.action),
        value(&q.actor),
        value(&q.since),
        TITLE
    );
    if events.is_empty() {
        main.push(Html::lit(
            r#"<tr><td colspan="5" class="empty">No events match.</td></tr>"#,
        ));
    }
    for e in &events {
        let at = rfc3339(e.at);
        main.push(html!(
            r#"<tr><td data-label="When"><a href="/audit-log/{}"><time datetime="{}">{}</time></a></td><th scope="row" data-label="Action">{}</th><td data-label="Actor">{}</td><td data-label="Via">{}</td><td data-label="Target">{}</td></tr>
"#,
            e.id,
            at,
            at,
            e.action,
            e.actor,
            e.via,
            target(e)
        ));
    }
    main.push(Html::lit("</tbody></table></div>\n"));
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
            html!(r#"<a class="button small" href="{}">{}</a>"#, href, label)
        };
        main.push(html!(
            r#"<nav class="pager" aria-label="Pages"><span>Page {} of {} ({} events)</span> "#,
            q.page,
            pages,
            total
        ));
        if q.page > 1 {
            main.push(link(q.page - 1, "Newer"));
        }
        if q.page < pages {
            main.push(link(q.page + 1, "Older"));
        }
        main.push(Html::lit("</nav>\n"));
    }
    signed_in_page(ctx, Tab::AuditLog, StatusCode::OK, TITLE, main)
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
    let at = rfc3339(e.at);
    let mut main = html!(
        r#"<p><a href="/audit-log">← Audit log</a></p><h1>Event {}: {}</h1>
<dl class="facts">
<dt>When</dt><dd><time datetime="{}">{}</time></dd>
<dt>Actor</dt><dd>{}</dd>
<dt>Via</dt><dd>{}</dd>
<dt>Target</dt><dd>{}</dd>
<dt>Request id</dt><dd>{}</dd>
<dt>Client's request id (as sent, unverified)</dt><dd>{}</dd>
<dt>Client address</dt><dd>{}</dd>
<dt>Hash</dt><dd><code class="hash">{}</code></dd>
</dl>
<h2>Changes</h2>
"#,
        e.id,
        e.action,
        at,
        at,
        e.actor,
        e.via,
        target(&e),
        e.request_id.as_deref().unwrap_or("—"),
        e.client_request_id.as_deref().unwrap_or("—"),
        e.client_ip.as_deref().unwrap_or("—"),
        e.hash
    );
    let changes = e.changes.as_object().filter(|m| !m.is_empty());
    match changes {
        None => main.push(Html::lit(r#"<p class="muted">No field changed.</p>"#)),
        Some(m) => {
            main.push(Html::lit(
                r#"<div class="table-wrap"><table class="tokens changes"><thead><tr><th scope="col">Field</th><th scope="col">Before</th><th scope="col">After</th></tr></thead><tbody>"#,
            ));
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
                main.push(html!(
                    r#"<tr><th scope="row" data-label="Field">{}</th><td data-label="Before">{}</td><td data-label="After">{}</td></tr>"#,
                    field,
                    before,
                    after
                ));
            }
            main.push(Html::lit("</tbody></table></div>\n"));
        }
    }
    signed_in_page(ctx, Tab::AuditLog, StatusCode::OK, TITLE, main)
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
