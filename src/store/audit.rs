//! The audit table (`audit_events`, see [`crate::audit`]): appending inside
//! a write's transaction, reading, and the retention job.
//!
//! Ids come from the table's sequence (`audit_events_id_seq`), taken under
//! the chain lock, so they only grow and never restart. The table's
//! trigger lets a row be deleted only once a checkpoint newer than it names
//! it, so the retention job appends its checkpoint first and deletes after.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime};

use deadpool_postgres::Transaction;

use crate::store::sql::Db;
use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use super::rows::{columns, Col, TokenRow, UserRow};
use super::{Store, StoreError};
use crate::audit::{self, changes, rfc3339, AuditCtx, Draft, Event, Target, CHECKPOINT, GENESIS};
use crate::model::{ContentApiType, Permission, TokenKind};

/// Serialises appends to a chain (`table`) until the transaction ends.
async fn lock(tx: &impl Db, table: &str) -> Result<(), StoreError> {
    tx.exec(
        "SELECT pg_advisory_xact_lock(hashtext('authgate.audit'), ($1::text::regclass::oid::bigint % 2147483647)::int)",
        &[&table],
    )
    .await?;
    Ok(())
}

const COLUMNS: &str = "id, at, action, actor, via, target_kind, target_id, target_name, changes,
    request_id, client_request_id, client_ip, prev_hash, hash";

fn event(row: &tokio_postgres::Row) -> Result<Event, StoreError> {
    Ok(columns!(row => Event {
        id, at, action, actor, via, target_kind, target_id, target_name, changes, request_id,
        client_request_id, client_ip, prev_hash, hash;
    }))
}

/// Append `draft` as the next event of the chain, in the caller's
/// transaction (so it commits or rolls back with the change). Holds the
/// chain lock until that transaction ends; call it last, and
/// [`Event::log`] the event once the transaction has committed.
pub(super) async fn append(
    tx: &impl Db,
    table: &str,
    ctx: &AuditCtx,
    draft: Draft,
) -> Result<Event, StoreError> {
    lock(tx, table).await?;
    let last = tx
        .opt(
            &format!("SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1"),
            &[],
        )
        .await?;
    let (newest, prev) = match &last {
        Some(r) => (r.col::<_, i64>(0)?, r.col::<_, String>(1)?),
        None => (0, GENESIS.to_owned()),
    };
    // The next id from the sequence; past the newest row whatever the
    // sequence says (a table filled before it existed, or by hand).
    let id: i64 = tx
        .one(
            "SELECT CASE WHEN n > $2 THEN n ELSE setval($1::text::regclass, $2 + 1) END
             FROM (SELECT nextval($1::text::regclass) AS n) s",
            &[&format!("{table}_id_seq"), &newest],
        )
        .await?
        .col(0)?;
    let e = Event::seal(id, SystemTime::now(), draft, ctx, &prev);
    tx.exec(
        &format!(
            "INSERT INTO {table} (id, at, action, actor, via, target_kind, target_id, target_name,
                                   changes, request_id, client_request_id, client_ip, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ),
        &[
            &e.id,
            &e.at,
            &e.action,
            &e.actor,
            &e.via,
            &e.target_kind,
            &e.target_id,
            &e.target_name,
            &e.changes,
            &e.request_id,
            &e.client_request_id,
            &e.client_ip,
            &e.prev_hash,
            &e.hash,
        ],
    )
    .await?;
    Ok(e)
}

/// How a management write ends ([`Store::audited`]).
pub(super) enum Outcome<T> {
    /// Commit and answer `T`, recording the draft as the write's one audit
    /// event (`None`: nothing an audit records changed, so no event).
    Commit(T, Option<Draft>),
    /// Nothing to write (the row is not there): roll back, answer `T`.
    Rollback(T),
}

/// Bounds the transaction's borrow `'t` by the write's own borrows `'a`,
/// so the closure given to [`Store::audited`] may use its caller's
/// arguments: ignore it (`|tx, _|`).
pub(super) struct Borrows<'t, 'a>(PhantomData<&'t &'a ()>);

impl Store {
    /// The one shape of every management write: a transaction on a pooled
    /// connection, in which `write` makes the change and says what to
    /// record. The event is appended last, under the chain lock (held until
    /// the transaction ends), the transaction is committed, and only then
    /// is the event logged (one structured line, target `authgate::audit`):
    /// never a line for an event that did not commit. A write that fails,
    /// or finds nothing to do, is rolled back at once.
    pub(super) async fn audited<'a, T, F>(&self, ctx: &AuditCtx, write: F) -> Result<T, StoreError>
    where
        F: for<'t> FnOnce(
            &'t Transaction<'t>,
            Borrows<'t, 'a>,
        ) -> BoxFuture<'t, Result<Outcome<T>, StoreError>>,
    {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        match write(&tx, Borrows(PhantomData)).await {
            Ok(Outcome::Commit(value, draft)) => {
                let event = match draft {
                    Some(d) => Some(append(&tx, self.audit_table(), ctx, d).await?),
                    None => None,
                };
                tx.commit().await?;
                event.iter().for_each(Event::log);
                Ok(value)
            }
            Ok(Outcome::Rollback(value)) => {
                tx.rollback().await?;
                Ok(value)
            }
            Err(e) => {
                // The write's own error is the one to report; a rollback
                // that fails too means the connection is gone, and the
                // transaction with it.
                if let Err(r) = tx.rollback().await {
                    tracing::debug!(error = %r, "rollback after a failed write");
                }
                Err(e)
            }
        }
    }
}

// ----- what audit events record of each row ---------------------------------

pub(super) fn perms_json(perms: &[Permission]) -> Value {
    let mut v: Vec<String> = perms.iter().map(ToString::to_string).collect();
    v.sort();
    json!(v)
}

/// The audited fields of a token (never its key, hash or encrypted key).
pub(super) fn token_fields(t: Option<&TokenRow>) -> [(&'static str, Value); 7] {
    let f = |g: &dyn Fn(&TokenRow) -> Value| t.map_or(Value::Null, g);
    [
        ("name", f(&|t| json!(t.name))),
        ("description", f(&|t| json!(t.description))),
        (
            "type",
            f(&|t| json!(t.token_type.map(ContentApiType::as_str))),
        ),
        ("permissions", f(&|t| perms_json(&t.permissions))),
        ("expiry", f(&|t| json!(t.expires_at.map(rfc3339)))),
        ("owner", f(&|t| json!(t.owner_email))),
        (
            "allowed_cidrs",
            f(&|t| json!(super::rows::cidr_texts(&t.allowed_cidrs))),
        ),
    ]
}

/// `before -> after` of the audited fields of two versions of a row.
pub(super) fn diff<const N: usize>(
    before: [(&'static str, Value); N],
    after: [(&'static str, Value); N],
) -> Value {
    let fields: Vec<(&str, Value, Value)> = before
        .into_iter()
        .zip(after)
        .map(|((name, b), (_, a))| (name, b, a))
        .collect();
    changes(&fields)
}

fn token_target(t: &TokenRow) -> Target {
    Target {
        kind: match t.kind {
            TokenKind::ContentApi => "api-token",
            TokenKind::Admin => "admin-token",
        },
        id: t.id,
        name: t.name.clone(),
    }
}

/// `api-token.<verb>` or `admin-token.<verb>`.
pub(crate) fn token_draft(t: &TokenRow, verb: &str, changes: Value) -> Draft {
    let target = token_target(t);
    Draft {
        action: format!("{}.{verb}", target.kind),
        target,
        changes,
    }
}

fn status(u: &UserRow) -> &'static str {
    match (u.is_active, u.blocked) {
        (_, true) => "blocked",
        (true, false) => "active",
        (false, false) => "inactive",
    }
}

pub(super) fn user_fields(u: Option<&UserRow>) -> [(&'static str, Value); 4] {
    let f = |g: &dyn Fn(&UserRow) -> Value| u.map_or(Value::Null, g);
    [
        ("email", f(&|u| json!(u.email))),
        ("name", f(&|u| json!(u.name))),
        ("status", f(&|u| json!(status(u)))),
        ("roles", f(&|u| json!(u.roles))),
    ]
}

pub(super) fn user_draft(u: &UserRow, verb: &str, changes: Value) -> Draft {
    Draft {
        action: format!("user.{verb}"),
        target: Target {
            kind: "user",
            id: u.id,
            name: u.email.clone(),
        },
        changes,
    }
}

pub(super) fn role_draft(id: i64, name: &str, verb: &str, changes: Value) -> Draft {
    Draft {
        action: format!("role.{verb}"),
        target: Target {
            kind: "role",
            id,
            name: name.to_owned(),
        },
        changes,
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<SystemTime>,
    pub action: Option<String>,
    pub actor: Option<String>,
}

impl Store {
    /// Record an event that is its own change (a key shown again).
    pub async fn record(&self, ctx: &AuditCtx, draft: Draft) -> Result<Event, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let table = self.audit_table();
        let exists: bool = tx
            .one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await?
            .col(0)?;
        if !exists {
            let how = match self.layout() {
                super::Layout::Strapi5 => "run `authgate migrate --layout strapi5` (it creates schema authgate and never touches Strapi's data)",
                super::Layout::Authgate => "run `authgate migrate`",
            };
            return Err(StoreError::Invalid(format!(
                "the audit table {table} is missing, so this cannot be recorded: {how}"
            )));
        }
        let e = append(&tx, table, ctx, draft).await?;
        tx.commit().await?;
        e.log();
        Ok(e)
    }

    /// Events matching `f`, newest first, `limit` from `offset`, and how
    /// many match in all.
    pub async fn audit_events(
        &self,
        f: &AuditFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Event>, i64), StoreError> {
        let mut client = self.client().await?;
        // Read in a transaction of its own: it names the schema.
        let client = self.begin(&mut client).await?;
        const WHERE: &str = "($1::timestamptz IS NULL OR at >= $1)
            AND ($2::text IS NULL OR action = $2)
            AND ($3::text IS NULL OR lower(actor) = lower($3))";
        let params: [&dyn crate::store::sql::Param; 3] = [&f.since, &f.action, &f.actor];
        let total: i64 = client
            .one(
                &format!("SELECT count(*) FROM {} WHERE {WHERE}", self.audit_table()),
                &params,
            )
            .await?
            .col(0)?;
        let rows = client
            .rows(
                &format!(
                    "SELECT {COLUMNS} FROM {} WHERE {WHERE} ORDER BY id DESC LIMIT $4 OFFSET $5",
                    self.audit_table()
                ),
                &[&f.since, &f.action, &f.actor, &limit, &offset],
            )
            .await?;
        let events = rows.iter().map(event).collect::<Result<_, _>>()?;
        Ok((events, total))
    }

    pub async fn audit_event(&self, id: i64) -> Result<Option<Event>, StoreError> {
        let mut client = self.client().await?;
        // Read in a transaction of its own: it names the schema.
        let client = self.begin(&mut client).await?;
        let row = client
            .opt(
                &format!("SELECT {COLUMNS} FROM {} WHERE id = $1", self.audit_table()),
                &[&id],
            )
            .await?;
        row.as_ref().map(event).transpose()
    }

    /// What `audit verify` warns of: a role that can switch the table's
    /// trigger off (a superuser, or a member of the table's owner) can cut
    /// the chain undetected by the table alone; `None` when this role
    /// cannot.
    pub async fn audit_guard(&self) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        let row = tx
            .one(
                "SELECT current_user::text,
                        (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                        pg_has_role(current_user, c.relowner, 'USAGE'),
                        pg_get_userbyid(c.relowner)::text
                 FROM pg_class c WHERE c.oid = $1::text::regclass",
                &[&self.audit_table()],
            )
            .await?;
        tx.commit().await?;
        let (role, superuser, owner, table_owner): (String, bool, bool, String) =
            (row.col(0)?, row.col(1)?, row.col(2)?, row.col(3)?);
        let why = match (superuser, owner) {
            (true, _) => "is a superuser",
            (false, true) => "owns it (or is a member of its owner)",
            (false, false) => return Ok(None),
        };
        Ok(Some(format!(
            "the database role `{role}` {why} and can switch off the trigger that keeps {} append-only (owner `{table_owner}`): run authgate as a role that does not own the schema, and check the chain against a head kept outside the database (--head); see README, Security model",
            self.audit_table()
        )))
    }

    /// The whole chain in id order, for `audit verify`.
    pub async fn audit_chain(&self) -> Result<Vec<Event>, StoreError> {
        let mut client = self.client().await?;
        // Read in a transaction of its own: it names the schema.
        let client = self.begin(&mut client).await?;
        let rows = client
            .rows(
                &format!("SELECT {COLUMNS} FROM {} ORDER BY id", self.audit_table()),
                &[],
            )
            .await?;
        rows.iter().map(event).collect()
    }

    /// The retention job: append a checkpoint naming the cut (the last id to
    /// delete and its hash), then delete the events older than `retention`
    /// up to it, in one transaction under the chain lock. The order is the
    /// trigger's: a row may go only once a newer checkpoint names it.
    /// Returns how many were deleted.
    pub async fn prune_audit(
        &self,
        ctx: &AuditCtx,
        retention: Duration,
    ) -> Result<i64, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let table = self.audit_table();
        let mut client = self.client().await?;
        let tx = self.begin(&mut client).await?;
        // Look before taking the lock: the common answer (nothing to
        // prune) then holds no lock, not even for a moment.
        let due = tx
            .opt(
                &format!("SELECT 1 FROM {table} WHERE at < $1 LIMIT 1"),
                &[&cutoff],
            )
            .await?;
        if due.is_none() {
            tx.commit().await?;
            return Ok(0);
        }
        lock(&tx, table).await?;
        // Never the newest event: the chain's head must stay to append to.
        let cut = tx
            .opt(
                &format!(
                    "SELECT id, hash FROM {table}
                     WHERE at < $1 AND id < (SELECT max(id) FROM {table})
                     ORDER BY id DESC LIMIT 1"
                ),
                &[&cutoff],
            )
            .await?;
        let Some(cut) = cut else {
            // Ended here, not by a drop: the lock must go with it at once.
            tx.rollback().await?;
            return Ok(0);
        };
        let (through, last_hash): (i64, String) = (cut.col(0)?, cut.col(1)?);
        let count: i64 = tx
            .one(
                &format!("SELECT count(*) FROM {table} WHERE id <= $1"),
                &[&through],
            )
            .await?
            .col(0)?;
        let checkpoint = append(
            &tx,
            table,
            ctx,
            Draft {
                action: CHECKPOINT.into(),
                target: Target {
                    kind: "audit",
                    id: through,
                    name: String::new(),
                },
                changes: json!({"pruned_through": through, "last_hash": last_hash, "count": count, "before": audit::rfc3339(cutoff)}),
            },
        )
        .await?;
        let n = tx
            .exec(&format!("DELETE FROM {table} WHERE id <= $1"), &[&through])
            .await?;
        let deleted = i64::try_from(n).unwrap_or(i64::MAX);
        if deleted != count {
            // Someone else's rows in between (the lock makes this
            // impossible for authgate's own writers): do not commit a
            // checkpoint whose count is wrong.
            tx.rollback().await?;
            return Err(StoreError::Invalid(format!(
                "audit retention: expected to delete {count} events, deleted {deleted}"
            )));
        }
        tx.commit().await?;
        checkpoint.log();
        Ok(count)
    }
}

/// How often the retention job runs.
pub const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Prune the audit trail now and every [`RETENTION_EVERY`] until `stop`
/// (every replica runs it; the chain lock makes concurrent runs harmless).
pub async fn retention_job(
    store: Store,
    ctx: AuditCtx,
    retention: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        match store.prune_audit(&ctx, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "audit: pruned events past audit.retention"),
            Err(e) => tracing::warn!(error = %e, "audit: retention job failed; retrying later"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
            _ = &mut stop => return,
        }
    }
}
