//! `Query.releaseTrain`'s output types. The stops' deployments are ordinary `Deployment`
//! objects: their nested fields (events, approvals) load through the same DataLoaders,
//! one statement for the whole train.

use async_graphql::Object;

use super::types::{DeploymentObject, EnvironmentObject};
use crate::domain::{ReleaseTrain, TrainStop};

/// One service across the environments, in release-train order.
pub struct ReleaseTrainObject(pub ReleaseTrain);

/// One service across the environments, in release-train order.
#[Object(name = "ReleaseTrain")]
impl ReleaseTrainObject {
    async fn service(&self) -> &str {
        &self.0.service
    }
    /// One stop per known environment, in release-train order.
    async fn stops(&self) -> Vec<ReleaseTrainStopObject> {
        self.0
            .stops
            .iter()
            .cloned()
            .map(ReleaseTrainStopObject)
            .collect()
    }
}

/// One environment of a release train.
pub struct ReleaseTrainStopObject(TrainStop);

#[Object(name = "ReleaseTrainStop")]
impl ReleaseTrainStopObject {
    async fn environment(&self) -> EnvironmentObject {
        EnvironmentObject(self.0.environment.clone())
    }
    /// What runs here now: of the service's deployments here whose status is SUCCEEDED, the one that succeeded last. Null when none.
    async fn live(&self) -> Option<DeploymentObject> {
        self.0.live.clone().map(DeploymentObject::new)
    }
    /// The service's deployments here that are APPROVED or STARTED, oldest first.
    async fn in_flight(&self) -> Vec<DeploymentObject> {
        self.0
            .in_flight
            .iter()
            .cloned()
            .map(DeploymentObject::new)
            .collect()
    }
    /// The service's deployments here that are PENDING_APPROVAL, oldest first.
    async fn pending(&self) -> Vec<DeploymentObject> {
        self.0
            .pending
            .iter()
            .cloned()
            .map(DeploymentObject::new)
            .collect()
    }
    /// The live deployment of the nearest earlier stop that has one, when its version differs from this stop's live version (or this stop has none); else null.
    async fn promotable(&self) -> Option<DeploymentObject> {
        self.0.promotable.clone().map(DeploymentObject::new)
    }
}
