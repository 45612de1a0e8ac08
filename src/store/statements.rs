//! The statements every deployment write runs, written out once and run without
//! SeaORM's query builder.
//!
//! A create, an approval, a start and its guards run a dozen of these per write inside
//! the writer, and building each one's text and values through SeaORM, then handing its
//! rows back as value maps read by column name, was a quarter of the writer thread's CPU
//! under W1 (BENCHMARKS.md). Here each statement's text is a constant, its values are
//! bound as they are (no owned copies), and its rows are read by position:
//!
//! - on the writer's own SQLite connection (`Direct`), straight from SQLite's row;
//! - on any other connection (sqlx's SQLite pool, PostgreSQL), through SeaORM's raw
//!   statements, with the PostgreSQL text made from the SQLite text once
//!   (`sql::postgres_text`).
//!
//! The texts are public so that the benchmark's raw-SQLite limit (W5) runs exactly these.

use std::future::Future;
use std::sync::OnceLock;

use sea_orm::sea_query::Value;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, QueryResult,
    Statement,
};

use super::StoreError;

/// A statement's text, in SQLite's dialect, and PostgreSQL's made from it when first used.
pub struct Sql {
    sqlite: &'static str,
    postgres: OnceLock<String>,
}

impl Sql {
    pub const fn new(sqlite: &'static str) -> Self {
        Self {
            sqlite,
            postgres: OnceLock::new(),
        }
    }

    /// The text SQLite runs (`?` placeholders).
    pub fn sqlite(&self) -> &'static str {
        self.sqlite
    }

    fn text(&self, backend: DbBackend) -> &str {
        match backend {
            DbBackend::Postgres => self
                .postgres
                .get_or_init(|| super::sql::postgres_text(self.sqlite)),
            _ => self.sqlite,
        }
    }
}

/// A value bound to a placeholder, borrowed from the write it belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    MaybeInt(Option<i64>),
}

impl Bind<'_> {
    fn value(self) -> Value {
        match self {
            Bind::Text(s) => Value::String(Some(s.to_owned())),
            Bind::MaybeText(s) => Value::String(s.map(str::to_owned)),
            Bind::Int(i) => Value::BigInt(Some(i)),
            Bind::MaybeInt(i) => Value::BigInt(i),
        }
    }
}

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Bind::Text(s) | Bind::MaybeText(Some(s)) => ValueRef::Text(s.as_bytes()),
            Bind::Int(i) | Bind::MaybeInt(Some(i)) => ValueRef::Integer(i),
            Bind::MaybeText(None) | Bind::MaybeInt(None) => ValueRef::Null,
        }))
    }
}

/// A result row, read by column position.
pub(super) trait Columns {
    fn text(&self, at: usize) -> Result<String, StoreError>;
    fn maybe_text(&self, at: usize) -> Result<Option<String>, StoreError>;
    fn int(&self, at: usize) -> Result<i64, StoreError>;
    fn maybe_int(&self, at: usize) -> Result<Option<i64>, StoreError>;
}

impl Columns for QueryResult {
    fn text(&self, at: usize) -> Result<String, StoreError> {
        Ok(self.try_get_by_index(at)?)
    }
    fn maybe_text(&self, at: usize) -> Result<Option<String>, StoreError> {
        Ok(self.try_get_by_index(at)?)
    }
    fn int(&self, at: usize) -> Result<i64, StoreError> {
        Ok(self.try_get_by_index(at)?)
    }
    fn maybe_int(&self, at: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get_by_index(at)?)
    }
}

/// A connection that runs these statements: the writer's own, or any SeaORM connection.
pub(super) trait Run: ConnectionTrait {
    /// Runs a statement that answers no rows; answers how many rows it changed.
    fn change(
        &self,
        sql: &Sql,
        binds: &[Bind<'_>],
    ) -> impl Future<Output = Result<u64, DbErr>> + Send;

    /// Runs a query and reads each of its rows (at most `limit`) with `read`.
    fn rows<T: Send>(
        &self,
        sql: &Sql,
        binds: &[Bind<'_>],
        limit: Option<usize>,
        read: impl FnMut(&dyn Columns) -> Result<T, StoreError> + Send,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send;

    /// The first row of a query, if there is one.
    fn row<T: Send>(
        &self,
        sql: &Sql,
        binds: &[Bind<'_>],
        read: impl FnMut(&dyn Columns) -> Result<T, StoreError> + Send,
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send {
        async move { Ok(self.rows(sql, binds, Some(1), read).await?.pop()) }
    }
}

fn statement(conn: &impl ConnectionTrait, sql: &Sql, binds: &[Bind<'_>]) -> Statement {
    let backend = conn.get_database_backend();
    Statement::from_sql_and_values(backend, sql.text(backend), binds.iter().map(|b| b.value()))
}

async fn change_through(
    conn: &impl ConnectionTrait,
    sql: &Sql,
    binds: &[Bind<'_>],
) -> Result<u64, DbErr> {
    Ok(conn
        .execute_raw(statement(conn, sql, binds))
        .await?
        .rows_affected())
}

async fn rows_through<T>(
    conn: &impl ConnectionTrait,
    sql: &Sql,
    binds: &[Bind<'_>],
    limit: Option<usize>,
    mut read: impl FnMut(&dyn Columns) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let found = match limit {
        Some(1) => conn
            .query_one_raw(statement(conn, sql, binds))
            .await?
            .into_iter()
            .collect(),
        _ => conn.query_all_raw(statement(conn, sql, binds)).await?,
    };
    found
        .iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|row| read(row))
        .collect()
}

/// SeaORM's own connections, on either engine.
macro_rules! run_through_sea_orm {
    ($($conn:ty),*) => {$(
        impl Run for $conn {
            async fn change(&self, sql: &Sql, binds: &[Bind<'_>]) -> Result<u64, DbErr> {
                change_through(self, sql, binds).await
            }

            async fn rows<T: Send>(
                &self,
                sql: &Sql,
                binds: &[Bind<'_>],
                limit: Option<usize>,
                read: impl FnMut(&dyn Columns) -> Result<T, StoreError> + Send,
            ) -> Result<Vec<T>, StoreError> {
                rows_through(self, sql, binds, limit, read).await
            }
        }
    )*};
}

run_through_sea_orm!(DatabaseConnection, DatabaseTransaction);

/// Every column of `deployments`, in the order `rows::deployment_model` reads them.
macro_rules! deployment_columns {
    () => {
        "id, service, environment, version, requester, work_refs, risk, rollback_plan, \
         status, reviewed_by, reviewed_at, created_at, updated_at, idempotency_key, \
         required_approvals, promoted_from, release_notes, started_at, start_deadline"
    };
}

/// Every column of `deployments`, in the order `rows::deployment_model` reads them.
pub(super) const DEPLOYMENT_COLUMNS: &str = deployment_columns!();

/// A deployment by id.
pub static DEPLOYMENT: Sql = Sql::new(concat!(
    "SELECT ",
    deployment_columns!(),
    " FROM deployments WHERE id = ?"
));

/// A new deployment: its columns in `deployment_columns!` order.
pub static INSERT_DEPLOYMENT: Sql = Sql::new(concat!(
    "INSERT INTO deployments (",
    deployment_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
));

/// A transition's compare-and-set: the new status and times, if the status is still
/// the one the transition was decided on.
pub static UPDATE_STATUS: Sql = Sql::new(
    "UPDATE deployments SET status = ?, reviewed_by = ?, reviewed_at = ?, updated_at = ?, \
     started_at = ?, start_deadline = ? WHERE id = ? AND status = ?",
);

/// A new event; answers its sequence number.
pub static INSERT_EVENT: Sql = Sql::new(
    "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
     note, from_status, to_status, occurred_at, overrides) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
);

/// Who approved a deployment, in order: its events, one step down their deployment's
/// index. Without table statistics SQLite would rather walk `deployment_events_by_kind`,
/// every APPROVED event there is.
pub static APPROVERS: Sql = Sql::new(
    "SELECT actor FROM deployment_events INDEXED BY deployment_events_by_deployment \
     WHERE deployment_id = ? AND kind = 'APPROVED' ORDER BY seq",
);

/// The STARTED deployment of a service in an environment, other than the given one: one
/// step down `deployments_one_started`.
pub static OTHER_STARTED: Sql = Sql::new(
    "SELECT id FROM deployments WHERE service = ? AND environment = ? \
     AND status = 'STARTED' AND id <> ? LIMIT 1",
);

/// The newest SUCCEEDED deployment of a service in an environment created after the
/// given (created_at, id).
pub static NEWER_SUCCEEDED: Sql = Sql::new(
    "SELECT id FROM deployments WHERE service = ? AND environment = ? \
     AND status = 'SUCCEEDED' AND (created_at, id) > (?, ?) \
     ORDER BY created_at DESC, id DESC LIMIT 1",
);

/// An environment by name, its columns in `environments::model` order.
pub static ENVIRONMENT: Sql = Sql::new(
    "SELECT name, id, position, tier, required_approvals, start_timeout_seconds, \
     updated_by, updated_at FROM environments WHERE name = ?",
);

/// The start timeout of an environment by name.
pub static START_TIMEOUT: Sql =
    Sql::new("SELECT start_timeout_seconds FROM environments WHERE name = ?");

/// Every column of `freeze_windows`, in the order `freeze::model` reads them.
macro_rules! freeze_columns {
    () => {
        "id, environment, reason, starts_at, ends_at, cron, duration_minutes, time_zone, \
         created_by, created_at, removed_by, removed_at, removal_note"
    };
}

/// The freeze windows not removed that cover one environment, oldest first.
pub static FREEZE_WINDOWS_OF: Sql = Sql::new(concat!(
    "SELECT ",
    freeze_columns!(),
    " FROM freeze_windows WHERE removed_at IS NULL \
     AND (environment IS NULL OR environment = ?) ORDER BY created_at, id"
));

/// Every freeze window not removed, oldest first.
pub static FREEZE_WINDOWS: Sql = Sql::new(concat!(
    "SELECT ",
    freeze_columns!(),
    " FROM freeze_windows WHERE removed_at IS NULL ORDER BY created_at, id"
));

/// Every column of `deployment_targets` but the key's, in the order `outbox::target`
/// reads them.
macro_rules! target_columns {
    () => {
        "service, environment, executor, repository, workflow, workflow_ref, \
         environment_input, ref_input, token_env, url, secret, updated_by, updated_at"
    };
}

/// The deploy target of a service in an environment.
pub static TARGET: Sql = Sql::new(concat!(
    "SELECT ",
    target_columns!(),
    " FROM deployment_targets WHERE service = ? AND environment = ?"
));

/// Every deploy target, by service then environment.
pub static TARGETS: Sql = Sql::new(concat!(
    "SELECT ",
    target_columns!(),
    " FROM deployment_targets ORDER BY service, environment"
));
