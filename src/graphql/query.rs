use async_graphql::{Context, Object, ID};

use super::error::ApiError;
use super::train::ReleaseTrainObject;
use super::types::EnvironmentObject;
use super::types::{
    parse_id, DeploymentConnection, DeploymentEventConnection, DeploymentEventFilter,
    DeploymentFilter, DeploymentObject, EventObject, Node,
};
use super::{cursor, null_with_error, store};

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

pub struct Query;

#[Object]
impl Query {
    /// A deployment, an event or an environment by its id; null when nothing has it.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>, ApiError> {
        let id = match parse_id("id", &id) {
            Ok(id) => id,
            Err(err) => return Ok(null_with_error(ctx, err)),
        };
        let store = store(ctx)?;
        if let Some(d) = store.deployment(id).await? {
            return Ok(Some(Node::Deployment(DeploymentObject::new(d))));
        }
        if let Some(e) = store.event(id).await? {
            return Ok(Some(Node::DeploymentEvent(EventObject::new(e))));
        }
        if let Some(w) = store.freeze_window(id).await? {
            return Ok(Some(Node::FreezeWindow(w.into())));
        }
        if let Some(w) = store.webhook(id).await? {
            return Ok(Some(Node::Webhook(w.into())));
        }
        if let Some(d) = store.delivery(id).await? {
            return Ok(Some(Node::WebhookDelivery(
                super::integrations::DeliveryObject::new(d),
            )));
        }
        Ok(store
            .environment_by_id(id)
            .await?
            .map(|e| Node::Environment(EnvironmentObject(e))))
    }

    /// Every known environment, in release-train order.
    async fn environments(&self, ctx: &Context<'_>) -> Result<Vec<EnvironmentObject>, ApiError> {
        Ok(store(ctx)?
            .environments()
            .await?
            .into_iter()
            .map(EnvironmentObject)
            .collect())
    }

    /// Null (no error) when no environment has this name.
    async fn environment(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<Option<EnvironmentObject>, ApiError> {
        Ok(store(ctx)?.environment(&name).await?.map(EnvironmentObject))
    }

    /// One service across every known environment, in release-train order.
    async fn release_train(
        &self,
        ctx: &Context<'_>,
        service: String,
    ) -> Result<ReleaseTrainObject, ApiError> {
        let service = crate::domain::train_service("service", &service).map_err(|errors| {
            ApiError::BadUserInput(errors.0.into_iter().map(|e| (e.field, e.message)).collect())
        })?;
        Ok(ReleaseTrainObject(
            store(ctx)?.release_train(&service).await?,
        ))
    }

    /// Not removed, oldest first; with environment: that environment's and the global ones.
    async fn freeze_windows(
        &self,
        ctx: &Context<'_>,
        environment: Option<String>,
    ) -> Result<Vec<super::freeze::FreezeWindowObject>, ApiError> {
        super::freeze::list(ctx, environment.as_deref()).await
    }

    /// Null plus a NOT_FOUND error when no deployment has this id.
    async fn deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<DeploymentObject>, ApiError> {
        let uuid = match parse_id("id", &id) {
            Ok(uuid) => uuid,
            Err(err) => return Ok(null_with_error(ctx, err)),
        };
        match store(ctx)?.deployment(uuid).await? {
            Some(d) => Ok(Some(DeploymentObject::new(d))),
            None => Ok(null_with_error(
                ctx,
                ApiError::NotFound {
                    id: uuid.to_string(),
                },
            )),
        }
    }

    /// Newest first. first: default 20, 0..=100.
    #[graphql(complexity = "page_size_hint(first) * child_complexity")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeploymentFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<DeploymentConnection, ApiError> {
        let first = page_size(first)?;
        let after = after
            .map(|c| cursor::parse_deployment("after", &c))
            .transpose()?;
        let filter = filter.unwrap_or_default().into();
        let store = store(ctx)?;
        let page = store.deployment_page(&filter, first, after).await?;
        // When the document asks for the page's events, load them all in one statement
        // now rather than leave it to per-row resolvers.
        // (`approvals` are some of the events; `blockers` counts them.)
        let look_ahead = ctx.look_ahead();
        let wants_events = ["events", "approvals", "blockers"]
            .into_iter()
            .any(|field| {
                look_ahead
                    .field("edges")
                    .field("node")
                    .field(field)
                    .exists()
                    || look_ahead.field("nodes").field(field).exists()
            });
        let events = if wants_events && !page.items.is_empty() {
            let ids: Vec<_> = page.items.iter().map(|d| d.id).collect();
            Some(store.events_of(&ids).await?)
        } else {
            None
        };
        let connection = DeploymentConnection::new(page, events, after.is_some(), filter);
        // Likewise the guard facts of the page's places, for `blockers`.
        let wants_blockers = look_ahead
            .field("edges")
            .field("node")
            .field("blockers")
            .exists()
            || look_ahead.field("nodes").field("blockers").exists();
        let places = connection.blockable_places();
        if wants_blockers && !places.is_empty() {
            let facts = store.place_facts(&places).await?;
            return Ok(connection.with_place_facts(&facts));
        }
        Ok(connection)
    }

    /// The audit feed across deployments, oldest first. first: default 20, 0..=100.
    #[graphql(complexity = "page_size_hint(first) * child_complexity")]
    async fn deployment_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeploymentEventFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<DeploymentEventConnection, ApiError> {
        let first = page_size(first)?;
        let after = after
            .map(|c| cursor::parse_event("after", &c))
            .transpose()?;
        let filter = filter.unwrap_or_default().into_store("filter")?;
        let page = store(ctx)?.event_page(&filter, first, after).await?;
        Ok(DeploymentEventConnection::new(page, after.is_some()))
    }

    /// A draft for promoting `version` of `service` into `environment`: covers the deployments of the service after the version live there, up to `version`.
    async fn draft_release_notes(
        &self,
        ctx: &Context<'_>,
        service: String,
        environment: String,
        version: String,
    ) -> Result<super::release_notes::ReleaseNotesDraftObject, ApiError> {
        // It may ask a language model, and says when it was drafted.
        super::volatile(ctx);
        super::release_notes::draft(ctx, &service, &environment, &version).await
    }

    /// Every webhook, oldest first.
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<super::integrations::WebhookObject>, ApiError> {
        super::integrations::webhooks(ctx).await
    }

    /// Every deployment target, by service and environment.
    async fn deployment_targets(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<super::integrations::TargetObject>, ApiError> {
        super::integrations::targets(ctx).await
    }
}

pub(super) fn page_size(first: Option<i32>) -> Result<u64, ApiError> {
    match first.unwrap_or(DEFAULT_PAGE_SIZE) {
        n @ 0..=MAX_PAGE_SIZE => Ok(n as u64),
        _ => Err(ApiError::bad_input(
            "first",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// The page size a query asks for, as the complexity analysis counts it.
pub(super) fn page_size_hint(first: Option<i32>) -> usize {
    first.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, MAX_PAGE_SIZE) as usize
}
