//! Promotion, inside the writer's transaction: read the source and the release train, let
//! the domain decide, insert the new deployment and its CREATED event.

use sea_orm::{EntityTrait, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::environment;
use super::statements::Run;
use super::{environments, now, rows, writer, Store, StoreError, Written};
use crate::domain::{Deployment, Place, ProductionEnvironments, Promotion, PromotionRefused};

impl Store {
    /// Creates, in one transaction through the writer, a new deployment of the source's
    /// service and version in a later environment (see [`Promotion`]). A named target
    /// that is new is registered first; a refused promotion registers nothing.
    ///
    /// With an idempotency key that was used before: a retry of the same promotion gets
    /// the original deployment (as it is now) and its CREATED event, and nothing is
    /// written; anything else gets `IdempotencyConflict`.
    #[tracing::instrument(skip_all, fields(source = %promotion.source()))]
    pub async fn promote(&self, promotion: Promotion) -> Result<Written, StoreError> {
        self.submit(writer::Write::Promote(promotion)).await
    }
}

/// The promotion's outcome, and whether it wrote anything (false for an idempotent retry).
pub(super) async fn promote(
    txn: &impl Run,
    promotion: &Promotion,
    production: &ProductionEnvironments,
) -> Result<(Written, bool), StoreError> {
    if let Some(key) = promotion.idempotency_key() {
        if let Some(original) = writer::created_with_key(txn, key).await? {
            let source = match original.deployment.promoted_from {
                Some(id) if id == promotion.source() => find(txn, id).await?,
                _ => None,
            };
            if !source.is_some_and(|s| promotion.is_retry_of(&original.deployment, &s)) {
                return Err(StoreError::IdempotencyConflict {
                    key: key.to_owned(),
                });
            }
            return Ok((original, false));
        }
    }
    let source = find(txn, promotion.source())
        .await?
        .ok_or(StoreError::NotFound(promotion.source()))?;
    // Both ends are in the train: the source's environment (registered when the source
    // was created), and a named target, registered by use if it is new.
    environments::registered(txn, &source.environment, production).await?;
    if let Some(name) = promotion.environment() {
        environments::registered(txn, name, production).await?;
    }
    let train: Vec<Place> = environment::Entity::find()
        .select_only()
        .column(environment::Column::Name)
        .column(environment::Column::Position)
        .order_by_asc(environment::Column::Position)
        .order_by_asc(environment::Column::Name)
        .into_tuple::<(String, i64)>()
        .all(txn)
        .await?
        .into_iter()
        .map(|(name, position)| {
            i32::try_from(position)
                .map(|position| Place::new(name, position))
                .map_err(|_| StoreError::Corrupt("an environment's position".into()))
        })
        .collect::<Result<_, _>>()?;
    let target = promotion
        .target(&source, &train)
        .map_err(|refused| match refused {
            PromotionRefused::Refused(refusal) => StoreError::Refused(refusal),
            PromotionRefused::Invalid(errors) => StoreError::Invalid(errors),
        })?;
    let target = environments::registered(txn, &target.name, production).await?;
    let (deployment, event) = promotion
        .create(&source, &target, Uuid::now_v7(), Uuid::now_v7(), now())
        .map_err(StoreError::Invalid)?;
    rows::insert_deployment(txn, &deployment, promotion.idempotency_key()).await?;
    let event = rows::insert_event(txn, event).await?;
    Ok((Written { deployment, event }, true))
}

async fn find(txn: &impl Run, id: Uuid) -> Result<Option<Deployment>, StoreError> {
    rows::find_deployment(txn, &id.to_string()).await
}
