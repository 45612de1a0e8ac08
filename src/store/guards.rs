//! The facts the guards on start decide on: read inside the start's write transaction
//! for a start, and for a whole page at once for `Deployment.blockers`. Every lookup is
//! one step down an index: `deployments_one_started` (the partial unique index that also
//! makes the database refuse a second STARTED deployment of a service in an environment)
//! and `deployments_by_service_environment_status` (the newest SUCCEEDED one by creation).

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use uuid::Uuid;

use super::entity::deployment;
use super::statements::{self, Bind, Run};
use super::{rows, Store, StoreError};
use crate::domain::{Deployment, Refusal, StartFacts, Status};

/// What `deployments_one_started` reports when an UPDATE would make a second STARTED row.
const ONE_STARTED_COLUMNS: &str = "deployments.service, deployments.environment";

/// The facts of a start of `d`, read in the write transaction `txn`.
pub(super) async fn start_facts(txn: &impl Run, d: &Deployment) -> Result<StartFacts, StoreError> {
    Ok(StartFacts {
        started: started_in(txn, d).await?,
        newer_succeeded: newer_succeeded(txn, d).await?,
    })
}

/// The STARTED deployment of `d`'s service and environment, other than `d`.
async fn started_in(txn: &impl Run, d: &Deployment) -> Result<Option<Uuid>, StoreError> {
    let id = d.id.to_string();
    let found = txn
        .row(
            &statements::OTHER_STARTED,
            &[
                Bind::Text(&d.service),
                Bind::Text(&d.environment),
                Bind::Text(&id),
            ],
            |row| row.text(0),
        )
        .await?;
    found.as_deref().map(uuid).transpose()
}

/// The newest SUCCEEDED deployment of `d`'s service and environment created after `d`.
async fn newer_succeeded(txn: &impl Run, d: &Deployment) -> Result<Option<Uuid>, StoreError> {
    let id = d.id.to_string();
    let found = txn
        .row(
            &statements::NEWER_SUCCEEDED,
            &[
                Bind::Text(&d.service),
                Bind::Text(&d.environment),
                Bind::Int(d.created_at.timestamp_millis()),
                Bind::Text(&id),
            ],
            |row| row.text(0),
        )
        .await?;
    found.as_deref().map(uuid).transpose()
}

/// The answer of the UPDATE that starts `d`: should `deployments_one_started` have refused
/// it (a path that skipped the guards), the refusal is ENVIRONMENT_BUSY like the guard's.
pub(super) async fn one_started<T>(
    txn: &impl Run,
    d: &Deployment,
    updated: Result<T, DbErr>,
) -> Result<T, StoreError> {
    match updated {
        Err(err) if is_second_started(&err) => {
            tracing::warn!(id = %d.id, "the database refused a second STARTED deployment");
            match started_in(txn, d).await? {
                Some(blocked_by) => Err(Refusal::EnvironmentBusy { blocked_by }.into()),
                None => Err(err.into()),
            }
        }
        other => Ok(other?),
    }
}

fn is_second_started(err: &DbErr) -> bool {
    super::direct::unique_violation(err).is_some_and(|m| m.contains(ONE_STARTED_COLUMNS))
}

/// Per (service, environment): its STARTED deployment, and its newest SUCCEEDED one by
/// creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceFacts {
    pub started: Option<Arc<Deployment>>,
    pub newest_succeeded: Option<Arc<Deployment>>,
}

impl PlaceFacts {
    /// The start facts of `d`, one of the deployments of this place.
    pub fn for_deployment(&self, d: &Deployment) -> StartFacts {
        let key = |d: &Deployment| (d.created_at.timestamp_millis(), d.id);
        StartFacts {
            started: self.started.as_ref().map(|s| s.id).filter(|id| *id != d.id),
            newer_succeeded: self
                .newest_succeeded
                .as_ref()
                .filter(|newest| key(newest) > key(d))
                .map(|newest| newest.id),
        }
    }

    /// The deployment with this id, if it is one of these facts.
    pub fn deployment(&self, id: Uuid) -> Option<Arc<Deployment>> {
        [&self.started, &self.newest_succeeded]
            .into_iter()
            .flatten()
            .find(|d| d.id == id)
            .cloned()
    }
}

/// Places per statement: two parameters each, twice.
const PLACES_PER_STATEMENT: usize = 200;

impl Store {
    /// The guard facts of these (service, environment) places: one statement per 200
    /// places, each lookup one step down an index.
    pub async fn place_facts(
        &self,
        places: &[(String, String)],
    ) -> Result<HashMap<(String, String), PlaceFacts>, StoreError> {
        let mut found: HashMap<(String, String), PlaceFacts> = places
            .iter()
            .map(|place| (place.clone(), PlaceFacts::default()))
            .collect();
        let backend = self.read.get_database_backend();
        for chunk in places.chunks(PLACES_PER_STATEMENT) {
            let values = vec!["(?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "WITH p(service, environment) AS (VALUES {values}) \
                 SELECT d.* \
                 FROM p CROSS JOIN deployments d \
                   ON d.service = p.service AND d.environment = p.environment \
                      AND d.status = 'STARTED' \
                 UNION ALL \
                 SELECT d.* \
                 FROM p CROSS JOIN deployments d \
                   ON d.id = (SELECT l.id FROM deployments l \
                              WHERE l.service = p.service AND l.environment = p.environment \
                                AND l.status = 'SUCCEEDED' \
                              ORDER BY l.created_at DESC, l.id DESC LIMIT 1)"
            );
            let params = chunk
                .iter()
                .flat_map(|(s, e)| [s.as_str().into(), e.as_str().into()]);
            let rows = self
                .read
                .query_all_raw(super::sql::statement(
                    backend,
                    &sql,
                    params.collect::<Vec<sea_orm::Value>>(),
                ))
                .await?;
            for row in rows {
                let d = rows::deployment(deployment::Model::from_query_result(&row, "")?)?;
                let facts = found
                    .entry((d.service.clone(), d.environment.clone()))
                    .or_default();
                if d.status == Status::Started {
                    facts.started = Some(Arc::new(d));
                } else {
                    facts.newest_succeeded = Some(Arc::new(d));
                }
            }
        }
        Ok(found)
    }
}

fn uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("id {s:?}: {e}")))
}
