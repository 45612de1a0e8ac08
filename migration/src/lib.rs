//! The database schema of shiplog, as an ordered list of migrations.
//!
//! The server applies every pending migration when it starts; the command line
//! (`cargo run -p migration -- status|up|down`) does the same by hand.
//!
//! Every migration runs on SQLite and on PostgreSQL. Each has its SQLite text, unchanged
//! since it was written, and a PostgreSQL text with the same end schema: the same table
//! and column names, nullability, defaults, keys, CHECK constraints and indexes (partial
//! ones included). Integer columns are BIGINT on PostgreSQL (the store reads every integer,
//! times in milliseconds included, as i64), text columns TEXT, and SQLite's
//! `INTEGER PRIMARY KEY AUTOINCREMENT` is `BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_deployments;
mod m20261125_000002_v2_environments_and_approvals;
mod m20261125_000003_release_train;
mod m20261125_000004_start_guards;
mod m20261125_000005_freeze_windows;
mod m20261125_000006_start_timeouts;
mod m20261125_000007_integrations;

pub struct Migrator;

/// The text of a migration step for the connected engine: the SQLite text (the original,
/// kept byte for byte so that existing SQLite databases migrate exactly as before) or its
/// PostgreSQL counterpart, which yields the same tables, columns, constraints and indexes.
/// MySQL is not an engine shiplog runs on.
pub(crate) fn for_backend<'a>(
    manager: &SchemaManager<'_>,
    sqlite: &'a str,
    postgres: &'a str,
) -> Result<&'a str, DbErr> {
    match manager.get_database_backend() {
        sea_orm::DbBackend::Sqlite => Ok(sqlite),
        sea_orm::DbBackend::Postgres => Ok(postgres),
        other => Err(DbErr::Migration(format!(
            "shiplog's schema is for SQLite and PostgreSQL, not {other:?}"
        ))),
    }
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_deployments::Migration),
            Box::new(m20261125_000002_v2_environments_and_approvals::Migration),
            Box::new(m20261125_000003_release_train::Migration),
            Box::new(m20261125_000004_start_guards::Migration),
            Box::new(m20261125_000005_freeze_windows::Migration),
            Box::new(m20261125_000006_start_timeouts::Migration),
            Box::new(m20261125_000007_integrations::Migration),
        ]
    }
}
