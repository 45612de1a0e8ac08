//! Version 2, freeze windows: periods in which starting deployments is refused.
//!
//! A window is one-off (`starts_at`..`ends_at`, ms since the epoch) or recurring (`cron`,
//! `duration_minutes`, read in `time_zone`); exactly one form is filled. `environment`
//! null covers every environment. Removal keeps the row, with who, when and why.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE freeze_windows (
    id TEXT NOT NULL PRIMARY KEY,
    environment TEXT,
    reason TEXT NOT NULL,
    starts_at INTEGER,
    ends_at INTEGER,
    cron TEXT,
    duration_minutes INTEGER,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    removed_by TEXT,
    removed_at INTEGER,
    removal_note TEXT,
    CHECK ((starts_at IS NOT NULL AND ends_at IS NOT NULL AND ends_at > starts_at
            AND cron IS NULL AND duration_minutes IS NULL)
        OR (starts_at IS NULL AND ends_at IS NULL AND cron IS NOT NULL
            AND duration_minutes BETWEEN 1 AND 10080))
);
CREATE INDEX freeze_windows_in_force ON freeze_windows (removed_at, environment, id);
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS freeze_windows;
"#;

/// PostgreSQL: the same table, BIGINT for INTEGER.
const PG_UP: &str = r#"
CREATE TABLE freeze_windows (
    id TEXT NOT NULL PRIMARY KEY,
    environment TEXT,
    reason TEXT NOT NULL,
    starts_at BIGINT,
    ends_at BIGINT,
    cron TEXT,
    duration_minutes BIGINT,
    time_zone TEXT NOT NULL DEFAULT 'UTC',
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    removed_by TEXT,
    removed_at BIGINT,
    removal_note TEXT,
    CHECK ((starts_at IS NOT NULL AND ends_at IS NOT NULL AND ends_at > starts_at
            AND cron IS NULL AND duration_minutes IS NULL)
        OR (starts_at IS NULL AND ends_at IS NULL AND cron IS NOT NULL
            AND duration_minutes BETWEEN 1 AND 10080))
);
CREATE INDEX freeze_windows_in_force ON freeze_windows (removed_at, environment, id);
"#;

const PG_DOWN: &str = DOWN;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = crate::for_backend(manager, UP, PG_UP)?;
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = crate::for_backend(manager, DOWN, PG_DOWN)?;
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
