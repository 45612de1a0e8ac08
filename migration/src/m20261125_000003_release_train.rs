//! Version 2, the release train: an index that finds a service's deployments in one
//! environment by status, most recently changed last.
//!
//! A train read looks up, for each known environment, the SUCCEEDED deployment of the
//! service that changed last (a SUCCEEDED deployment last changed when it succeeded) and
//! the service's APPROVED, STARTED and PENDING_APPROVAL ones there. With the equality
//! columns first and `updated_at` after them, each lookup is one step down the index
//! (the live one is its last entry for the status), whatever the number of deployments.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE INDEX deployments_in_release_train
    ON deployments (service, environment, status, updated_at, id);
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS deployments_in_release_train;
"#;

/// PostgreSQL: the same statements (plain SQL that both engines read alike).
const PG_UP: &str = UP;
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
