//! The writer's connection: a plain SQLite connection that SeaORM's statements run on
//! synchronously, in the writer's own thread.
//!
//! Through sqlx, each statement of a write was a round trip to the connection's worker
//! thread: two thread switches per statement, a dozen statements per write, all in the
//! one task every write waits behind. Under load that ping-pong, not SQLite, bounded how
//! many writes a second committed (BENCHMARKS.md). Here the store's write code is
//! unchanged (it takes any `ConnectionTrait`), but each statement runs on the calling
//! thread, prepared once and cached, so a whole group of writes runs without a switch.
//!
//! SeaORM 2.0.4 has no public way to make a `QueryResult` other than from its own
//! drivers' rows: its proxy rows do not compile beside sqlx-sqlite, and the rusqlite
//! driver belongs to its synchronous edition. So rows are handed over the way SeaORM's
//! mock connection hands them over (`rows`): a value map per row, read by column name.
//! Those values convert strictly (an `i64` only from a `BigInt`, a `String` only from a
//! `String`), so each is typed by its column's declared type: the schema (migration/)
//! declares only INTEGER and TEXT, and the store's models read every integer as `i64`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sea_orm::sea_query::Value;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, MockDatabase, MockExecResult, QueryResult,
    RuntimeErr, Statement,
};

use super::statements::{self, Bind, Columns, Run};
use super::{StoreError, MMAP_BYTES};

/// Prepared statements kept per connection. The write path has a few dozen shapes.
const STATEMENTS: usize = 128;

/// The writer's connection. The mutex is never contended (one thread uses it); it is
/// there because SeaORM requires a connection to be `Sync`.
pub(super) struct Direct {
    conn: Mutex<Connection>,
}

/// Plans that do not depend on the values bound: without this, SQLite marks a statement
/// whose plan looked at a bound value (every `LIMIT ?`, as SeaORM writes `.one()`) to be
/// prepared again whenever a value is bound, so a cached statement was parsed and
/// planned anew on every run (17% of the writer's time under W1). Nothing here reads
/// table statistics (no ANALYZE), the one thing bound values would add to a plan.
pub(super) fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

impl Direct {
    /// Opens the (already migrated) database file for writing, with the pragmas every
    /// connection of the store has, and synchronous=FULL: a commit is on disk before it
    /// returns. Each write's SAVEPOINT journal is kept in memory (`temp_store`): it only
    /// undoes a write within its group and plays no part in recovery (the WAL does), and
    /// in a file it cost a file created, written and deleted for every group.
    pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<Self, DbErr> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(connection_error)?;
        conn.busy_timeout(busy_timeout).map_err(connection_error)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
             PRAGMA mmap_size = {MMAP_BYTES}; PRAGMA cache_size = -16384; \
             PRAGMA temp_store = MEMORY;"
        ))
        .map_err(connection_error)?;
        stable_plans(&conn).map_err(connection_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, DbErr> {
        self.conn.lock().map_err(|_| {
            DbErr::Conn(RuntimeErr::Internal(
                "the writer's connection was poisoned".into(),
            ))
        })
    }

    /// Runs one statement without parameters or results (transaction control).
    pub(super) fn control(&self, sql: &str) -> Result<(), DbErr> {
        let conn = self.conn()?;
        let mut prepared = conn.prepare_cached(sql).map_err(exec_error)?;
        prepared.execute([]).map_err(exec_error)?;
        Ok(())
    }

    fn run(&self, stmt: Statement) -> Result<MockExecResult, DbErr> {
        let conn = self.conn()?;
        let mut prepared = conn.prepare_cached(&stmt.sql).map_err(exec_error)?;
        let changed = prepared
            .execute(rusqlite::params_from_iter(params(stmt)?))
            .map_err(exec_error)?;
        Ok(MockExecResult {
            last_insert_id: u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
            rows_affected: changed as u64,
        })
    }

    fn query(
        &self,
        stmt: Statement,
        limit: Option<usize>,
    ) -> Result<Vec<BTreeMap<String, Value>>, DbErr> {
        let conn = self.conn()?;
        let mut prepared = conn.prepare_cached(&stmt.sql).map_err(query_error)?;
        let columns: Vec<(String, Option<Declared>)> = prepared
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.decl_type().map(Declared::of)))
            .collect();
        let mut rows = prepared
            .query(rusqlite::params_from_iter(params(stmt)?))
            .map_err(query_error)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(query_error)? {
            let mut values = BTreeMap::new();
            for (i, (name, declared)) in columns.iter().enumerate() {
                let value = row.get_ref(i).map_err(query_error)?;
                values.insert(name.clone(), value_of(value, *declared)?);
            }
            found.push(values);
            if limit.is_some_and(|limit| found.len() >= limit) {
                break;
            }
        }
        Ok(found)
    }
}

/// The store's frequent statements, bound and read in place: no SeaORM statement, no
/// value maps.
impl Run for Direct {
    async fn change(&self, sql: &statements::Sql, binds: &[Bind<'_>]) -> Result<u64, DbErr> {
        let conn = self.conn()?;
        let mut prepared = conn.prepare_cached(sql.sqlite()).map_err(exec_error)?;
        let changed = prepared
            .execute(rusqlite::params_from_iter(binds))
            .map_err(exec_error)?;
        Ok(changed as u64)
    }

    async fn rows<T: Send>(
        &self,
        sql: &statements::Sql,
        binds: &[Bind<'_>],
        limit: Option<usize>,
        mut read: impl FnMut(&dyn Columns) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn()?;
        let mut prepared = conn.prepare_cached(sql.sqlite()).map_err(query_error)?;
        let mut rows = prepared
            .query(rusqlite::params_from_iter(binds))
            .map_err(query_error)?;
        let mut found = Vec::new();
        while let Some(row) = rows.next().map_err(query_error)? {
            found.push(read(row)?);
            if limit.is_some_and(|limit| found.len() >= limit) {
                break;
            }
        }
        Ok(found)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, at: usize) -> Result<String, StoreError> {
        self.get(at).map_err(column_error)
    }
    fn maybe_text(&self, at: usize) -> Result<Option<String>, StoreError> {
        self.get(at).map_err(column_error)
    }
    fn int(&self, at: usize) -> Result<i64, StoreError> {
        self.get(at).map_err(column_error)
    }
    fn maybe_int(&self, at: usize) -> Result<Option<i64>, StoreError> {
        self.get(at).map_err(column_error)
    }
}

/// A column that is not what the schema declares.
fn column_error(err: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(format!("a stored row: {err}"))
}

#[async_trait::async_trait]
impl ConnectionTrait for Direct {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let done = self.run(stmt)?;
        executed(done).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let done = {
            let conn = self.conn()?;
            conn.execute_batch(sql).map_err(exec_error)?;
            MockExecResult {
                last_insert_id: u64::try_from(conn.last_insert_rowid()).unwrap_or(0),
                rows_affected: conn.changes(),
            }
        };
        executed(done).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let found = self.query(stmt, Some(1))?;
        Ok(rows(found).await?.pop())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let found = self.query(stmt, None)?;
        rows(found).await
    }
}

/// Value maps as SeaORM's `QueryResult`s: handed over by a mock connection that answers
/// one statement with them (see the module's comment). Completes at once.
async fn rows(found: Vec<BTreeMap<String, Value>>) -> Result<Vec<QueryResult>, DbErr> {
    MockDatabase::new(DbBackend::Sqlite)
        .append_query_results([found])
        .into_connection()
        .query_all_raw(Statement::from_string(DbBackend::Sqlite, String::new()))
        .await
}

/// A statement's outcome as SeaORM's `ExecResult`, handed over the same way.
async fn executed(done: MockExecResult) -> Result<ExecResult, DbErr> {
    MockDatabase::new(DbBackend::Sqlite)
        .append_exec_results([done])
        .into_connection()
        .execute_raw(Statement::from_string(DbBackend::Sqlite, String::new()))
        .await
}

/// The declared type of a result column, which types its NULLs (and its integers, for a
/// column declared as a boolean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Declared {
    Integer,
    Boolean,
    Real,
    Text,
    Blob,
}

impl Declared {
    /// SQLite's affinity rules, in their order.
    fn of(declared: &str) -> Self {
        let declared = declared.to_ascii_uppercase();
        if declared.contains("BOOL") {
            Declared::Boolean
        } else if declared.contains("INT") {
            Declared::Integer
        } else if ["CHAR", "CLOB", "TEXT"]
            .iter()
            .any(|t| declared.contains(t))
        {
            Declared::Text
        } else if declared.contains("BLOB") {
            Declared::Blob
        } else {
            Declared::Real
        }
    }
}

/// A column's value as SeaORM reads it. Without a declared type (an expression such as
/// `MAX(seq)` or `COUNT(*)`), a NULL is taken as a missing integer.
fn value_of(value: ValueRef<'_>, declared: Option<Declared>) -> Result<Value, DbErr> {
    Ok(match (value, declared) {
        (ValueRef::Null, Some(Declared::Text)) => Value::String(None),
        (ValueRef::Null, Some(Declared::Boolean)) => Value::Bool(None),
        (ValueRef::Null, Some(Declared::Real)) => Value::Double(None),
        (ValueRef::Null, Some(Declared::Blob)) => Value::Bytes(None),
        (ValueRef::Null, _) => Value::BigInt(None),
        (ValueRef::Integer(i), Some(Declared::Boolean)) => Value::Bool(Some(i != 0)),
        (ValueRef::Integer(i), _) => Value::BigInt(Some(i)),
        (ValueRef::Real(f), _) => Value::Double(Some(f)),
        (ValueRef::Text(bytes), _) => Value::String(Some(
            std::str::from_utf8(bytes)
                .map_err(|_| DbErr::Type("a text column is not UTF-8".into()))?
                .to_owned(),
        )),
        (ValueRef::Blob(bytes), _) => Value::Bytes(Some(bytes.to_vec())),
    })
}

/// The statement's values as SQLite parameters.
fn params(stmt: Statement) -> Result<Vec<Sql>, DbErr> {
    let Some(values) = stmt.values else {
        return Ok(Vec::new());
    };
    values.0.into_iter().map(param).collect()
}

fn param(value: Value) -> Result<Sql, DbErr> {
    let integer = |i: Option<i64>| i.map_or(Sql::Null, Sql::Integer);
    Ok(match value {
        Value::Bool(b) => integer(b.map(i64::from)),
        Value::TinyInt(i) => integer(i.map(i64::from)),
        Value::SmallInt(i) => integer(i.map(i64::from)),
        Value::Int(i) => integer(i.map(i64::from)),
        Value::BigInt(i) => integer(i),
        Value::TinyUnsigned(i) => integer(i.map(i64::from)),
        Value::SmallUnsigned(i) => integer(i.map(i64::from)),
        Value::Unsigned(i) => integer(i.map(i64::from)),
        Value::BigUnsigned(i) => match i.map(i64::try_from).transpose() {
            Ok(i) => integer(i),
            Err(_) => return Err(DbErr::Type("an unsigned value is too large".into())),
        },
        Value::Float(f) => f.map_or(Sql::Null, |f| Sql::Real(f64::from(f))),
        Value::Double(f) => f.map_or(Sql::Null, Sql::Real),
        Value::String(s) => s.map_or(Sql::Null, Sql::Text),
        Value::Char(c) => c.map_or(Sql::Null, |c| Sql::Text(c.to_string())),
        Value::Bytes(b) => b.map_or(Sql::Null, Sql::Blob),
        _ => {
            return Err(DbErr::Type(
                "the writer cannot bind a value of this type".into(),
            ))
        }
    })
}

fn connection_error(err: rusqlite::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(err.to_string()))
}

fn exec_error(err: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(message(err)))
}

fn query_error(err: rusqlite::Error) -> DbErr {
    DbErr::Query(RuntimeErr::Internal(message(err)))
}

/// SQLite's own message (e.g. "UNIQUE constraint failed: t.a, t.b").
fn message(err: rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message,
        other => other.to_string(),
    }
}

/// The message of a UNIQUE constraint violation, from either connection's errors.
pub(super) fn unique_violation(err: &DbErr) -> Option<String> {
    if let Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) = err.sql_err() {
        return Some(message);
    }
    match err {
        DbErr::Exec(RuntimeErr::Internal(message))
        | DbErr::Query(RuntimeErr::Internal(message))
            if message.starts_with("UNIQUE constraint failed") =>
        {
            Some(message.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, TryGetable};

    fn open() -> (tempfile::TempDir, Direct) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("t.db");
        rusqlite::Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER, \
                     flag BOOLEAN, x REAL, b BLOB);",
                )
            })
            .expect("a table");
        let direct = Direct::open(&path, Duration::from_secs(1)).expect("opens");
        (dir, direct)
    }

    #[tokio::test]
    async fn a_cached_statement_is_not_prepared_again_for_each_bound_limit() {
        let (_dir, db) = open();
        const SQL: &str = "SELECT id FROM t WHERE name = ? LIMIT ?";
        for (name, limit) in [("a", 1), ("b", 1), ("c", 2)] {
            let stmt = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                SQL,
                [Value::from(name), Value::from(limit)],
            );
            db.query_all_raw(stmt).await.expect("runs");
        }
        let conn = db.conn().expect("the connection");
        let stmt = conn.prepare_cached(SQL).expect("cached");
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
    }

    fn get<T: TryGetable>(row: &QueryResult, column: &str) -> T {
        row.try_get("", column).expect("the column converts")
    }

    #[tokio::test]
    async fn the_writer_connection_is_durable_and_checks_foreign_keys() {
        let (_dir, db) = open();
        let stmt = |sql: &str| Statement::from_string(DbBackend::Sqlite, sql.to_owned());
        for (pragma, expected) in [("synchronous", 2), ("foreign_keys", 1), ("temp_store", 2)] {
            let row = db.query_one_raw(stmt(&format!("PRAGMA {pragma}"))).await;
            let row = row.expect("runs").expect("a row");
            assert_eq!(get::<i64>(&row, pragma), expected, "{pragma}");
        }
        let row = db.query_one_raw(stmt("PRAGMA journal_mode")).await;
        let row = row.expect("runs").expect("a row");
        assert_eq!(get::<String>(&row, "journal_mode"), "wal");
    }

    #[tokio::test]
    async fn values_and_nulls_come_back_typed_by_their_declared_column() {
        let (_dir, db) = open();
        let insert = |values: Vec<Value>| {
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO t (name, n, flag, x, b) VALUES (?, ?, ?, ?, ?)",
                values,
            )
        };
        let done = db
            .execute_raw(insert(vec![
                "a".into(),
                7i32.into(),
                true.into(),
                1.5f64.into(),
                vec![1u8, 2].into(),
            ]))
            .await
            .expect("inserts");
        assert_eq!((done.rows_affected(), done.last_insert_id()), (1, 1));
        db.execute_raw(insert(vec![
            Value::String(None),
            Value::BigInt(None),
            Value::Bool(None),
            Value::Double(None),
            Value::Bytes(None),
        ]))
        .await
        .expect("inserts nulls");

        let all = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT name, n, flag, x, b, MAX(n) OVER () AS top FROM t ORDER BY id",
            ))
            .await
            .expect("reads");
        assert_eq!(all.len(), 2);
        assert_eq!(get::<Option<String>>(&all[0], "name").as_deref(), Some("a"));
        assert_eq!(get::<Option<i64>>(&all[0], "n"), Some(7));
        assert_eq!(get::<Option<bool>>(&all[0], "flag"), Some(true));
        assert_eq!(get::<Option<f64>>(&all[0], "x"), Some(1.5));
        assert_eq!(get::<Option<Vec<u8>>>(&all[0], "b"), Some(vec![1, 2]));
        assert_eq!(get::<i64>(&all[0], "top"), 7);
        assert_eq!(get::<Option<String>>(&all[1], "name"), None);
        assert_eq!(get::<Option<i64>>(&all[1], "n"), None);
        assert_eq!(get::<Option<bool>>(&all[1], "flag"), None);
        assert_eq!(get::<Option<f64>>(&all[1], "x"), None);
        assert_eq!(get::<Option<Vec<u8>>>(&all[1], "b"), None);

        let none = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT MAX(n) AS top FROM t WHERE n > 100",
            ))
            .await
            .expect("reads")
            .expect("one row");
        assert_eq!(get::<Option<i64>>(&none, "top"), None);
    }

    #[tokio::test]
    async fn a_unique_violation_is_recognised_and_a_savepoint_undoes_only_its_own_write() {
        let (_dir, db) = open();
        let insert = |name: &str| {
            Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO t (name) VALUES (?)",
                [name.into()],
            )
        };
        db.control("BEGIN IMMEDIATE").expect("begins");
        db.execute_raw(insert("a")).await.expect("first");
        db.control("SAVEPOINT write").expect("savepoint");
        let err = db.execute_raw(insert("a")).await.expect_err("a duplicate");
        assert_eq!(
            unique_violation(&err).as_deref(),
            Some("UNIQUE constraint failed: t.name")
        );
        db.control("ROLLBACK TO write").expect("rolls back");
        db.control("RELEASE write").expect("releases");
        db.execute_raw(insert("b")).await.expect("after");
        db.control("COMMIT").expect("commits");
        let count = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM t",
            ))
            .await
            .expect("counts")
            .expect("a row");
        assert_eq!(get::<i64>(&count, "n"), 2);

        let syntax = db.execute_unprepared("SELEC 1").await.expect_err("not SQL");
        assert_eq!(unique_violation(&syntax), None);
    }
}
