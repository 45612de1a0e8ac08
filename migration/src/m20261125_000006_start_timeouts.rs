//! Version 2, start timeouts: when a deployment started, and when the server fails it
//! for want of an outcome.
//!
//! - `deployments.started_at`: the time of its STARTED event (milliseconds, like every
//!   time column); null until it starts. Existing deployments that have started are
//!   filled in from their STARTED event.
//! - `deployments.start_deadline`: the start time plus its environment's start timeout
//!   in force at the start; null when there was none. Kept after the outcome.
//! - `deployments_start_deadlines`: the STARTED deployments by deadline, so that the
//!   timeout task finds the next deadline in one step down an index, however many
//!   deployments there are. Partial: only STARTED deployments with a deadline are in it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
ALTER TABLE deployments ADD COLUMN started_at INTEGER;
ALTER TABLE deployments ADD COLUMN start_deadline INTEGER;

UPDATE deployments
   SET started_at = (SELECT MIN(e.occurred_at) FROM deployment_events e
                      WHERE e.deployment_id = deployments.id AND e.kind = 'STARTED')
 WHERE status IN ('STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK');

CREATE INDEX deployments_start_deadlines
    ON deployments (start_deadline, id)
 WHERE status = 'STARTED' AND start_deadline IS NOT NULL;
"#;

const DOWN: &str = r#"
DROP INDEX IF EXISTS deployments_start_deadlines;
ALTER TABLE deployments DROP COLUMN start_deadline;
ALTER TABLE deployments DROP COLUMN started_at;
"#;

/// PostgreSQL: the same, BIGINT for INTEGER (the fill-in UPDATE and the partial index
/// read alike on both engines).
const PG_UP: &str = r#"
ALTER TABLE deployments ADD COLUMN started_at BIGINT;
ALTER TABLE deployments ADD COLUMN start_deadline BIGINT;

UPDATE deployments
   SET started_at = (SELECT MIN(e.occurred_at) FROM deployment_events e
                      WHERE e.deployment_id = deployments.id AND e.kind = 'STARTED')
 WHERE status IN ('STARTED', 'SUCCEEDED', 'FAILED', 'ROLLED_BACK');

CREATE INDEX deployments_start_deadlines
    ON deployments (start_deadline, id)
 WHERE status = 'STARTED' AND start_deadline IS NOT NULL;
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
