//! What a release-notes draft covers: three statements, whatever the number of
//! deployments.
//!
//! 1. and 2. The service's release train (`train.rs`): its live deployment in the target
//!    environment is the base, by the train's own rule.
//! 3. The newest deployment of the target version, and the service's deployments
//!    created from the base's creation time (or from the start, when nothing is live)
//!    up to that one's: both down `deployments_by_service` (service, created_at, id).
//!
//! The domain (`domain::release_notes`) picks the covered ones exactly from these. The
//! notes of their events, which only the model's prompt needs, are a fourth statement
//! (`Store::events_of`), left to the caller.

use sea_orm::{ConnectionTrait, FromQueryResult};

use super::entity::deployment;
use super::{rows, Store, StoreError};
use crate::domain::release_notes::{DraftRequest, DraftScope};

/// The newest deployment of the version (parameters: service, version), then the
/// service's deployments created in [lower bound, its creation time] (parameters:
/// service, lower bound in ms, service, version).
pub const DRAFT_DEPLOYMENTS: &str = "\
SELECT d.* FROM deployments d \
WHERE d.id = (SELECT t.id FROM deployments t WHERE t.service = ? AND t.version = ? \
              ORDER BY t.created_at DESC, t.id DESC LIMIT 1) \
UNION ALL \
SELECT d.* FROM deployments d \
WHERE d.service = ? AND d.created_at >= ? \
  AND d.created_at <= (SELECT t.created_at FROM deployments t \
                       WHERE t.service = ? AND t.version = ? \
                       ORDER BY t.created_at DESC, t.id DESC LIMIT 1)";

impl Store {
    /// What a draft for `request` (already checked) covers; `None` when the service has
    /// no deployment of the version.
    #[tracing::instrument(skip(self))]
    pub async fn release_notes_scope(
        &self,
        request: &DraftRequest,
    ) -> Result<Option<DraftScope>, StoreError> {
        let train = self.release_train(&request.service).await?;
        let base = train
            .stops
            .into_iter()
            .find(|stop| stop.environment.name == request.environment)
            .and_then(|stop| stop.live);
        let lower = base
            .as_ref()
            .map_or(i64::MIN, |b| b.created_at.timestamp_millis());
        let found = self
            .read
            .query_all_raw(super::sql::statement(
                self.read.get_database_backend(),
                DRAFT_DEPLOYMENTS,
                [
                    request.service.as_str().into(),
                    request.version.as_str().into(),
                    request.service.as_str().into(),
                    lower.into(),
                    request.service.as_str().into(),
                    request.version.as_str().into(),
                ],
            ))
            .await?;
        let deployments = found
            .iter()
            .map(|row| rows::deployment(deployment::Model::from_query_result(row, "")?))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(DraftScope::assemble(request, base, deployments))
    }
}
