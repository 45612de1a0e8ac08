//! Output and input types of the schema. They wrap domain values; entity models never
//! reach this module.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{
    Context, Enum, InputObject, InputValueError, InputValueResult, Interface, MaybeUndefined,
    Object, Scalar, ScalarType, SimpleObject, Value, ID,
};
use chrono::SecondsFormat;
use uuid::Uuid;

use super::cursor;
use super::error::ApiError;
use super::inline::Inline;
use super::loaders::{DeploymentLoader, EventsLoader};
use crate::domain::{self, Deployment, Timestamp};
use crate::store::{self, DeploymentKey, StoredEvent};

/// RFC 3339 timestamp in UTC, millisecond precision or finer, e.g. 2026-11-25T06:35:39.123Z
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime(pub Timestamp);

/// RFC 3339 timestamp in UTC, millisecond precision or finer, e.g. 2026-11-25T06:35:39.123Z
#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| DateTime(t.with_timezone(&chrono::Utc)))
                .map_err(|_| InputValueError::custom("expected an RFC 3339 timestamp")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "DeploymentStatus", remote = "domain::Status")]
pub enum DeploymentStatus {
    PendingApproval,
    Approved,
    Rejected,
    Started,
    Succeeded,
    Failed,
    RolledBack,
    /// Withdrawn before it started (from PENDING_APPROVAL or APPROVED). Terminal.
    Cancelled,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "DeploymentEventKind", remote = "domain::EventKind")]
pub enum DeploymentEventKind {
    Created,
    Approved,
    Rejected,
    Started,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

/// Relay global object identification.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID"))]
pub enum Node {
    Deployment(DeploymentObject),
    DeploymentEvent(EventObject),
    Environment(EnvironmentObject),
    FreezeWindow(super::freeze::FreezeWindowObject),
    Webhook(super::integrations::WebhookObject),
    WebhookDelivery(super::integrations::DeliveryObject),
}

/// Reads a client-given id (argument `field`): a UUID, in any case.
pub fn parse_id(field: &str, id: &ID) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.as_str().trim()).map_err(|_| ApiError::bad_input(field, "is not a valid id"))
}

/// One canonical record from the initial request through the final outcome.
#[derive(Clone)]
pub struct DeploymentObject {
    deployment: Arc<Deployment>,
    /// Its events, when whoever built this object already loaded them with its siblings'.
    events: Option<Arc<Vec<StoredEvent>>>,
    /// The guard facts of its place, when whoever built this object already loaded them
    /// with its siblings'.
    place_facts: Option<store::PlaceFacts>,
}

impl DeploymentObject {
    pub fn new(d: impl Into<Arc<Deployment>>) -> Self {
        Self {
            deployment: d.into(),
            events: None,
            place_facts: None,
        }
    }

    pub fn with_events(d: Deployment, events: Arc<Vec<StoredEvent>>) -> Self {
        Self {
            deployment: Arc::new(d),
            events: Some(events),
            place_facts: None,
        }
    }
}

/// One canonical record from the initial request through the final outcome.
#[Object(name = "Deployment")]
impl DeploymentObject {
    /// Server-generated UUID (time-ordered, v7), lowercase hyphenated.
    async fn id(&self) -> ID {
        ID(self.deployment.id.to_string())
    }
    async fn service(&self) -> &str {
        &self.deployment.service
    }
    async fn environment(&self) -> &str {
        &self.deployment.environment
    }
    async fn version(&self) -> &str {
        &self.deployment.version
    }
    async fn requester(&self) -> &str {
        &self.deployment.requester
    }
    /// Issues, pull requests or similar planning artifacts; at least one.
    async fn work_refs(&self) -> &[String] {
        &self.deployment.work_refs
    }
    /// Required when the environment is a production environment.
    async fn risk(&self) -> Option<&str> {
        self.deployment.risk.as_deref()
    }
    async fn rollback_plan(&self) -> &str {
        &self.deployment.rollback_plan
    }
    async fn status(&self) -> DeploymentStatus {
        self.deployment.status.into()
    }
    /// Who reviewed (approved or rejected); status tells which.
    async fn reviewed_by(&self) -> Option<&str> {
        self.deployment.reviewed_by.as_deref()
    }
    async fn reviewed_at(&self) -> Option<DateTime> {
        self.deployment.reviewed_at.map(DateTime)
    }
    async fn created_at(&self) -> DateTime {
        DateTime(self.deployment.created_at)
    }
    async fn updated_at(&self) -> DateTime {
        DateTime(self.deployment.updated_at)
    }
    /// The full history, oldest first.
    async fn events(&self, ctx: &Context<'_>) -> Result<Vec<Inline<EventObject>>, ApiError> {
        self.events_where(ctx, |_| true).await
    }
    /// The SUCCEEDED deployment whose version this one promotes; null unless created by promoteDeployment.
    async fn promoted_from(&self, ctx: &Context<'_>) -> Result<Option<DeploymentObject>, ApiError> {
        let Some(id) = self.deployment.promoted_from else {
            return Ok(None);
        };
        // Through the loader: a page of promoted deployments costs one statement for all
        // their sources.
        let loader = ctx
            .data::<DataLoader<DeploymentLoader>>()
            .map_err(|_| ApiError::Internal)?;
        Ok(loader.load_one(id).await?.map(DeploymentObject::new))
    }
    /// Distinct approvals needed: its environment's requiredApprovals when this deployment was created.
    async fn required_approvals(&self) -> i32 {
        i32::from(self.deployment.required_approvals)
    }
    /// The APPROVED events so far, oldest first.
    async fn approvals(&self, ctx: &Context<'_>) -> Result<Vec<Inline<EventObject>>, ApiError> {
        self.events_where(ctx, |e| e.event.kind == domain::EventKind::Approved)
            .await
    }
    /// Why startDeployment would be refused right now. Empty when nothing stands in the way, and for every status but PENDING_APPROVAL and APPROVED.
    async fn blockers(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<super::guards::BlockerObject>, ApiError> {
        // Only a pending deployment's approvals matter.
        let events = async {
            if self.deployment.status == domain::Status::PendingApproval {
                self.loaded_events(ctx).await.map(Some)
            } else {
                Ok(None)
            }
        };
        super::guards::blockers_of(ctx, &self.deployment, events, self.place_facts.clone()).await
    }
    /// Time of the STARTED event.
    async fn started_at(&self) -> Option<DateTime> {
        self.deployment.started_at.map(DateTime)
    }
    /// When the server fails it for want of an outcome: the start time plus its environment's start timeout at the start. Null when there was none; kept after the outcome.
    async fn start_deadline(&self) -> Option<DateTime> {
        self.deployment.start_deadline.map(DateTime)
    }
    /// Stored trimmed, up to 10,000 characters; null when none was given.
    async fn release_notes(&self) -> Option<&str> {
        self.deployment.release_notes.as_deref()
    }
    /// The executor run triggered for this deployment, if its (service, environment) has a deployment target.
    async fn execution(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::integrations::ExecutionObject>, ApiError> {
        super::integrations::execution_of(ctx, self.deployment.id).await
    }
}

impl DeploymentObject {
    /// With the guard facts of its place, loaded with its siblings'.
    pub fn with_place_facts(mut self, facts: store::PlaceFacts) -> Self {
        self.place_facts = Some(facts);
        self
    }

    /// Its events, oldest first: those loaded with its siblings', or else through the
    /// loader (one statement for all the deployments that ask at once).
    async fn loaded_events(&self, ctx: &Context<'_>) -> Result<Arc<Vec<StoredEvent>>, ApiError> {
        Ok(match &self.events {
            Some(events) => events.clone(),
            None => ctx
                .data::<DataLoader<EventsLoader>>()
                .map_err(|_| ApiError::Internal)?
                .load_one(self.deployment.id)
                .await?
                .unwrap_or_default(),
        })
    }

    /// Its events that pass `keep`, oldest first: those loaded with its siblings', or
    /// else through the loader (one statement for all the deployments that ask at once).
    async fn events_where(
        &self,
        ctx: &Context<'_>,
        keep: impl Fn(&StoredEvent) -> bool,
    ) -> Result<Vec<Inline<EventObject>>, ApiError> {
        let events = self.loaded_events(ctx).await?;
        // Each event's deployment is this one: no need to load it again.
        Ok(events
            .iter()
            .filter(|e| keep(e))
            .map(|e| Inline(EventObject::of(e.clone(), Some(self.deployment.clone()))))
            .collect())
    }
}

/// An immutable entry of a Deployment's history.
#[derive(Clone)]
pub struct EventObject {
    stored: StoredEvent,
    /// Its deployment, when whoever built this object already had it.
    deployment: Option<Arc<Deployment>>,
}

impl EventObject {
    pub fn new(stored: StoredEvent) -> Self {
        Self::of(stored, None)
    }

    pub fn of(stored: StoredEvent, deployment: Option<Arc<Deployment>>) -> Self {
        Self { stored, deployment }
    }

    pub fn seq(&self) -> i64 {
        self.stored.seq
    }
}

/// An immutable entry of a Deployment's history.
#[Object(name = "DeploymentEvent")]
impl EventObject {
    async fn id(&self) -> ID {
        ID(self.stored.event.id.to_string())
    }
    /// Opaque; orders all events of all deployments in commit order. Pass it as `after` to resume.
    async fn cursor(&self) -> String {
        cursor::event(self.stored.seq)
    }
    async fn deployment_id(&self) -> ID {
        ID(self.stored.event.deployment_id.to_string())
    }
    async fn deployment(&self, ctx: &Context<'_>) -> Result<DeploymentObject, ApiError> {
        if let Some(d) = &self.deployment {
            return Ok(DeploymentObject::new(d.clone()));
        }
        let loader = ctx
            .data::<DataLoader<DeploymentLoader>>()
            .map_err(|_| ApiError::Internal)?;
        let id = self.stored.event.deployment_id;
        match loader.load_one(id).await? {
            Some(d) => Ok(DeploymentObject::new(d)),
            None => {
                // The foreign key makes this impossible; if it happens, the database is damaged.
                tracing::error!(%id, "an event refers to a missing deployment");
                Err(ApiError::Internal)
            }
        }
    }
    async fn kind(&self) -> DeploymentEventKind {
        self.stored.event.kind.into()
    }
    async fn actor(&self) -> &str {
        &self.stored.event.actor
    }
    async fn note(&self) -> Option<&str> {
        self.stored.event.note.as_deref()
    }
    /// Null for CREATED.
    async fn from_status(&self) -> Option<DeploymentStatus> {
        self.stored.event.from_status.map(Into::into)
    }
    async fn to_status(&self) -> DeploymentStatus {
        self.stored.event.to_status.into()
    }
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.stored.event.occurred_at)
    }
    /// v2: guards this action was allowed to override (FROZEN, with overrideFreeze). Empty for most events.
    async fn overrides(&self) -> Vec<super::guards::BlockerKind> {
        self.stored
            .event
            .overrides
            .iter()
            .map(|&kind| kind.into())
            .collect()
    }
}

#[derive(InputObject, Default)]
pub struct DeploymentFilter {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Any of these statuses.
    pub status: Option<Vec<DeploymentStatus>>,
}

impl From<DeploymentFilter> for store::DeploymentFilter {
    fn from(f: DeploymentFilter) -> Self {
        store::DeploymentFilter {
            service: f.service,
            environment: f.environment,
            statuses: f.status.map(distinct),
        }
    }
}

#[derive(InputObject, Default)]
pub struct DeploymentEventFilter {
    pub deployment_id: Option<ID>,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Any of these kinds.
    pub kind: Option<Vec<DeploymentEventKind>>,
}

impl DeploymentEventFilter {
    pub fn into_store(self, field: &str) -> Result<store::EventFilter, ApiError> {
        Ok(store::EventFilter {
            deployment_id: self
                .deployment_id
                .map(|id| parse_id(&format!("{field}.deploymentId"), &id))
                .transpose()?,
            service: self.service,
            environment: self.environment,
            kinds: self.kind.map(distinct),
        })
    }
}

/// The distinct values of an any-of list, in first-seen order: a client may repeat a
/// value, but the SQL never grows past the number of values the enum has.
fn distinct<A, B: From<A> + PartialEq>(values: Vec<A>) -> Vec<B> {
    let mut out: Vec<B> = Vec::new();
    for value in values.into_iter().map(B::from) {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct DeploymentEdge {
    pub cursor: String,
    pub node: DeploymentObject,
}

pub struct DeploymentConnection {
    pub edges: Vec<DeploymentEdge>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub filter: store::DeploymentFilter,
}

#[Object]
impl DeploymentConnection {
    async fn edges(&self) -> &[DeploymentEdge] {
        &self.edges
    }
    async fn nodes(&self) -> Vec<Inline<DeploymentObject>> {
        self.edges.iter().map(|e| Inline(e.node.clone())).collect()
    }
    async fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self.edges.first().map(|e| e.cursor.clone()),
            end_cursor: self.edges.last().map(|e| e.cursor.clone()),
        }
    }
    /// Number of deployments matching the filter, all pages together.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i32, ApiError> {
        // Counted only when asked for: a page alone never pays for a count.
        let count = super::store(ctx)?.count_deployments(&self.filter).await?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }
}

impl DeploymentConnection {
    /// `events`: the events of the page's deployments, when the query asks for them.
    pub fn new(
        page: store::Page<Deployment>,
        mut events: Option<HashMap<Uuid, Vec<StoredEvent>>>,
        has_previous_page: bool,
        filter: store::DeploymentFilter,
    ) -> Self {
        let edges = page
            .items
            .into_iter()
            .map(|d| {
                let cursor = cursor::deployment(DeploymentKey::of(&d));
                let node = match events.as_mut() {
                    Some(events) => {
                        let mine = events.remove(&d.id).unwrap_or_default();
                        DeploymentObject::with_events(d, Arc::new(mine))
                    }
                    None => DeploymentObject::new(d),
                };
                DeploymentEdge { cursor, node }
            })
            .collect();
        Self {
            edges,
            has_next_page: page.has_next,
            has_previous_page,
            filter,
        }
    }
}

impl DeploymentConnection {
    /// Hands each deployment the guard facts of its place (`blockers`), loaded for the
    /// whole page at once.
    pub fn with_place_facts(
        mut self,
        facts: &HashMap<(String, String), store::PlaceFacts>,
    ) -> Self {
        for edge in &mut self.edges {
            let d = &edge.node.deployment;
            if let Some(found) = facts.get(&(d.service.clone(), d.environment.clone())) {
                edge.node = edge.node.clone().with_place_facts(found.clone());
            }
        }
        self
    }

    /// The (service, environment) places of the page's deployments that can have
    /// blockers, each once.
    pub fn blockable_places(&self) -> Vec<(String, String)> {
        let mut places: Vec<(String, String)> = Vec::new();
        for edge in &self.edges {
            let d = &edge.node.deployment;
            let place = (d.service.clone(), d.environment.clone());
            if matches!(
                d.status,
                domain::Status::PendingApproval | domain::Status::Approved
            ) && !places.contains(&place)
            {
                places.push(place);
            }
        }
        places
    }
}

#[derive(SimpleObject)]
pub struct DeploymentEventEdge {
    pub cursor: String,
    pub node: EventObject,
}

#[derive(SimpleObject)]
pub struct DeploymentEventConnection {
    pub edges: Vec<DeploymentEventEdge>,
    pub nodes: Vec<EventObject>,
    pub page_info: PageInfo,
}

impl DeploymentEventConnection {
    pub fn new(page: store::Page<StoredEvent>, has_previous_page: bool) -> Self {
        let nodes: Vec<EventObject> = page.items.into_iter().map(EventObject::new).collect();
        let edges: Vec<DeploymentEventEdge> = nodes
            .iter()
            .map(|n| DeploymentEventEdge {
                cursor: cursor::event(n.seq()),
                node: n.clone(),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next,
            has_previous_page,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Self {
            edges,
            nodes,
            page_info,
        }
    }
}

#[derive(InputObject)]
pub struct CreateDeploymentInput {
    pub service: String,
    pub environment: String,
    pub version: String,
    pub requester: String,
    pub work_refs: Vec<String>,
    pub risk: Option<String>,
    pub rollback_plan: String,
    /// Retrying with the same key and the same input returns the original deployment; same key, other input: CONFLICT.
    pub idempotency_key: Option<String>,
    /// Stored trimmed, up to 10,000 characters; blank is none.
    pub release_notes: Option<String>,
}

#[derive(InputObject)]
pub struct PromoteDeploymentInput {
    /// A SUCCEEDED deployment: its service and version are promoted.
    pub id: ID,
    /// Default: the next environment after the source's in the release train.
    pub environment: Option<String>,
    pub requester: String,
    /// Default: the source's.
    pub work_refs: Option<Vec<String>>,
    /// Never copied from the source: production needs its own.
    pub risk: Option<String>,
    /// Default: the source's.
    pub rollback_plan: Option<String>,
    pub release_notes: Option<String>,
    pub idempotency_key: Option<String>,
}

macro_rules! action_input {
    ($name:ident, $note:ty) => {
        #[derive(InputObject)]
        pub struct $name {
            pub id: ID,
            pub actor: String,
            pub note: $note,
        }
    };
}

action_input!(ApproveDeploymentInput, Option<String>);
action_input!(RejectDeploymentInput, String);
#[derive(InputObject)]
pub struct StartDeploymentInput {
    pub id: ID,
    pub actor: String,
    pub note: Option<String>,
    /// v2: start despite a freeze in force. Needs a note; recorded in the event's overrides.
    pub override_freeze: Option<bool>,
}
action_input!(SucceedDeploymentInput, Option<String>);
action_input!(FailDeploymentInput, String);
action_input!(RollBackDeploymentInput, String);
action_input!(CancelDeploymentInput, String);

/// The deployment after the action, and the one event the action appended.
#[derive(SimpleObject)]
pub struct DeploymentPayload {
    pub deployment: DeploymentObject,
    pub event: EventObject,
}

impl From<store::Written> for DeploymentPayload {
    fn from(w: store::Written) -> Self {
        Self {
            deployment: DeploymentObject::new(w.deployment),
            event: EventObject::new(w.event),
        }
    }
}

/// Tiers as GitLab names them. PRODUCTION makes risk required.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "EnvironmentTier", remote = "domain::Tier")]
pub enum EnvironmentTier {
    Development,
    Testing,
    Staging,
    Production,
    Other,
}

/// A place deployments go. Registered on first use, configured with configureEnvironment.
pub struct EnvironmentObject(pub domain::Environment);

/// A place deployments go. Registered on first use, configured with configureEnvironment.
#[Object(name = "Environment")]
impl EnvironmentObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Release-train order: lower first; ties by name.
    async fn position(&self) -> i32 {
        self.0.position
    }
    async fn tier(&self) -> EnvironmentTier {
        self.0.tier.into()
    }
    /// Deployments here must state their risk (tier PRODUCTION).
    async fn requires_risk(&self) -> bool {
        self.0.requires_risk()
    }
    /// Distinct reviewers, none of them the requester, needed to approve a deployment created here. 1 to 10; default 1.
    async fn required_approvals(&self) -> i32 {
        i32::from(self.0.required_approvals)
    }
    /// A deployment STARTED here with no outcome this many seconds later is failed by the server. Null: never.
    async fn start_timeout_seconds(&self) -> Option<i32> {
        self.0
            .start_timeout_seconds
            .map(|s| i32::try_from(s).unwrap_or(i32::MAX))
    }
    /// Who last configured it; null while it has only been registered by use.
    async fn updated_by(&self) -> Option<&str> {
        self.0.updated_by.as_deref()
    }
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.updated_at)
    }
    /// Freeze windows that apply here (this environment's and the global ones), not removed, oldest first.
    async fn freeze_windows(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<super::freeze::FreezeWindowObject>, ApiError> {
        super::freeze::of_environment(ctx, &self.0.name).await
    }
    /// The freeze period in force now, if any.
    async fn active_freeze(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::freeze::FreezePeriodObject>, ApiError> {
        super::freeze::active(ctx, &self.0.name).await
    }
}

/// Absent fields are left as they are; an explicit null clears startTimeoutSeconds.
#[derive(InputObject)]
pub struct ConfigureEnvironmentInput {
    pub name: String,
    pub actor: String,
    pub position: MaybeUndefined<i32>,
    pub tier: MaybeUndefined<EnvironmentTier>,
    pub required_approvals: MaybeUndefined<i32>,
    pub start_timeout_seconds: MaybeUndefined<i32>,
}

impl From<ConfigureEnvironmentInput> for domain::EnvironmentRequest {
    fn from(input: ConfigureEnvironmentInput) -> Self {
        fn setting<A, B: From<A>>(value: MaybeUndefined<A>) -> domain::Setting<B> {
            match value {
                MaybeUndefined::Undefined => domain::Setting::Absent,
                MaybeUndefined::Null => domain::Setting::Null,
                MaybeUndefined::Value(v) => domain::Setting::Value(v.into()),
            }
        }
        domain::EnvironmentRequest {
            name: input.name,
            actor: input.actor,
            position: setting(input.position),
            tier: setting(input.tier),
            required_approvals: setting(input.required_approvals),
            start_timeout_seconds: setting(input.start_timeout_seconds),
        }
    }
}
