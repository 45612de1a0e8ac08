//! The migrations on PostgreSQL, against the same migrations on SQLite.
//!
//! Every test takes a database of its own on the process's throwaway cluster (`testpg`)
//! and, where it compares, a SQLite file of its own, so the tests run in parallel.

use std::collections::{BTreeMap, BTreeSet};

use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, QueryResult, Statement,
};
use sea_orm_migration::MigrationStatus;

const APPEND_ONLY: &str = "deployment_events is append-only";

async fn postgres() -> DatabaseConnection {
    let url = testpg::cluster().fresh_database();
    Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// A SQLite file in a directory of its own, removed with it.
struct Sqlite {
    _dir: tempfile::TempDir,
    db: DatabaseConnection,
}

async fn sqlite() -> Sqlite {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("shiplog.db").display()
    );
    let db = Database::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Sqlite { _dir: dir, db }
}

async fn rows(db: &DatabaseConnection, sql: &str) -> Vec<QueryResult> {
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn one_text(db: &DatabaseConnection, sql: &str) -> String {
    let rows = rows(db, sql).await;
    let row = rows.first().unwrap_or_else(|| panic!("{sql}: no row"));
    row.try_get_by_index::<String>(0)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn text(row: &QueryResult, column: &str) -> String {
    row.try_get("", column)
        .unwrap_or_else(|e| panic!("column {column}: {e}"))
}

fn opt_text(row: &QueryResult, column: &str) -> Option<String> {
    row.try_get("", column)
        .unwrap_or_else(|e| panic!("column {column}: {e}"))
}

fn int(row: &QueryResult, column: &str) -> i64 {
    row.try_get("", column)
        .unwrap_or_else(|e| panic!("column {column}: {e}"))
}

fn flag(row: &QueryResult, column: &str) -> bool {
    row.try_get("", column)
        .unwrap_or_else(|e| panic!("column {column}: {e}"))
}

async fn up(db: &DatabaseConnection, steps: Option<u32>) {
    Migrator::up(db, steps)
        .await
        .unwrap_or_else(|e| panic!("Migrator::up({steps:?}): {e}"));
}

// ------------------------------------------------------------------ schema snapshots

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    name: String,
    /// INTEGER for SQLite's INTEGER and PostgreSQL's BIGINT, TEXT for TEXT.
    kind: String,
    nullable: bool,
    /// The default's text, without PostgreSQL's `::type` cast.
    default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    /// None for the index of a primary key or UNIQUE constraint (the engines name those
    /// differently); the name of every CREATE INDEX.
    name: Option<String>,
    table: String,
    columns: Vec<String>,
    unique: bool,
    partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    table: String,
    columns: Vec<String>,
    references: String,
    referenced: Vec<String>,
    on_delete: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Schema {
    /// Per table, its columns in order.
    tables: BTreeMap<String, Vec<Column>>,
    indexes: BTreeSet<Index>,
    foreign_keys: BTreeSet<ForeignKey>,
}

fn normal_type(declared: &str) -> String {
    match declared.to_ascii_uppercase().as_str() {
        "INTEGER" | "BIGINT" => "INTEGER".into(),
        "TEXT" => "TEXT".into(),
        other => other.into(),
    }
}

fn normal_default(default: Option<String>) -> Option<String> {
    default.map(|d| {
        ["::text", "::bigint", "::integer"]
            .iter()
            .fold(d, |d, cast| {
                d.strip_suffix(cast).map(str::to_owned).unwrap_or(d)
            })
    })
}

fn split_columns(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The application tables (not sea-orm-migration's own), from the SQLite catalogue.
async fn sqlite_schema(db: &DatabaseConnection) -> Schema {
    let mut schema = Schema {
        tables: BTreeMap::new(),
        indexes: BTreeSet::new(),
        foreign_keys: BTreeSet::new(),
    };
    let tables = rows(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> 'seaql_migrations' ORDER BY name",
    )
    .await;
    for table in tables.iter().map(|r| text(r, "name")) {
        let info = rows(
            db,
            &format!(
                "SELECT name, type, \"notnull\" AS not_null, dflt_value, pk \
                 FROM pragma_table_info('{table}') ORDER BY cid"
            ),
        )
        .await;
        // An `INTEGER PRIMARY KEY` is the rowid: never null, and the key of the table.
        let pk: Vec<&QueryResult> = info.iter().filter(|r| int(r, "pk") > 0).collect();
        let rowid = match pk.as_slice() {
            [only] if normal_type(&text(only, "type")) == "INTEGER" => Some(text(only, "name")),
            _ => None,
        };
        let columns = info
            .iter()
            .map(|r| {
                let name = text(r, "name");
                Column {
                    nullable: int(r, "not_null") == 0 && rowid.as_deref() != Some(name.as_str()),
                    kind: normal_type(&text(r, "type")),
                    default: normal_default(opt_text(r, "dflt_value")),
                    name,
                }
            })
            .collect();
        schema.tables.insert(table.clone(), columns);

        if let Some(rowid) = &rowid {
            schema.indexes.insert(Index {
                name: None,
                table: table.clone(),
                columns: vec![rowid.clone()],
                unique: true,
                partial: false,
            });
        }
        let list = rows(
            db,
            &format!(
                "SELECT name, \"unique\" AS is_unique, origin, partial \
                 FROM pragma_index_list('{table}')"
            ),
        )
        .await;
        for index in list {
            let name = text(&index, "name");
            let unique = int(&index, "is_unique") != 0;
            let mut columns: Vec<String> = rows(
                db,
                &format!("SELECT name FROM pragma_index_info('{name}') ORDER BY seqno"),
            )
            .await
            .iter()
            .map(|r| text(r, "name"))
            .collect();
            let created = text(&index, "origin") == "c";
            // A SQLite index of a table keyed by an INTEGER PRIMARY KEY ends with that key
            // (the rowid) without naming it; PostgreSQL's indexes name it.
            if let (Some(rowid), true, false) = (&rowid, created, unique) {
                if columns.last() != Some(rowid) {
                    columns.push(rowid.clone());
                }
            }
            schema.indexes.insert(Index {
                name: created.then_some(name),
                table: table.clone(),
                columns,
                unique,
                partial: int(&index, "partial") != 0,
            });
        }

        let fks = rows(
            db,
            &format!(
                "SELECT id, \"table\" AS referenced, \"from\" AS from_column, \"to\" AS to_column, \
                 on_delete FROM pragma_foreign_key_list('{table}') ORDER BY id, seq"
            ),
        )
        .await;
        let mut by_id: BTreeMap<i64, ForeignKey> = BTreeMap::new();
        for fk in fks {
            let entry = by_id.entry(int(&fk, "id")).or_insert_with(|| ForeignKey {
                table: table.clone(),
                columns: vec![],
                references: text(&fk, "referenced"),
                referenced: vec![],
                on_delete: text(&fk, "on_delete"),
            });
            entry.columns.push(text(&fk, "from_column"));
            entry.referenced.push(text(&fk, "to_column"));
        }
        schema.foreign_keys.extend(by_id.into_values());
    }
    schema
}

/// The application tables (not sea-orm-migration's own), from information_schema and the
/// PostgreSQL catalogue, for the current schema.
async fn postgres_schema(db: &DatabaseConnection) -> Schema {
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for r in rows(
        db,
        "SELECT table_name::text AS table_name, column_name::text AS column_name, \
                data_type::text AS data_type, is_nullable::text AS is_nullable, \
                column_default::text AS column_default \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name <> 'seaql_migrations' \
         ORDER BY table_name, ordinal_position",
    )
    .await
    {
        tables
            .entry(text(&r, "table_name"))
            .or_default()
            .push(Column {
                name: text(&r, "column_name"),
                kind: normal_type(&text(&r, "data_type")),
                nullable: text(&r, "is_nullable") == "YES",
                default: normal_default(opt_text(&r, "column_default")),
            });
    }

    let column_list = |key: &str, relation: &str| {
        format!(
            "array_to_string(ARRAY(SELECT a.attname::text \
               FROM unnest({key}) WITH ORDINALITY AS k(attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = {relation} AND a.attnum = k.attnum \
               ORDER BY k.ord), ',')"
        )
    };
    let indexes = rows(
        db,
        &format!(
            "SELECT i.relname::text AS name, t.relname::text AS tbl, ix.indisunique AS is_unique, \
                    ix.indpred IS NOT NULL AS partial, {} AS columns, \
                    EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid \
                            AND c.conrelid = ix.indrelid AND c.contype IN ('p', 'u')) AS of_constraint \
             FROM pg_index ix \
             JOIN pg_class i ON i.oid = ix.indexrelid \
             JOIN pg_class t ON t.oid = ix.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = current_schema() AND t.relname <> 'seaql_migrations'",
            column_list("ix.indkey::int2[]", "ix.indrelid")
        ),
    )
    .await
    .iter()
    .map(|r| Index {
        name: (!flag(r, "of_constraint")).then(|| text(r, "name")),
        table: text(r, "tbl"),
        columns: split_columns(&text(r, "columns")),
        unique: flag(r, "is_unique"),
        partial: flag(r, "partial"),
    })
    .collect();

    let foreign_keys = rows(
        db,
        &format!(
            "SELECT src.relname::text AS tbl, dst.relname::text AS referenced, \
                    {} AS from_columns, {} AS to_columns, c.confdeltype::text AS on_delete \
             FROM pg_constraint c \
             JOIN pg_class src ON src.oid = c.conrelid \
             JOIN pg_class dst ON dst.oid = c.confrelid \
             JOIN pg_namespace n ON n.oid = c.connamespace \
             WHERE c.contype = 'f' AND n.nspname = current_schema()",
            column_list("c.conkey", "c.conrelid"),
            column_list("c.confkey", "c.confrelid"),
        ),
    )
    .await
    .iter()
    .map(|r| ForeignKey {
        table: text(r, "tbl"),
        columns: split_columns(&text(r, "from_columns")),
        references: text(r, "referenced"),
        referenced: split_columns(&text(r, "to_columns")),
        on_delete: match text(r, "on_delete").as_str() {
            "a" => "NO ACTION",
            "c" => "CASCADE",
            "r" => "RESTRICT",
            "n" => "SET NULL",
            "d" => "SET DEFAULT",
            other => panic!("confdeltype {other}"),
        }
        .to_owned(),
    })
    .collect();

    Schema {
        tables,
        indexes,
        foreign_keys,
    }
}

fn assert_same_schema(sqlite: &Schema, postgres: &Schema) {
    let names = |s: &Schema| s.tables.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(sqlite), names(postgres), "the same tables");
    for (table, columns) in &sqlite.tables {
        assert_eq!(
            Some(columns),
            postgres.tables.get(table),
            "table {table}: the same columns, in the same order (SQLite left, PostgreSQL right)"
        );
    }
    let only =
        |a: &BTreeSet<Index>, b: &BTreeSet<Index>| a.difference(b).cloned().collect::<Vec<_>>();
    assert!(
        sqlite.indexes == postgres.indexes,
        "the same indexes; only on SQLite: {:#?}\nonly on PostgreSQL: {:#?}",
        only(&sqlite.indexes, &postgres.indexes),
        only(&postgres.indexes, &sqlite.indexes),
    );
    assert_eq!(
        sqlite.foreign_keys, postgres.foreign_keys,
        "the same foreign keys"
    );
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn every_migration_applies_on_postgres_and_status_shows_them_applied() {
    let db = postgres().await;
    assert_eq!(
        Migrator::get_pending_migrations(&db)
            .await
            .expect("pending")
            .len(),
        Migrator::migrations().len(),
        "a fresh database has every migration pending"
    );
    up(&db, None).await;

    let statuses = Migrator::get_migration_with_status(&db)
        .await
        .expect("the status of every migration");
    let names: Vec<String> = statuses.iter().map(|m| m.name().to_owned()).collect();
    let expected: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(names, expected);
    for m in &statuses {
        assert_eq!(m.status(), MigrationStatus::Applied, "{}", m.name());
    }
    assert!(Migrator::get_pending_migrations(&db)
        .await
        .expect("pending")
        .is_empty());
    Migrator::status(&db).await.expect("status");
    // Up again is nothing to do.
    up(&db, None).await;
}

#[tokio::test]
async fn postgres_ends_with_the_schema_sqlite_ends_with() {
    let (pg, lite) = (postgres().await, sqlite().await);
    up(&pg, None).await;
    up(&lite.db, None).await;
    let (pg_schema, lite_schema) = (postgres_schema(&pg).await, sqlite_schema(&lite.db).await);
    assert_eq!(
        lite_schema.tables.len(),
        10,
        "{:?}",
        lite_schema.tables.keys()
    );
    // Not vacuous: 10 tables, 19 CREATE INDEX, 15 key or UNIQUE indexes, 7 foreign keys.
    let named = lite_schema
        .indexes
        .iter()
        .filter(|i| i.name.is_some())
        .count();
    assert_eq!(
        (named, lite_schema.indexes.len() - named),
        (19, 15),
        "{:#?}",
        lite_schema.indexes
    );
    assert_eq!(
        lite_schema.foreign_keys.len(),
        7,
        "{:#?}",
        lite_schema.foreign_keys
    );
    assert_same_schema(&lite_schema, &pg_schema);
}

#[tokio::test]
async fn the_schema_matches_after_every_single_migration() {
    let (pg, lite) = (postgres().await, sqlite().await);
    for step in 1..=Migrator::migrations().len() {
        up(&pg, Some(1)).await;
        up(&lite.db, Some(1)).await;
        let (pg_schema, lite_schema) = (postgres_schema(&pg).await, sqlite_schema(&lite.db).await);
        assert!(
            pg_schema == lite_schema,
            "after migration {step}:\nSQLite {lite_schema:#?}\nPostgreSQL {pg_schema:#?}"
        );
    }
}

/// Rows both engines must take, then statements each must accept or refuse alike: the
/// CHECK constraints, NOT NULLs, keys, foreign keys, partial unique index, defaults and the
/// append-only rule, on the final schema.
const SETUP: &[&str] = &[
    "INSERT INTO environments (name, id, position, tier, updated_at) \
     VALUES ('staging', 'env-1', 1, 'STAGING', 1)",
    "INSERT INTO deployments (id, service, environment, version, requester, work_refs, \
     rollback_plan, status, created_at, updated_at) \
     VALUES ('d1', 'billing', 'staging', 'v1', 'alice', '[]', 'redo', 'STARTED', 1, 1)",
    "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
     to_status, occurred_at) VALUES ('e1', 'd1', 'billing', 'staging', 'CREATED', 'alice', \
     'PENDING_APPROVAL', 1)",
    "INSERT INTO webhooks (id, url, secret, active, created_by, created_at, updated_by, updated_at) \
     VALUES ('w1', 'http://127.0.0.1/', 's', 1, 'alice', 1, 'alice', 1)",
    "INSERT INTO webhook_payloads (event_seq, body) \
     SELECT seq, '{}' FROM deployment_events WHERE id = 'e1'",
    "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, status, created_at) \
     SELECT 'wd1', 'w1', seq, 'PENDING', 1 FROM deployment_events WHERE id = 'e1'",
    "INSERT INTO webhook_attempts (delivery_seq, n, at, duration_ms) \
     SELECT seq, 1, 1, 5 FROM webhook_deliveries WHERE id = 'wd1'",
];

fn deployment(id: &str, environment: &str, status: &str, extra: &str) -> String {
    let (columns, values) = extra.split_once('=').unwrap_or(("", ""));
    let (columns, values) = if columns.is_empty() {
        (String::new(), String::new())
    } else {
        (format!(", {columns}"), format!(", {values}"))
    };
    format!(
        "INSERT INTO deployments (id, service, environment, version, requester, work_refs, \
         rollback_plan, status, created_at, updated_at{columns}) \
         VALUES ('{id}', 'billing', '{environment}', 'v1', 'alice', '[]', 'redo', '{status}', \
         2, 2{values})"
    )
}

fn event(id: &str, deployment: &str, kind: &str) -> String {
    format!(
        "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
         to_status, occurred_at) VALUES ('{id}', '{deployment}', 'billing', 'staging', '{kind}', \
         'alice', 'STARTED', 2)"
    )
}

fn freeze(id: &str, starts: &str, ends: &str, cron: &str, minutes: &str) -> String {
    format!(
        "INSERT INTO freeze_windows (id, reason, starts_at, ends_at, cron, duration_minutes, \
         created_by, created_at) VALUES ('{id}', 'why', {starts}, {ends}, {cron}, {minutes}, 'alice', 1)"
    )
}

fn probes() -> Vec<(String, bool)> {
    let mut p: Vec<(String, bool)> = vec![
        (deployment("bad-status", "staging", "BOGUS", ""), false),
        (deployment("d2", "production", "CANCELLED", ""), true),
        (deployment("d3", "staging", "STARTED", ""), false), // one STARTED per place
        (deployment("d3", "production", "STARTED", ""), true),
        (deployment("d4", "dev", "APPROVED", "required_approvals=0"), false),
        (deployment("d4", "dev", "APPROVED", "required_approvals=11"), false),
        (deployment("d4", "dev", "APPROVED", "required_approvals=10"), true),
        (deployment("d4", "dev", "APPROVED", ""), false), // primary key
        (deployment("d5", "dev", "APPROVED", "idempotency_key='k'"), true),
        (deployment("d6", "dev", "APPROVED", "idempotency_key='k'"), false),
        (deployment("d7", "dev", "APPROVED", "promoted_from='nope'"), false),
        (deployment("d7", "dev", "APPROVED", "promoted_from='d1'"), true),
        (deployment("d8", "dev", "APPROVED", "risk=NULL"), true),
        (
            "INSERT INTO deployments (id, service, environment, version, work_refs, \
             rollback_plan, status, created_at, updated_at) \
             VALUES ('d9', 'billing', 'dev', 'v1', '[]', 'redo', 'APPROVED', 2, 2)"
                .into(),
            false, // no requester
        ),
        (event("e2", "d1", "BOGUS"), false),
        (event("e2", "nope", "STARTED"), false),
        (event("e2", "d1", "CANCELLED"), true),
        (event("e1", "d1", "STARTED"), false), // the id is unique
        (
            "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
             occurred_at) VALUES ('e3', 'd1', 'billing', 'staging', 'STARTED', 'alice', 2)"
                .into(),
            false,
        ),
        ("UPDATE deployment_events SET note = 'x' WHERE id = 'e1'".into(), false),
        ("DELETE FROM deployment_events WHERE id = 'e1'".into(), false),
        ("UPDATE deployment_events SET note = 'x' WHERE id = 'none'".into(), true),
        (
            "INSERT INTO environments (name, id, position, tier, updated_at) \
             VALUES ('x', 'env-x', 1, 'X', 1)"
                .into(),
            false,
        ),
        (
            "INSERT INTO environments (name, id, position, tier, start_timeout_seconds, updated_at) \
             VALUES ('x', 'env-x', 1, 'OTHER', 0, 1)"
                .into(),
            false,
        ),
        (
            "INSERT INTO environments (name, id, position, tier, start_timeout_seconds, updated_at) \
             VALUES ('x', 'env-x', 1, 'OTHER', 2592001, 1)"
                .into(),
            false,
        ),
        (
            "INSERT INTO environments (name, id, position, tier, start_timeout_seconds, updated_at) \
             VALUES ('x', 'env-x', 1, 'OTHER', 2592000, 1)"
                .into(),
            true,
        ),
        (
            "INSERT INTO environments (name, id, position, tier, updated_at) \
             VALUES ('y', 'env-x', 1, 'OTHER', 1)"
                .into(),
            false,
        ),
        (freeze("f1", "1", "2", "NULL", "NULL"), true),
        (freeze("f2", "2", "2", "NULL", "NULL"), false),
        (freeze("f2", "1", "2", "'0 0 * * *'", "NULL"), false),
        (freeze("f2", "NULL", "NULL", "'0 0 * * *'", "0"), false),
        (freeze("f2", "NULL", "NULL", "'0 0 * * *'", "10081"), false),
        (freeze("f2", "NULL", "NULL", "'0 0 * * *'", "10080"), true),
        (freeze("f3", "NULL", "NULL", "NULL", "NULL"), false),
        (
            "INSERT INTO webhook_payloads (event_seq, body) VALUES (999999, '{}')".into(),
            false,
        ),
        (
            "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, status, created_at) \
             SELECT 'wd2', 'w1', seq, 'BOGUS', 1 FROM deployment_events WHERE id = 'e1'"
                .into(),
            false,
        ),
        (
            "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, status, created_at) \
             SELECT 'wd2', 'nope', seq, 'PENDING', 1 FROM deployment_events WHERE id = 'e1'"
                .into(),
            false,
        ),
        (
            "INSERT INTO webhook_attempts (delivery_seq, n, at, duration_ms) \
             SELECT seq, 1, 1, 5 FROM webhook_deliveries WHERE id = 'wd1'"
                .into(),
            false,
        ),
        (
            "INSERT INTO webhook_attempts (delivery_seq, n, at, duration_ms) VALUES (999999, 1, 1, 5)"
                .into(),
            false,
        ),
        (
            "INSERT INTO deployment_targets (service, environment, executor, updated_by, updated_at) \
             VALUES ('billing', 'staging', 'FTP', 'alice', 1)"
                .into(),
            false,
        ),
        (
            "INSERT INTO deployment_targets (service, environment, executor, updated_by, updated_at) \
             VALUES ('billing', 'staging', 'HTTP', 'alice', 1)"
                .into(),
            true,
        ),
        (
            "INSERT INTO deployment_targets (service, environment, executor, updated_by, updated_at) \
             VALUES ('billing', 'staging', 'HTTP', 'bob', 2)"
                .into(),
            false,
        ),
    ];
    for (id, deployment_id, action, status, ok) in [
        ("x1", "d1", "DEPLOY", "PENDING", true),
        ("x2", "d1", "SHIP", "PENDING", false),
        ("x2", "d1", "ROLLBACK", "DONE", false),
        ("x2", "nope", "ROLLBACK", "PENDING", false),
        ("x1", "d1", "ROLLBACK", "PENDING", false),
    ] {
        p.push((
            format!(
                "INSERT INTO executions (id, deployment_id, service, environment, executor, action, \
                 git_ref, actor, deployment, status, created_at) VALUES ('{id}', '{deployment_id}', \
                 'billing', 'staging', 'HTTP', '{action}', 'main', 'alice', '{{}}', '{status}', 1)"
            ),
            ok,
        ));
    }
    // ON DELETE CASCADE from webhooks through deliveries to attempts.
    p.push(("DELETE FROM webhooks WHERE id = 'w1'".into(), true));
    p
}

/// Values both engines must read alike after the probes (each as text).
const READS: &[&str] = &[
    "SELECT overrides FROM deployment_events WHERE id = 'e1'",
    "SELECT CAST(required_approvals AS TEXT) FROM deployments WHERE id = 'd2'",
    "SELECT CAST(required_approvals AS TEXT) FROM environments WHERE name = 'staging'",
    "SELECT time_zone FROM freeze_windows WHERE id = 'f1'",
    "SELECT CAST(count(*) AS TEXT) FROM webhook_deliveries",
    "SELECT CAST(count(*) AS TEXT) FROM webhook_attempts",
    "SELECT CAST(attempts AS TEXT) || CASE WHEN triggered_at IS NULL THEN ',none' ELSE ',set' END \
     FROM executions WHERE id = 'x1'",
    "SELECT CAST(count(*) AS TEXT) FROM deployments",
    "SELECT CAST(count(*) AS TEXT) FROM deployment_events",
];

async fn run_probes(db: &DatabaseConnection, engine: &str) -> Vec<String> {
    for sql in SETUP {
        db.execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{engine}: setup {sql}: {e}"));
    }
    let mut wrong = vec![];
    for (sql, expect_ok) in probes() {
        let outcome = db.execute_unprepared(&sql).await;
        if outcome.is_ok() != expect_ok {
            wrong.push(format!(
                "{engine}: expected {expect_ok} for {sql}: {outcome:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let mut read = vec![];
    for sql in READS {
        read.push(one_text(db, sql).await);
    }
    read
}

#[tokio::test]
async fn both_engines_accept_and_refuse_the_same_rows() {
    let (pg, lite) = (postgres().await, sqlite().await);
    up(&pg, None).await;
    up(&lite.db, None).await;
    let on_sqlite = run_probes(&lite.db, "SQLite").await;
    let on_postgres = run_probes(&pg, "PostgreSQL").await;
    assert_eq!(on_sqlite, on_postgres);
    assert_eq!(on_postgres[0], "[]", "overrides defaults to []");
    assert_eq!(on_postgres[1], "1", "required_approvals defaults to 1");
    assert_eq!(on_postgres[3], "UTC");
    assert_eq!(
        (on_postgres[4].as_str(), on_postgres[5].as_str()),
        ("0", "0"),
        "cascaded"
    );
}

async fn insert_event(db: &DatabaseConnection, id: &str) -> Result<(), String> {
    db.execute_unprepared(&event(id, "d1", "STARTED"))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn deployment_events_are_append_only_on_postgres() {
    let db = postgres().await;
    up(&db, None).await;
    for sql in &SETUP[..3] {
        db.execute_unprepared(sql).await.expect("setup");
    }
    insert_event(&db, "e2").await.expect("a second event");
    let seqs = rows(&db, "SELECT seq FROM deployment_events ORDER BY seq").await;
    let seqs: Vec<i64> = seqs.iter().map(|r| int(r, "seq")).collect();
    assert_eq!(seqs, [1, 2], "seq counts from 1 in insertion order");

    for sql in [
        "UPDATE deployment_events SET note = 'changed' WHERE id = 'e1'",
        "DELETE FROM deployment_events WHERE id = 'e1'",
        "DELETE FROM deployment_events",
        "TRUNCATE deployment_events CASCADE",
        // The nearest thing to INSERT OR REPLACE: the conflict becomes an UPDATE, refused.
        "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
         to_status, occurred_at) VALUES ('e1', 'd1', 'billing', 'staging', 'CREATED', 'eve', \
         'PENDING_APPROVAL', 9) ON CONFLICT (id) DO UPDATE SET actor = 'eve'",
    ] {
        let err = db
            .execute_unprepared(sql)
            .await
            .expect_err(&format!("refused: {sql}"))
            .to_string();
        assert!(err.contains(APPEND_ONLY), "{sql}: {err}");
    }

    // An identity column refuses a new value before any trigger could see the UPDATE.
    let err = db
        .execute_unprepared("UPDATE deployment_events SET seq = 5 WHERE seq = 1")
        .await
        .expect_err("renumbering")
        .to_string();
    assert!(err.contains("can only be updated to DEFAULT"), "{err}");

    let err = insert_event(&db, "e1").await.expect_err("a duplicate id");
    assert!(err.contains("deployment_events_id_key"), "{err}");
    let with_seq =
        |seq: i64, id: &str, overriding: bool| {
            format!(
            "INSERT INTO deployment_events (seq, id, deployment_id, service, environment, kind, \
             actor, to_status, occurred_at) {} VALUES ({seq}, '{id}', 'd1', 'billing', 'staging', \
             'STARTED', 'alice', 'STARTED', 2)",
            if overriding { "OVERRIDING SYSTEM VALUE" } else { "" }
        )
        };
    let err = db
        .execute_unprepared(&with_seq(1, "e9", false))
        .await
        .expect_err("a client-chosen seq")
        .to_string();
    assert!(err.contains("non-DEFAULT value"), "{err}");
    let err = db
        .execute_unprepared(&with_seq(1, "e9", true))
        .await
        .expect_err("a duplicate seq, even overriding the identity")
        .to_string();
    assert!(err.contains("deployment_events_pkey"), "{err}");

    let after: Vec<String> = rows(
        &db,
        "SELECT id, actor, note FROM deployment_events ORDER BY seq",
    )
    .await
    .iter()
    .map(|r| {
        format!(
            "{} {} {:?}",
            text(r, "id"),
            text(r, "actor"),
            opt_text(r, "note")
        )
    })
    .collect();
    assert_eq!(after, ["e1 alice None", "e2 alice None"], "nothing changed");

    // The same message on SQLite, for the same statements.
    let lite = sqlite().await;
    up(&lite.db, None).await;
    for sql in &SETUP[..3] {
        lite.db.execute_unprepared(sql).await.expect("setup");
    }
    for sql in [
        "UPDATE deployment_events SET note = 'changed' WHERE id = 'e1'",
        "DELETE FROM deployment_events WHERE id = 'e1'",
    ] {
        let err = lite
            .db
            .execute_unprepared(sql)
            .await
            .expect_err(sql)
            .to_string();
        assert!(err.contains(APPEND_ONLY), "SQLite, {sql}: {err}");
    }
}

async fn application_tables(db: &DatabaseConnection) -> Vec<String> {
    rows(
        db,
        "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema() \
         AND tablename <> 'seaql_migrations' ORDER BY tablename",
    )
    .await
    .iter()
    .map(|r| text(r, "name"))
    .collect()
}

#[tokio::test]
async fn down_all_the_way_then_up_again_on_postgres() {
    let db = postgres().await;
    up(&db, None).await;
    let first = postgres_schema(&db).await;
    Migrator::down(&db, None).await.expect("every down");
    assert!(
        application_tables(&db).await.is_empty(),
        "{:?}",
        application_tables(&db).await
    );
    assert_eq!(
        one_text(
            &db,
            "SELECT CAST(count(*) AS TEXT) FROM pg_proc WHERE proname = 'deployment_events_append_only'"
        )
        .await,
        "0",
        "the trigger function goes with the first migration"
    );
    assert_eq!(
        Migrator::get_pending_migrations(&db)
            .await
            .expect("pending")
            .len(),
        Migrator::migrations().len()
    );
    up(&db, None).await;
    assert_eq!(
        postgres_schema(&db).await,
        first,
        "the same schema the second time"
    );

    // One step at a time down, and up again: every down leaves what the up before it made.
    let mut schemas = vec![postgres_schema(&db).await];
    for _ in 0..Migrator::migrations().len() {
        Migrator::down(&db, Some(1)).await.expect("one down");
        schemas.push(postgres_schema(&db).await);
    }
    for expected in schemas.iter().rev().skip(1) {
        up(&db, Some(1)).await;
        assert_eq!(&postgres_schema(&db).await, expected);
    }

    // `fresh` (drop everything, then up) works too.
    Migrator::fresh(&db).await.expect("fresh");
    assert_eq!(postgres_schema(&db).await, first);
}

#[tokio::test]
async fn v1_data_comes_through_every_upgrade_on_postgres() {
    let db = postgres().await;
    up(&db, Some(1)).await;
    // Two STARTED deployments of one place, as version 1 allowed; b was started later.
    db.execute_unprepared(
        "INSERT INTO deployments (id, service, environment, version, requester, work_refs, \
         rollback_plan, status, created_at, updated_at) VALUES \
         ('a', 'billing', 'staging', 'v1', 'alice', '[]', 'redo', 'STARTED', 1000, 2000), \
         ('b', 'billing', 'staging', 'v2', 'alice', '[]', 'redo', 'STARTED', 1500, 3000); \
         INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
         from_status, to_status, occurred_at) VALUES \
         ('ea1', 'a', 'billing', 'staging', 'CREATED', 'alice', NULL, 'PENDING_APPROVAL', 1000), \
         ('eb1', 'b', 'billing', 'staging', 'CREATED', 'alice', NULL, 'PENDING_APPROVAL', 1500), \
         ('ea2', 'a', 'billing', 'staging', 'STARTED', 'bot', 'APPROVED', 'STARTED', 2000), \
         ('eb2', 'b', 'billing', 'staging', 'STARTED', 'bot', 'APPROVED', 'STARTED', 3000);",
    )
    .await
    .expect("v1 rows");
    up(&db, None).await;

    let deployments: Vec<String> = rows(
        &db,
        "SELECT id, status, required_approvals, started_at FROM deployments ORDER BY id",
    )
    .await
    .iter()
    .map(|r| {
        let started_at: Option<i64> = r.try_get("", "started_at").expect("started_at");
        format!(
            "{} {} {} {started_at:?}",
            text(r, "id"),
            text(r, "status"),
            int(r, "required_approvals")
        )
    })
    .collect();
    assert_eq!(
        deployments,
        ["a FAILED 1 Some(2000)", "b STARTED 1 Some(3000)"],
        "the superseded start is failed; started_at filled in from the STARTED events"
    );
    let events: Vec<String> = rows(
        &db,
        "SELECT seq, id, deployment_id, kind, actor, overrides FROM deployment_events ORDER BY seq",
    )
    .await
    .iter()
    .map(|r| {
        format!(
            "{} {} {} {} {}",
            int(r, "seq"),
            text(r, "deployment_id"),
            text(r, "kind"),
            text(r, "actor"),
            text(r, "overrides")
        )
    })
    .collect();
    assert_eq!(
        events,
        [
            "1 a CREATED alice []",
            "2 b CREATED alice []",
            "3 a STARTED bot []",
            "4 b STARTED bot []",
            "5 a FAILED shiplog []",
        ]
    );
    let note = one_text(&db, "SELECT note FROM deployment_events WHERE seq = 5").await;
    assert!(
        note.starts_with("Failed by the upgrade to version 2"),
        "{note}"
    );

    // The next event carries on the sequence.
    db.execute_unprepared(&event("e6", "b", "SUCCEEDED"))
        .await
        .expect("a new event");
    assert_eq!(
        one_text(
            &db,
            "SELECT CAST(seq AS TEXT) FROM deployment_events WHERE id = 'e6'"
        )
        .await,
        "6"
    );
}

#[tokio::test]
async fn going_back_to_v1_is_refused_while_a_deployment_is_cancelled_on_postgres() {
    let db = postgres().await;
    up(&db, Some(2)).await;
    db.execute_unprepared(&deployment("c", "staging", "CANCELLED", ""))
        .await
        .expect("a cancelled deployment");
    let err = Migrator::down(&db, Some(1))
        .await
        .expect_err("v1 cannot hold CANCELLED")
        .to_string();
    assert!(err.contains("CANCELLED"), "{err}");
    assert_eq!(
        Migrator::get_applied_migrations(&db)
            .await
            .expect("applied")
            .len(),
        2,
        "still at v2"
    );
    db.execute_unprepared("UPDATE deployments SET status = 'REJECTED' WHERE id = 'c'")
        .await
        .expect("no longer cancelled");
    Migrator::down(&db, Some(1)).await.expect("back to v1");
    let columns = one_text(
        &db,
        "SELECT string_agg(column_name::text, ',' ORDER BY ordinal_position) \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'deployments'",
    )
    .await;
    assert!(!columns.contains("required_approvals"), "{columns}");
    let err = db
        .execute_unprepared(&deployment("c2", "staging", "CANCELLED", ""))
        .await
        .expect_err("v1 refuses CANCELLED");
    assert!(
        err.to_string().contains("deployments_status_check"),
        "{err}"
    );
}
