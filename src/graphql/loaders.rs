//! DataLoaders: the nested fields of a page cost one statement per field, not one per row.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain::Deployment;
use crate::store::{PlaceFacts, Store, StoredEvent};

/// `Deployment.events`: every event of many deployments at once.
pub struct EventsLoader(pub Store);

impl Loader<Uuid> for EventsLoader {
    type Value = Arc<Vec<StoredEvent>>;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let by_deployment = self.0.events_of(keys).await?;
        Ok(by_deployment
            .into_iter()
            .map(|(id, events)| (id, Arc::new(events)))
            .collect())
    }
}

/// `DeploymentEvent.deployment`: many deployments by id at once.
pub struct DeploymentLoader(pub Store);

impl Loader<Uuid> for DeploymentLoader {
    type Value = Arc<Deployment>;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let found = self.0.deployments_by_ids(keys).await?;
        Ok(found.into_iter().map(|(id, d)| (id, Arc::new(d))).collect())
    }
}

/// `Deployment.blockers`: the guard facts of many (service, environment) places at once.
pub struct PlaceFactsLoader(pub Store);

impl Loader<(String, String)> for PlaceFactsLoader {
    type Value = PlaceFacts;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[(String, String)],
    ) -> Result<HashMap<(String, String), Self::Value>, Self::Error> {
        Ok(self.0.place_facts(keys).await?)
    }
}
