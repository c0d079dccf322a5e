//! How every statement reaches Postgres: nothing is kept on the server
//! session, so the store works the same through a pooler in transaction
//! mode (PgBouncer, PgCat), which hands the server connection to another
//! client at every transaction's end.
//!
//! * **Unnamed statements only.** tokio-postgres' `query(&str)` prepares a
//!   *named* statement and binds it in a second message; through a pooler
//!   the two can reach different server connections, and a name left
//!   behind on one collides with another client's (rust-postgres#959,
//!   PgBouncer before 1.21). [`Db`] sends each statement as Parse, Bind and
//!   Execute of the unnamed statement in one round trip (`query_typed`),
//!   its parameter types given by [`Typed`], so no statement outlives its
//!   message and nothing is cached per connection (deadpool's statement
//!   cache is never used).
//! * **No session settings.** No startup `options` (PgBouncer refuses
//!   them) and no `SET`: every unit of work is a transaction that opens
//!   with [`local_settings`] (`SET LOCAL search_path`, `SET LOCAL
//!   statement_timeout`), which end with it.
//!
//! The request path's statements (lookups, `last_used_at`, stats) are the
//! exception while no pooler is between (`postgres.pooler = "none"`): an
//! unnamed statement is planned anew every time (about 1 ms of database
//! CPU for a lookup), so on authgate's own sessions they stay prepared by
//! name, with the schema and timeout as startup options. Behind a pooler
//! (`"transaction"`) they are unnamed too, and a lookup sends its
//! transaction's four messages at once ([`pipelined`]): one round trip.

use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, Row};

use crate::config::PostgresConfig;

/// A Rust value's Postgres type, so an unnamed statement can declare its
/// parameters (the server then needs no round trip to describe them).
pub trait Typed {
    const TYPE: Type;
    /// The type of an array of these.
    const ARRAY: Type;
}

macro_rules! typed {
    ($($t:ty => $one:ident, $many:ident;)*) => {
        $(impl Typed for $t {
            const TYPE: Type = Type::$one;
            const ARRAY: Type = Type::$many;
        })*
    };
}

typed! {
    bool => BOOL, BOOL_ARRAY;
    i16 => INT2, INT2_ARRAY;
    i32 => INT4, INT4_ARRAY;
    i64 => INT8, INT8_ARRAY;
    String => TEXT, TEXT_ARRAY;
    SystemTime => TIMESTAMPTZ, TIMESTAMPTZ_ARRAY;
    IpAddr => INET, INET_ARRAY;
    serde_json::Value => JSONB, JSONB_ARRAY;
}

impl Typed for &str {
    const TYPE: Type = Type::TEXT;
    const ARRAY: Type = Type::TEXT_ARRAY;
}

impl<T: Typed> Typed for &T {
    const TYPE: Type = T::TYPE;
    const ARRAY: Type = T::ARRAY;
}

impl<T: Typed> Typed for Option<T> {
    const TYPE: Type = T::TYPE;
    const ARRAY: Type = T::ARRAY;
}

impl<T: Typed> Typed for Vec<T> {
    const TYPE: Type = T::ARRAY;
    const ARRAY: Type = T::ARRAY;
}

impl<T: Typed> Typed for &[T] {
    const TYPE: Type = T::ARRAY;
    const ARRAY: Type = T::ARRAY;
}

impl<T: Typed, const N: usize> Typed for [T; N] {
    const TYPE: Type = T::ARRAY;
    const ARRAY: Type = T::ARRAY;
}

/// A statement parameter: a value and its declared type.
pub trait Param: Sync {
    fn sql(&self) -> &(dyn ToSql + Sync);
    fn pg_type(&self) -> Type;
}

impl<T: Typed + ToSql + Sync> Param for T {
    fn sql(&self) -> &(dyn ToSql + Sync) {
        self
    }
    fn pg_type(&self) -> Type {
        T::TYPE
    }
}

/// What `query_typed` takes.
fn typed<'a>(params: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.sql(), p.pg_type())).collect()
}

/// A connection or transaction that runs unnamed statements.
pub trait Db: Sync {
    /// Every row.
    fn rows<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a;
    /// Exactly one row.
    fn one<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<Row, Error>> + Send + 'a;
    /// At most one row.
    fn opt<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a;
    /// The rows it changed.
    fn exec<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
}

macro_rules! db {
    ($($t:ty => $inner:ty;)*) => {
        $(impl Db for $t {
            async fn rows<'a>(&'a self, sql: &'a str, params: &'a [&'a dyn Param]) -> Result<Vec<Row>, Error> {
                let c: &$inner = self;
                c.query_typed(sql, &typed(params)).await
            }
            async fn one<'a>(&'a self, sql: &'a str, params: &'a [&'a dyn Param]) -> Result<Row, Error> {
                let c: &$inner = self;
                c.query_typed_one(sql, &typed(params)).await
            }
            async fn opt<'a>(&'a self, sql: &'a str, params: &'a [&'a dyn Param]) -> Result<Option<Row>, Error> {
                let c: &$inner = self;
                c.query_typed_opt(sql, &typed(params)).await
            }
            async fn exec<'a>(&'a self, sql: &'a str, params: &'a [&'a dyn Param]) -> Result<u64, Error> {
                let c: &$inner = self;
                c.execute_typed(sql, &typed(params)).await
            }
        })*
    };
}

db! {
    tokio_postgres::Client => tokio_postgres::Client;
    tokio_postgres::Transaction<'_> => tokio_postgres::Transaction<'_>;
    deadpool_postgres::Object => tokio_postgres::Client;
    deadpool_postgres::ClientWrapper => tokio_postgres::Client;
    deadpool_postgres::Transaction<'_> => tokio_postgres::Transaction<'_>;
}

/// What every transaction opens with: the schema its statements name
/// unqualified, and the server's own bound on each statement.
pub fn local_settings(schema: &str, timeout: Duration) -> String {
    format!(
        "SET LOCAL search_path TO \"{schema}\"; SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    )
}

/// [`local_settings`] of a config.
pub fn settings_of(cfg: &PostgresConfig) -> String {
    local_settings(&cfg.schema, cfg.query_timeout)
}

/// A transaction on a connection of its own (not the pool's), opened
/// with the local settings of `cfg`.
pub async fn begin_on<'c>(
    client: &'c mut tokio_postgres::Client,
    cfg: &PostgresConfig,
) -> Result<tokio_postgres::Transaction<'c>, Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&settings_of(cfg)).await?;
    Ok(tx)
}

/// One statement in a transaction of its own, opened with `settings`:
/// `BEGIN; SET LOCAL ...`, the statement, `COMMIT` sent together, so it
/// costs one round trip. A failed statement's `COMMIT` rolls back.
pub async fn pipelined<T, F>(
    client: &tokio_postgres::Client,
    settings: &str,
    statement: F,
) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let begin = format!("BEGIN; {settings}");
    let (opened, result, committed) = tokio::join!(
        client.batch_execute(&begin),
        statement,
        client.batch_execute("COMMIT")
    );
    opened?;
    let value = result?;
    committed?;
    Ok(value)
}
