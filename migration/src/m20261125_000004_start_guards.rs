//! Version 2, guards on start.
//!
//! - `deployments_one_started`: a partial unique index, so the database itself holds at
//!   most one STARTED deployment per (service, environment). The writer checks first and
//!   refuses with ENVIRONMENT_BUSY; the index is there so that no code path can get round
//!   the rule.
//! - `deployments_by_service_environment_status`: the OUTDATED lookup (the newest
//!   SUCCEEDED deployment of a service in an environment, by creation) is one step down
//!   this index, whatever the number of deployments.
//! - Version 1 allowed several STARTED deployments of one (service, environment); the
//!   index cannot exist beside them. Of each such group, every deployment but the one
//!   started last is failed by `shiplog`, with a FAILED event whose note says why, so an
//!   upgraded database keeps a history that explains its state (nothing is deleted).
//! - `deployment_events.overrides`: a JSON array of the guard names (BlockerKind) the
//!   action overrode; `[]` for every event written before and for most after. Adding a
//!   column fires no trigger, and the append-only triggers only look at `seq` and `id`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// STARTED deployments with a later-started STARTED deployment of the same place.
const SUPERSEDED: &str = r#"
SELECT id, service, environment, updated_at FROM deployments AS d
WHERE status = 'STARTED' AND EXISTS (
    SELECT 1 FROM deployments AS later
    WHERE later.service = d.service AND later.environment = d.environment
      AND later.status = 'STARTED'
      AND (later.updated_at > d.updated_at OR (later.updated_at = d.updated_at AND later.id > d.id)))
"#;

const SUPERSEDED_NOTE: &str = "Failed by the upgrade to version 2: another deployment of this \
    service and environment was started later while this one had no outcome, and version 2 \
    allows one STARTED deployment per service and environment.";

const UP: &str = r#"
CREATE UNIQUE INDEX deployments_one_started
    ON deployments (service, environment) WHERE status = 'STARTED';
CREATE INDEX deployments_by_service_environment_status
    ON deployments (service, environment, status, created_at, id);
ALTER TABLE deployment_events ADD COLUMN overrides TEXT NOT NULL DEFAULT '[]';
"#;

const DOWN: &str = r#"
ALTER TABLE deployment_events DROP COLUMN overrides;
DROP INDEX IF EXISTS deployments_by_service_environment_status;
DROP INDEX IF EXISTS deployments_one_started;
"#;

/// PostgreSQL: the same statements (a partial unique index, an index, a column with a
/// default: plain SQL that both engines read alike). Adding or dropping a column fires no
/// trigger on PostgreSQL either.
const PG_UP: &str = UP;
const PG_DOWN: &str = DOWN;

/// The FAILED event of a superseded start, with each engine's placeholders.
const INSERT_FAILED_EVENT: &str =
    "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
     note, from_status, to_status, occurred_at) \
     VALUES (?, ?, ?, ?, 'FAILED', 'shiplog', ?, 'STARTED', 'FAILED', ?)";
const PG_INSERT_FAILED_EVENT: &str =
    "INSERT INTO deployment_events (id, deployment_id, service, environment, kind, actor, \
     note, from_status, to_status, occurred_at) \
     VALUES ($1, $2, $3, $4, 'FAILED', 'shiplog', $5, 'STARTED', 'FAILED', $6)";

/// The superseded start itself, failed.
const FAIL_DEPLOYMENT: &str =
    "UPDATE deployments SET status = 'FAILED', updated_at = ? WHERE id = ? AND status = 'STARTED'";
const PG_FAIL_DEPLOYMENT: &str =
    "UPDATE deployments SET status = 'FAILED', updated_at = $1 WHERE id = $2 AND status = 'STARTED'";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        fail_superseded_starts(manager).await?;
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

async fn fail_superseded_starts(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    use sea_orm_migration::sea_orm::{ConnectionTrait, Statement};
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let insert_event = crate::for_backend(manager, INSERT_FAILED_EVENT, PG_INSERT_FAILED_EVENT)?;
    let fail_deployment = crate::for_backend(manager, FAIL_DEPLOYMENT, PG_FAIL_DEPLOYMENT)?;
    let rows = db
        .query_all_raw(Statement::from_string(backend, SUPERSEDED))
        .await?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| <i64 as std::convert::TryFrom<u128>>::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    for row in rows {
        let id: String = row.try_get("", "id")?;
        let service: String = row.try_get("", "service")?;
        let environment: String = row.try_get("", "environment")?;
        let updated_at: i64 = row.try_get("", "updated_at")?;
        // Never before the deployment's last change, like every event.
        let at = Ord::max(now_ms, updated_at);
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            insert_event,
            [
                uuid::Uuid::now_v7().to_string().into(),
                id.clone().into(),
                service.into(),
                environment.into(),
                SUPERSEDED_NOTE.into(),
                at.into(),
            ],
        ))
        .await?;
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            fail_deployment,
            [at.into(), id.into()],
        ))
        .await?;
    }
    Ok(())
}
