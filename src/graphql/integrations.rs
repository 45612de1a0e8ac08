//! Webhooks, their deliveries, deploy targets and executions over GraphQL: the types,
//! their inputs, and the resolvers `query.rs`, `mutation.rs` and `Deployment` delegate
//! to. Secrets are write-only: no type here has a field that could show one.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{ComplexObject, Context, Enum, InputObject, MaybeUndefined, Object, ID};
use uuid::Uuid;

use super::cursor;
use super::error::ApiError;
use super::store;
use super::types::{parse_id, DateTime, DeploymentEventKind, EventObject, PageInfo};
use crate::domain::integrations::{
    self as domain, DeliveryStatus, DeploymentTarget, Execution, ExecutorSettings, NewTarget,
    NewWebhook, TargetRequest, Webhook, WebhookRequest, WebhookUpdate, WebhookUpdateRequest,
};
use crate::domain::{EventKind, Setting};
use crate::outbox::OutboxSender;
use crate::store::{Attempt, Delivery, Store, StoredEvent};

// ------------------------------------------------------------------ enums

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "WebhookDeliveryStatus", remote = "domain::DeliveryStatus")]
pub enum WebhookDeliveryStatus {
    /// Not yet delivered; another attempt is scheduled.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Every attempt failed; no more are scheduled (redeliverWebhookDelivery schedules one).
    Failed,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ExecutorKind", remote = "domain::ExecutorKind")]
pub enum ExecutorKind {
    /// workflow_dispatch of a GitHub Actions workflow with inputs environment and ref.
    #[graphql(name = "GITHUB_ACTIONS")]
    GitHubActions,
    /// A signed POST (Standard Webhooks) to a URL.
    Http,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ExecutionStatus", remote = "domain::ExecutionStatus")]
pub enum ExecutionStatus {
    /// Waiting to be triggered, or waiting for a retry.
    Pending,
    /// The executor accepted the trigger.
    Triggered,
    /// Triggering failed for good; the deployment was FAILED with the reason.
    Failed,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ExecutionAction", remote = "domain::ExecutionAction")]
pub enum ExecutionAction {
    /// After a start: deploy the deployment's version.
    Deploy,
    /// After a rollback: deploy the version live after it.
    Rollback,
}

// ------------------------------------------------------------------ webhooks

/// Sends every matching event to a URL: at least once, signed (Standard Webhooks), retried with backoff.
#[derive(Clone)]
pub struct WebhookObject(pub Arc<Webhook>);

impl From<Webhook> for WebhookObject {
    fn from(w: Webhook) -> Self {
        Self(Arc::new(w))
    }
}

/// Sends every matching event to a URL: at least once, signed (Standard Webhooks), retried with backoff.
#[Object(name = "Webhook")]
impl WebhookObject {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// Null filter fields match everything.
    async fn service(&self) -> Option<&str> {
        self.0.service.as_deref()
    }
    async fn environment(&self) -> Option<&str> {
        self.0.environment.as_deref()
    }
    async fn kind(&self) -> Option<Vec<DeploymentEventKind>> {
        self.0
            .kinds
            .as_ref()
            .map(|kinds| kinds.iter().map(|&k| k.into()).collect())
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    /// Who changed it last (created, updated).
    async fn updated_by(&self) -> &str {
        &self.0.updated_by
    }
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
    /// Newest first. first: default 20, 0..=100.
    #[graphql(complexity = "super::query::page_size_hint(first) * child_complexity")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<Vec<WebhookDeliveryStatus>>,
    ) -> Result<WebhookDeliveryConnection, ApiError> {
        let first = super::query::page_size(first)?;
        let after = after
            .map(|c| cursor::parse_delivery("after", &c))
            .transpose()?;
        let statuses: Option<Vec<DeliveryStatus>> =
            status.map(|s| s.into_iter().map(Into::into).collect());
        let store = store(ctx)?;
        let page = store
            .delivery_page(self.0.id, first, after, statuses.as_deref())
            .await?;
        let seqs: Vec<i64> = page.items.iter().map(|d| d.seq).collect();
        let mut attempts = store.attempts_of(&seqs).await?;
        let nodes: Vec<DeliveryObject> = page
            .items
            .into_iter()
            .map(|d| DeliveryObject {
                attempts: Some(Arc::new(attempts.remove(&d.seq).unwrap_or_default())),
                webhook: Some(self.clone()),
                delivery: d,
            })
            .collect();
        Ok(WebhookDeliveryConnection {
            page_info: PageInfo {
                has_next_page: page.has_next,
                has_previous_page: after.is_some(),
                start_cursor: nodes.first().map(|d| cursor::delivery(d.delivery.seq)),
                end_cursor: nodes.last().map(|d| cursor::delivery(d.delivery.seq)),
            },
            nodes,
        })
    }
}

#[derive(Clone)]
pub struct DeliveryObject {
    delivery: Delivery,
    /// Its attempts, when loaded with its page.
    attempts: Option<Arc<Vec<Attempt>>>,
    /// Its webhook, when whoever built this had it.
    webhook: Option<WebhookObject>,
}

impl DeliveryObject {
    pub fn new(delivery: Delivery) -> Self {
        Self {
            delivery,
            attempts: None,
            webhook: None,
        }
    }
}

#[Object(name = "WebhookDelivery")]
impl DeliveryObject {
    /// Also sent as the webhook-id header: receivers deduplicate on it.
    pub async fn id(&self) -> ID {
        ID(self.delivery.id.to_string())
    }
    async fn webhook(&self, ctx: &Context<'_>) -> Result<WebhookObject, ApiError> {
        if let Some(w) = &self.webhook {
            return Ok(w.clone());
        }
        match store(ctx)?.webhook(self.delivery.webhook_id).await? {
            Some(w) => Ok(w.into()),
            None => Err(ApiError::NotFoundOf {
                what: "webhook",
                id: self.delivery.webhook_id.to_string(),
            }),
        }
    }
    async fn event(&self, ctx: &Context<'_>) -> Result<EventObject, ApiError> {
        let loader = ctx
            .data::<DataLoader<EventBySeqLoader>>()
            .map_err(|_| ApiError::Internal)?;
        match loader.load_one(self.delivery.event_seq).await? {
            Some(stored) => Ok(EventObject::new(stored)),
            None => {
                tracing::error!(
                    seq = self.delivery.event_seq,
                    "a delivery refers to a missing event"
                );
                Err(ApiError::Internal)
            }
        }
    }
    async fn status(&self) -> WebhookDeliveryStatus {
        self.delivery.status.into()
    }
    /// Oldest first.
    async fn attempts(&self, ctx: &Context<'_>) -> Result<Vec<AttemptObject>, ApiError> {
        let attempts = match &self.attempts {
            Some(attempts) => attempts.clone(),
            None => Arc::new(
                store(ctx)?
                    .attempts_of(&[self.delivery.seq])
                    .await?
                    .remove(&self.delivery.seq)
                    .unwrap_or_default(),
            ),
        };
        Ok(attempts.iter().cloned().map(AttemptObject).collect())
    }
    async fn next_attempt_at(&self) -> Option<DateTime> {
        self.delivery.next_attempt_at.map(DateTime)
    }
    async fn delivered_at(&self) -> Option<DateTime> {
        self.delivery.delivered_at.map(DateTime)
    }
}

pub struct AttemptObject(Attempt);

#[Object(name = "WebhookAttempt")]
impl AttemptObject {
    async fn at(&self) -> DateTime {
        DateTime(self.0.at)
    }
    /// Null when no HTTP answer came (refused, timed out, blocked address).
    async fn status_code(&self) -> Option<i32> {
        self.0.status_code.map(i32::from)
    }
    /// Why it failed, for people; null on success. Never contains the secret.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn duration_ms(&self) -> i32 {
        i32::try_from(self.0.duration_ms).unwrap_or(i32::MAX)
    }
}

#[derive(async_graphql::SimpleObject)]
#[graphql(complex)]
pub struct WebhookDeliveryConnection {
    #[graphql(skip)]
    nodes: Vec<DeliveryObject>,
    page_info: PageInfo,
}

pub struct WebhookDeliveryEdge {
    node: DeliveryObject,
}

#[Object(name = "WebhookDeliveryEdge")]
impl WebhookDeliveryEdge {
    async fn cursor(&self) -> String {
        cursor::delivery(self.node.delivery.seq)
    }
    async fn node(&self) -> &DeliveryObject {
        &self.node
    }
}

#[ComplexObject]
impl WebhookDeliveryConnection {
    async fn edges(&self) -> Vec<WebhookDeliveryEdge> {
        self.nodes
            .iter()
            .cloned()
            .map(|node| WebhookDeliveryEdge { node })
            .collect()
    }
    async fn nodes(&self) -> &[DeliveryObject] {
        &self.nodes
    }
}

/// `WebhookDelivery.event`: many events by sequence number at once.
pub struct EventBySeqLoader(pub Store);

impl Loader<i64> for EventBySeqLoader {
    type Value = StoredEvent;
    type Error = ApiError;

    async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
        Ok(self
            .0
            .events_by_seqs(keys)
            .await?
            .into_iter()
            .map(|e| (e.seq, e))
            .collect())
    }
}

#[derive(InputObject)]
pub struct CreateWebhookInput {
    pub url: String,
    /// Standard Webhooks secret: whsec_ followed by base64 of 24 to 64 random bytes. Write-only.
    pub secret: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub kind: Option<Vec<DeploymentEventKind>>,
    pub actor: String,
}

/// Absent fields are left as they are; an explicit null clears a filter field.
#[derive(InputObject)]
pub struct UpdateWebhookInput {
    pub id: ID,
    pub actor: String,
    pub url: MaybeUndefined<String>,
    pub secret: MaybeUndefined<String>,
    pub active: MaybeUndefined<bool>,
    pub service: MaybeUndefined<String>,
    pub environment: MaybeUndefined<String>,
    pub kind: MaybeUndefined<Vec<DeploymentEventKind>>,
}

#[derive(InputObject)]
pub struct DeleteWebhookInput {
    pub id: ID,
    pub actor: String,
}

#[derive(InputObject)]
pub struct RedeliverWebhookDeliveryInput {
    pub id: ID,
    pub actor: String,
}

fn setting<T>(value: MaybeUndefined<T>) -> Setting<T> {
    match value {
        MaybeUndefined::Undefined => Setting::Absent,
        MaybeUndefined::Null => Setting::Null,
        MaybeUndefined::Value(v) => Setting::Value(v),
    }
}

fn kinds(kinds: Vec<DeploymentEventKind>) -> Vec<EventKind> {
    kinds.into_iter().map(Into::into).collect()
}

/// Refuses a URL whose host is, or resolves to, an address webhooks may not reach.
async fn check_destination(ctx: &Context<'_>, field: &str, url: &str) -> Result<(), ApiError> {
    let Some(Some(sender)) = ctx.data_opt::<Option<OutboxSender>>() else {
        return Ok(());
    };
    sender
        .0
        .check_destination(url)
        .await
        .map_err(|message| ApiError::bad_input(field, message))
}

/// Joins the problems of several checks of one input into one BAD_USER_INPUT.
fn all_problems(errors: impl IntoIterator<Item = Option<ApiError>>) -> Option<ApiError> {
    let fields: Vec<_> = errors
        .into_iter()
        .flatten()
        .flat_map(ApiError::into_fields)
        .collect();
    (!fields.is_empty()).then_some(ApiError::BadUserInput(fields))
}

pub async fn create_webhook(
    ctx: &Context<'_>,
    input: CreateWebhookInput,
) -> Result<WebhookObject, ApiError> {
    let new = NewWebhook::validate(&WebhookRequest {
        url: input.url,
        secret: input.secret,
        service: input.service,
        environment: input.environment,
        kinds: input.kind.map(kinds),
        actor: input.actor,
    })
    .map_err(|e| ApiError::invalid("input", e))?;
    check_destination(ctx, "input.url", new.url()).await?;
    Ok(store(ctx)?.create_webhook(new).await?.into())
}

pub async fn update_webhook(
    ctx: &Context<'_>,
    input: UpdateWebhookInput,
) -> Result<WebhookObject, ApiError> {
    let id = parse_id("input.id", &input.id);
    let update = WebhookUpdate::validate(&WebhookUpdateRequest {
        actor: input.actor,
        url: setting(input.url),
        secret: setting(input.secret),
        active: setting(input.active),
        service: setting(input.service),
        environment: setting(input.environment),
        kinds: setting(input.kind.map_value(kinds)),
    })
    .map_err(|e| ApiError::invalid("input", e));
    let (id, update) = match (id, update) {
        (Ok(id), Ok(update)) => (id, update),
        (id, update) => {
            return Err(all_problems([id.err(), update.err()]).unwrap_or(ApiError::Internal))
        }
    };
    if let Some(url) = update.url() {
        check_destination(ctx, "input.url", url).await?;
    }
    Ok(store(ctx)?.update_webhook(id, update).await?.into())
}

pub async fn delete_webhook(
    ctx: &Context<'_>,
    input: DeleteWebhookInput,
) -> Result<WebhookObject, ApiError> {
    let id = id_and_actor(&input.id, &input.actor)?;
    let deleted = store(ctx)?.delete_webhook(id).await?;
    tracing::info!(webhook = %id, actor = input.actor.trim(), "webhook deleted");
    Ok(deleted.into())
}

pub async fn redeliver(
    ctx: &Context<'_>,
    input: RedeliverWebhookDeliveryInput,
) -> Result<DeliveryObject, ApiError> {
    let id = id_and_actor(&input.id, &input.actor)?;
    let delivery = store(ctx)?.redeliver(id).await?;
    tracing::info!(delivery = %id, actor = input.actor.trim(), "redelivery asked for");
    Ok(DeliveryObject::new(delivery))
}

/// The `input.id` of a mutation whose input is an id and an actor, both checked.
fn id_and_actor(id: &ID, actor: &str) -> Result<Uuid, ApiError> {
    match (parse_id("input.id", id), actor_of(actor)) {
        (Ok(id), None) => Ok(id),
        (id, actor) => Err(all_problems([id.err(), actor]).unwrap_or(ApiError::Internal)),
    }
}

/// The problem with an `actor`, if any (the v1 name rules).
fn actor_of(actor: &str) -> Option<ApiError> {
    crate::domain::train_service("input.actor", actor)
        .err()
        .map(|errors| {
            ApiError::BadUserInput(errors.0.into_iter().map(|e| (e.field, e.message)).collect())
        })
}

pub async fn webhooks(ctx: &Context<'_>) -> Result<Vec<WebhookObject>, ApiError> {
    Ok(store(ctx)?
        .webhooks()
        .await?
        .into_iter()
        .map(WebhookObject::from)
        .collect())
}

// ------------------------------------------------------------------ targets

/// Where deployments of one service to one environment are carried out. shiplog triggers it; the executor reports the outcome back through the API.
pub struct TargetObject(pub DeploymentTarget);

/// Where deployments of one service to one environment are carried out. shiplog triggers it; the executor reports the outcome back through the API.
#[Object(name = "DeploymentTarget")]
impl TargetObject {
    async fn service(&self) -> &str {
        &self.0.service
    }
    async fn environment(&self) -> &str {
        &self.0.environment
    }
    async fn executor(&self) -> ExecutorKind {
        self.0.settings.kind().into()
    }
    /// GITHUB_ACTIONS: owner/repo, the workflow file name or id, the git ref the workflow runs on, and the input names.
    async fn repository(&self) -> Option<&str> {
        self.github().map(|s| s.repository.as_str())
    }
    async fn workflow(&self) -> Option<&str> {
        self.github().map(|s| s.workflow.as_str())
    }
    async fn workflow_ref(&self) -> Option<&str> {
        self.github().map(|s| s.workflow_ref.as_str())
    }
    async fn environment_input(&self) -> Option<&str> {
        self.github().map(|s| s.environment_input.as_str())
    }
    async fn ref_input(&self) -> Option<&str> {
        self.github().map(|s| s.ref_input.as_str())
    }
    /// Name of the server's environment variable that holds the token (the token itself is never stored or shown).
    async fn token_env(&self) -> Option<&str> {
        self.github().map(|s| s.token_env.as_str())
    }
    /// HTTP: where to POST.
    async fn url(&self) -> Option<&str> {
        match &self.0.settings {
            ExecutorSettings::Http(s) => Some(s.url.as_str()),
            ExecutorSettings::GitHubActions(_) => None,
        }
    }
    async fn updated_by(&self) -> &str {
        &self.0.updated_by
    }
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
}

impl TargetObject {
    fn github(&self) -> Option<&domain::GitHubActionsSettings> {
        match &self.0.settings {
            ExecutorSettings::GitHubActions(s) => Some(s),
            ExecutorSettings::Http(_) => None,
        }
    }
}

pub struct ExecutionObject(pub Execution);

#[Object(name = "Execution")]
impl ExecutionObject {
    async fn executor(&self) -> ExecutorKind {
        self.0.executor.into()
    }
    async fn action(&self) -> ExecutionAction {
        self.0.action.into()
    }
    async fn status(&self) -> ExecutionStatus {
        self.0.status.into()
    }
    async fn attempts(&self) -> i32 {
        i32::try_from(self.0.attempts).unwrap_or(i32::MAX)
    }
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn triggered_at(&self) -> Option<DateTime> {
        self.0.triggered_at.map(DateTime)
    }
}

/// `Deployment.execution`: the latest execution of many deployments at once.
pub struct ExecutionLoader(pub Store);

impl Loader<Uuid> for ExecutionLoader {
    type Value = Execution;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        Ok(self.0.executions_of(keys).await?)
    }
}

/// `Deployment.execution`.
pub async fn execution_of(
    ctx: &Context<'_>,
    id: Uuid,
) -> Result<Option<ExecutionObject>, ApiError> {
    let loader = ctx
        .data::<DataLoader<ExecutionLoader>>()
        .map_err(|_| ApiError::Internal)?;
    Ok(loader.load_one(id).await?.map(ExecutionObject))
}

#[derive(InputObject)]
pub struct ConfigureDeploymentTargetInput {
    pub service: String,
    pub environment: String,
    pub executor: ExecutorKind,
    pub actor: String,
    pub repository: Option<String>,
    pub workflow: Option<String>,
    /// Default: main.
    pub workflow_ref: Option<String>,
    /// Default: environment.
    pub environment_input: Option<String>,
    /// Default: ref.
    pub ref_input: Option<String>,
    pub token_env: Option<String>,
    pub url: Option<String>,
    /// HTTP: Standard Webhooks secret, as for webhooks. Write-only.
    pub secret: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveDeploymentTargetInput {
    pub service: String,
    pub environment: String,
    pub actor: String,
}

pub async fn configure_target(
    ctx: &Context<'_>,
    input: ConfigureDeploymentTargetInput,
) -> Result<TargetObject, ApiError> {
    let new = NewTarget::validate(&TargetRequest {
        service: input.service,
        environment: input.environment,
        executor: input.executor.into(),
        actor: input.actor,
        repository: input.repository,
        workflow: input.workflow,
        workflow_ref: input.workflow_ref,
        environment_input: input.environment_input,
        ref_input: input.ref_input,
        token_env: input.token_env,
        url: input.url,
        secret: input.secret,
    })
    .map_err(|e| ApiError::invalid("input", e))?;
    if let ExecutorSettings::Http(http) = &new.settings {
        check_destination(ctx, "input.url", &http.url).await?;
    }
    Ok(TargetObject(store(ctx)?.configure_target(new).await?))
}

pub async fn remove_target(
    ctx: &Context<'_>,
    input: RemoveDeploymentTargetInput,
) -> Result<TargetObject, ApiError> {
    let problems = all_problems([
        crate::domain::train_service("service", &input.service)
            .err()
            .map(|e| ApiError::invalid("input", e)),
        crate::domain::train_service("environment", &input.environment)
            .err()
            .map(|e| ApiError::invalid("input", e)),
        actor_of(&input.actor),
    ]);
    if let Some(problems) = problems {
        return Err(problems);
    }
    let removed = store(ctx)?
        .remove_target(&input.service, &input.environment)
        .await?;
    tracing::info!(
        service = removed.service,
        environment = removed.environment,
        actor = input.actor.trim(),
        "deployment target removed"
    );
    Ok(TargetObject(removed))
}

pub async fn targets(ctx: &Context<'_>) -> Result<Vec<TargetObject>, ApiError> {
    Ok(store(ctx)?
        .deployment_targets()
        .await?
        .into_iter()
        .map(TargetObject)
        .collect())
}
