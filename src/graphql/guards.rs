//! `Deployment.blockers` and `DeploymentEvent.overrides`: the guards on start as the API
//! shows them. The domain decides what blocks; this module only translates.

use std::future::Future;
use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Enum, Object};

use super::error::ApiError;
use super::freeze::FreezeWindowObject;
use super::loaders::{DeploymentLoader, PlaceFactsLoader};
use super::types::{DateTime, DeploymentObject};
use crate::domain::{self, Approvals, Deployment, EventKind, Status};
use crate::store::{PlaceFacts, StoredEvent};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "BlockerKind", remote = "domain::BlockerKind")]
pub enum BlockerKind {
    /// PENDING_APPROVAL: fewer distinct approvals than required.
    AwaitingApproval,
    /// Another deployment of the same service and environment is STARTED.
    EnvironmentBusy,
    /// A deployment of the same service and environment created later than this one is SUCCEEDED.
    Outdated,
    /// A freeze period covering this environment is in force.
    Frozen,
}

/// One reason startDeployment would be refused now.
/// The blocking deployment comes with it: the facts were read with it.
pub struct BlockerObject(domain::Blocker, Option<Arc<Deployment>>);

#[Object(name = "Blocker")]
impl BlockerObject {
    async fn kind(&self) -> BlockerKind {
        self.0.kind.into()
    }
    /// For people, e.g. 'waiting for 1 more approval', 'frozen until 2026-12-27T00:00:00.000Z: year-end freeze'.
    async fn message(&self) -> &str {
        &self.0.message
    }
    /// ENVIRONMENT_BUSY: the STARTED deployment. OUTDATED: the newer SUCCEEDED one.
    async fn deployment(&self, ctx: &Context<'_>) -> Result<Option<DeploymentObject>, ApiError> {
        let Some(id) = self.0.deployment else {
            return Ok(None);
        };
        if let Some(found) = &self.1 {
            return Ok(Some(DeploymentObject::new(found.clone())));
        }
        let loader = ctx
            .data::<DataLoader<DeploymentLoader>>()
            .map_err(|_| ApiError::Internal)?;
        Ok(loader.load_one(id).await?.map(DeploymentObject::new))
    }
    /// FROZEN: the window in force, and when its period ends.
    async fn freeze_window(&self) -> Option<FreezeWindowObject> {
        self.0.freeze_window.clone().map(FreezeWindowObject::from)
    }
    async fn until(&self) -> Option<DateTime> {
        self.0.until.map(DateTime)
    }
    /// Whether startDeployment may override it. True for FROZEN only.
    async fn overridable(&self) -> bool {
        self.0.kind.overridable()
    }
}

/// The blockers of `deployment`, given its events (for the approvals of a pending one).
/// The facts of its (service, environment) come through the loader while the events
/// load: a page of deployments costs one statement for all of them.
pub async fn blockers_of(
    ctx: &Context<'_>,
    deployment: &Deployment,
    events: impl Future<Output = Result<Option<Arc<Vec<StoredEvent>>>, ApiError>>,
    preloaded: Option<PlaceFacts>,
) -> Result<Vec<BlockerObject>, ApiError> {
    if !matches!(
        deployment.status,
        Status::PendingApproval | Status::Approved
    ) {
        return Ok(Vec::new());
    }
    let loader = ctx
        .data::<DataLoader<PlaceFactsLoader>>()
        .map_err(|_| ApiError::Internal)?;
    let place = (deployment.service.clone(), deployment.environment.clone());
    // The freeze windows load with the facts, so that a page batches them in one statement.
    let frozen = super::freeze::frozen_blocker(ctx, &deployment.environment);
    // A page hands its deployments the facts of their places, read with the page.
    let place_facts = async {
        match preloaded {
            Some(facts) => Ok(Some(facts)),
            None => loader.load_one(place).await,
        }
    };
    let (events, place_facts, frozen) = futures_util::try_join!(events, place_facts, frozen)?;
    let place_facts = place_facts.unwrap_or_default();
    let facts = place_facts.for_deployment(deployment);
    let approvals = Approvals::new(
        events
            .iter()
            .flat_map(|events| events.iter())
            .filter(|e| e.event.kind == EventKind::Approved)
            .map(|e| e.event.actor.clone()),
    );
    let mut found = domain::blockers(deployment, &approvals, &facts);
    // FROZEN comes last, in the contract's order.
    found.extend(frozen);
    Ok(found
        .into_iter()
        .map(|blocker| {
            let with = blocker.deployment.and_then(|id| place_facts.deployment(id));
            BlockerObject(blocker, with)
        })
        .collect())
}
