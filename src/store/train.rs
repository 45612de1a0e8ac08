//! The release train of a service: two statements, whatever the number of environments
//! and deployments.
//!
//! 1. The known environments, in train order.
//! 2. For each environment, the service's live deployment there (a correlated lookup of
//!    the last entry of `deployments_in_release_train` for (service, environment,
//!    SUCCEEDED): a SUCCEEDED deployment last changed when it succeeded), and the
//!    service's APPROVED, STARTED and PENDING_APPROVAL deployments there (three equality
//!    lookups of the same index). Environments drive the loop (`CROSS JOIN` fixes the
//!    order), so the cost grows with the environments and the rows returned, never with
//!    the deployments stored.
//!
//! The second statement reads one snapshot, so every stop is consistent in itself. An
//! environment registered between the two has no stop yet (its deployments are left
//! out), as if the train had been read a moment earlier.
//!
//! The domain assembles the train from what these return.

use sea_orm::{ConnectionTrait, FromQueryResult};

use super::entity::deployment;
use super::{rows, Store, StoreError};
use crate::domain::{ReleaseTrain, TrainEntry};

/// Per environment: its live deployment (with the commit position of its SUCCEEDED
/// event), then every deployment in flight or pending. Both parameters are the service.
/// The SUCCEEDED event is found among its deployment's few events: left to itself, the
/// planner may prefer the index by kind, and walk every SUCCEEDED event there is.
pub const TRAIN_DEPLOYMENTS: &str = "\
SELECT d.*, (SELECT s.seq FROM deployment_events s INDEXED BY deployment_events_by_deployment \
             WHERE s.deployment_id = d.id AND s.kind = 'SUCCEEDED') AS succeeded_seq \
FROM environments e CROSS JOIN deployments d \
  ON d.id = (SELECT l.id FROM deployments l \
             WHERE l.service = ? AND l.environment = e.name AND l.status = 'SUCCEEDED' \
             ORDER BY l.updated_at DESC, \
                      (SELECT s.seq FROM deployment_events s INDEXED BY deployment_events_by_deployment \
                       WHERE s.deployment_id = l.id AND s.kind = 'SUCCEEDED') DESC, \
                      l.id DESC \
             LIMIT 1) \
UNION ALL \
SELECT d.*, NULL AS succeeded_seq \
FROM environments e CROSS JOIN deployments d \
  ON d.service = ? AND d.environment = e.name \
     AND d.status IN ('APPROVED', 'STARTED', 'PENDING_APPROVAL')";

impl Store {
    /// The release train of `service` (trimmed): one stop per known environment.
    #[tracing::instrument(skip(self))]
    pub async fn release_train(&self, service: &str) -> Result<ReleaseTrain, StoreError> {
        train_in(&self.read, service).await
    }
}

/// The release train of `service` (trimmed) as `conn` (a reader, or a write
/// transaction) sees it.
pub(super) async fn train_in(
    conn: &impl ConnectionTrait,
    service: &str,
) -> Result<ReleaseTrain, StoreError> {
    let service = service.trim();
    let environments = super::environments::all_in(conn).await?;
    let found = conn
        .query_all_raw(super::sql::statement(
            conn.get_database_backend(),
            TRAIN_DEPLOYMENTS,
            [service.into(), service.into()],
        ))
        .await?;
    let entries = found
        .iter()
        .map(|row| {
            let model = deployment::Model::from_query_result(row, "")?;
            let seq: Option<i64> = row.try_get("", "succeeded_seq")?;
            Ok(TrainEntry::new(rows::deployment(model)?, seq))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(ReleaseTrain::assemble(service, environments, entries))
}
