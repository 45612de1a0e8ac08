//! The hot reads (a page of deployments, the events of a page) on plain SQLite
//! connections, off the async runtime.
//!
//! Through sqlx, every row of a result is one message from the connection's worker
//! thread to the task that asked, and SeaORM then looks each column up by name: for a
//! dashboard page (50 deployments, 250 events) that was half of the server's CPU
//! (BENCHMARKS.md). Here one blocking task runs the whole statement on a connection of
//! its own and hands back the rows at once: one hop per read. The statements are
//! prepared once per connection and cached.
//!
//! Only reads run here; every write still goes through the writer. The connections are
//! read-only, with the same pragmas as the async readers (WAL, mmap, page cache).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row};

use super::entity::{environment, event};
use super::{environments, rows, statements, StoreError, StoredEvent, MMAP_BYTES};
use crate::domain::Deployment;

/// Connections kept for reuse; more may be open at once under load, and are closed after.
/// Opening one costs a schema read and fresh statements: at 4 kept, a dashboard under 16
/// clients spent a tenth of its CPU opening connections (BENCHMARKS.md).
const KEPT: usize = 32;

/// Plain SQLite connections to one database file, for reads.
#[derive(Clone)]
pub(super) struct FastReads {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Arc<Mutex<Vec<Connection>>>,
    /// The store's count of read statements (tests check how many a page costs).
    statements: Arc<AtomicU64>,
}

impl FastReads {
    pub(super) fn new(path: PathBuf, busy_timeout: Duration, statements: Arc<AtomicU64>) -> Self {
        Self {
            path,
            busy_timeout,
            idle: Arc::default(),
            statements,
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "mmap_size", MMAP_BYTES)?;
        conn.pragma_update(None, "cache_size", -16384)?;
        super::direct::stable_plans(&conn)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    }

    /// Runs `read` on a connection in a blocking task; `statements` is how many SQL
    /// statements it runs, for the store's count.
    async fn run<T: Send + 'static>(
        &self,
        statements: u64,
        read: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match this.idle.lock().ok().and_then(|mut idle| idle.pop()) {
                Some(conn) => conn,
                None => this.open().map_err(fault)?,
            };
            this.statements.fetch_add(statements, Ordering::Relaxed);
            let result = read(&conn);
            if let Ok(mut idle) = this.idle.lock() {
                if idle.len() < KEPT {
                    idle.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|_| StoreError::Corrupt("a read task failed".into()))?
    }

    /// The deployments `sql` selects (`DEPLOYMENT_COLUMNS`, with `params` bound in order).
    pub(super) async fn deployments(
        &self,
        sql: String,
        params: Vec<sea_orm::Value>,
    ) -> Result<Vec<Deployment>, StoreError> {
        let params = sqlite_values(params)?;
        self.run(1, move |conn| {
            all(conn, &sql, params, |row| {
                rows::deployment(rows::deployment_model(row)?)
            })
        })
        .await
    }

    /// The count `sql` selects (one row, one column, with `params` bound in order).
    pub(super) async fn count(
        &self,
        sql: String,
        params: Vec<sea_orm::Value>,
    ) -> Result<u64, StoreError> {
        let params = sqlite_values(params)?;
        self.run(1, move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(fault)?;
            let count: i64 = stmt
                .query_row(rusqlite::params_from_iter(params), |row| row.get(0))
                .map_err(fault)?;
            u64::try_from(count).map_err(|_| StoreError::Corrupt("a negative count".into()))
        })
        .await
    }

    /// The environment with this name, if it is known.
    pub(super) async fn environment(
        &self,
        name: String,
    ) -> Result<Option<environment::Model>, StoreError> {
        self.run(1, move |conn| {
            let mut stmt = conn
                .prepare_cached(statements::ENVIRONMENT.sqlite())
                .map_err(fault)?;
            let mut rows = stmt.query([name]).map_err(fault)?;
            match rows.next().map_err(fault)? {
                Some(row) => environments::model(row).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    /// Every event of these deployments, oldest first, in one statement.
    pub(super) async fn events_of(&self, ids: Vec<String>) -> Result<Vec<StoredEvent>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.run(1, move |conn| {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM deployment_events WHERE deployment_id IN ({}) \
                 ORDER BY seq",
                vec!["?"; ids.len()].join(", ")
            );
            all(conn, &sql, ids, |row| {
                rows::event(event_model(row).map_err(fault)?)
            })
        })
        .await
    }
}

/// The store's statement values (text and integers) as rusqlite binds them.
fn sqlite_values(values: Vec<sea_orm::Value>) -> Result<Vec<rusqlite::types::Value>, StoreError> {
    use rusqlite::types::Value as V;
    values
        .into_iter()
        .map(|value| match value {
            sea_orm::Value::String(Some(s)) => Ok(V::Text(s)),
            sea_orm::Value::BigInt(Some(n)) => Ok(V::Integer(n)),
            sea_orm::Value::String(None) | sea_orm::Value::BigInt(None) => Ok(V::Null),
            other => Err(StoreError::Corrupt(format!(
                "a read bound a value of an unexpected type: {other:?}"
            ))),
        })
        .collect()
}

/// Every row `sql` selects (with `params` bound in order), each decoded by `decode`.
fn all<T, P: rusqlite::ToSql>(
    conn: &Connection,
    sql: &str,
    params: Vec<P>,
    decode: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(fault)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(fault)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(fault)? {
        found.push(decode(row)?);
    }
    Ok(found)
}

const EVENT_COLUMNS: &str = "seq, id, deployment_id, service, environment, kind, actor, note, \
     from_status, to_status, occurred_at, overrides";

fn event_model(row: &Row<'_>) -> rusqlite::Result<event::Model> {
    Ok(event::Model {
        seq: row.get(0)?,
        id: row.get(1)?,
        deployment_id: row.get(2)?,
        service: row.get(3)?,
        environment: row.get(4)?,
        kind: row.get(5)?,
        actor: row.get(6)?,
        note: row.get(7)?,
        from_status: row.get(8)?,
        to_status: row.get(9)?,
        occurred_at: row.get(10)?,
        overrides: row.get(11)?,
    })
}

/// A database error of the plain connections, as the store reports them.
fn fault(err: rusqlite::Error) -> StoreError {
    StoreError::Database(sea_orm::DbErr::Custom(err.to_string()))
}
