//! The deployment lifecycle: statuses, actions, the transition table, validation and the
//! records an action produces. Pure: no I/O, no database, no GraphQL. The store persists
//! what this module decides; the API translates it.

pub mod destination;
mod environment;
pub mod freeze;
mod guards;
pub mod integrations;
mod lifecycle;
mod promotion;
pub mod release_notes;
mod timeout;
mod train;
mod validation;

#[cfg(test)]
mod tests;

pub use environment::{
    Environment, EnvironmentConfig, EnvironmentRequest, Setting, Tier, MAX_REQUIRED_APPROVALS,
    MAX_START_TIMEOUT_SECONDS, MIN_REQUIRED_APPROVALS, MIN_START_TIMEOUT_SECONDS,
};
pub use guards::{blockers, start_guards, Blocker, BlockerKind, StartFacts};
pub use lifecycle::{Action, EventKind, Status, UnknownName};
pub use promotion::{Place, Promotion, PromotionRefused, PromotionRequest};
pub use timeout::{start_deadline, TIMEOUT_ACTOR};
pub use train::{train_service, ReleaseTrain, TrainEntry, TrainStop};
pub use validation::{
    same_person, ActionCommand, DeploymentRequest, FieldError, NewDeployment,
    ProductionEnvironments, ValidationErrors, MAX_IDEMPOTENCY_KEY_CHARS, MAX_NAME_CHARS,
    MAX_TEXT_CHARS, MAX_VERSION_CHARS, MAX_WORK_REFS, MAX_WORK_REF_CHARS,
};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Server time, in UTC. Stored with millisecond precision.
pub type Timestamp = DateTime<Utc>;

/// The current state of one deployment: what ordinary reads return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub id: Uuid,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub requester: String,
    pub work_refs: Vec<String>,
    pub risk: Option<String>,
    pub rollback_plan: String,
    pub status: Status,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Distinct approvals needed: the environment's setting when it was created.
    pub required_approvals: u8,
    /// The SUCCEEDED deployment whose version this one promotes.
    pub promoted_from: Option<Uuid>,
    pub release_notes: Option<String>,
    /// The time of its STARTED event; None until it starts.
    pub started_at: Option<Timestamp>,
    /// When the server fails it for want of an outcome (see `timeout.rs`): the start
    /// time plus its environment's start timeout at the start. Kept after the outcome.
    pub start_deadline: Option<Timestamp>,
}

/// One immutable entry of a deployment's history. `service` and `environment` are copied
/// from the deployment (they never change) so that events can be filtered on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentEvent {
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub service: String,
    pub environment: String,
    pub kind: EventKind,
    pub actor: String,
    pub note: Option<String>,
    pub from_status: Option<Status>,
    pub to_status: Status,
    pub occurred_at: Timestamp,
    /// Guards this action was allowed to override (FROZEN, with overrideFreeze); empty
    /// for most events.
    pub overrides: Vec<BlockerKind>,
}

/// Why an action on an existing deployment is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cannot {action} a deployment that is {status}")]
    Conflict { status: Status, action: Action },
    #[error("a requester cannot approve their own deployment")]
    SelfApproval,
    #[error("this reviewer has already approved this deployment")]
    AlreadyApproved,
    /// Only a SUCCEEDED deployment can be promoted.
    #[error("cannot promote a deployment that is {status}; only a SUCCEEDED one")]
    NotPromotable { status: Status },
    /// A start while another deployment of the same service and environment is STARTED.
    #[error("cannot start: deployment {blocked_by} of the same service and environment is STARTED; wait for its outcome")]
    EnvironmentBusy { blocked_by: Uuid },
    /// A start of a deployment older than a SUCCEEDED one of the same service and environment.
    #[error("cannot start: deployment {blocked_by} of the same service and environment, created later, has SUCCEEDED")]
    Outdated { blocked_by: Uuid },
    /// A start while a freeze period covering the environment is in force, not overridden.
    #[error("cannot start: frozen by freeze window {window_id} until {until}; start with overrideFreeze and a note to override")]
    Frozen { window_id: Uuid, until: Timestamp },
}

/// Who has approved a deployment so far: the actors of its APPROVED events, as the store
/// read them. What an approval decides depends on them (distinct reviewers, counted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals(Vec<String>);

impl Approvals {
    pub fn new<I, S>(approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(approvers.into_iter().map(Into::into).collect())
    }

    /// Whether `actor` is one of the approvers (trimmed, case-insensitive).
    pub fn includes(&self, actor: &str) -> bool {
        self.0.iter().any(|a| same_person(a, actor))
    }

    /// How many distinct people (trimmed, case-insensitive) have approved.
    pub fn distinct(&self) -> usize {
        self.0
            .iter()
            .enumerate()
            .filter(|(i, a)| !self.0[..*i].iter().any(|b| same_person(a, b)))
            .count()
    }
}

impl Deployment {
    /// A new deployment in `environment` (as it is inside the creation's transaction),
    /// and its CREATED event: the environment's tier decides whether the risk is
    /// required, and its `required_approvals` is kept on the deployment.
    pub fn create_in(
        new: NewDeployment,
        environment: &Environment,
        id: Uuid,
        event_id: Uuid,
        now: Timestamp,
    ) -> Result<(Deployment, DeploymentEvent), ValidationErrors> {
        if new.risk().is_none() && environment.requires_risk() {
            return Err(ValidationErrors(vec![FieldError {
                field: "risk".to_owned(),
                message: validation::RISK_REQUIRED.to_owned(),
            }]));
        }
        let (mut deployment, event) = Deployment::create(new, id, event_id, now);
        deployment.required_approvals = environment.required_approvals;
        Ok((deployment, event))
    }

    /// A new deployment, pending approval, and its CREATED event.
    pub fn create(
        new: NewDeployment,
        id: Uuid,
        event_id: Uuid,
        now: Timestamp,
    ) -> (Deployment, DeploymentEvent) {
        let event = DeploymentEvent {
            id: event_id,
            deployment_id: id,
            service: new.service().to_owned(),
            environment: new.environment().to_owned(),
            kind: EventKind::Created,
            actor: new.requester().to_owned(),
            note: None,
            from_status: None,
            to_status: Status::PendingApproval,
            occurred_at: now,
            overrides: Vec::new(),
        };
        let deployment = Deployment {
            id,
            service: new.service().to_owned(),
            environment: new.environment().to_owned(),
            version: new.version().to_owned(),
            requester: new.requester().to_owned(),
            work_refs: new.work_refs().to_vec(),
            risk: new.risk().map(str::to_owned),
            rollback_plan: new.rollback_plan().to_owned(),
            status: Status::PendingApproval,
            reviewed_by: None,
            reviewed_at: None,
            created_at: now,
            updated_at: now,
            required_approvals: 1,
            promoted_from: None,
            release_notes: new.release_notes().map(str::to_owned),
            started_at: None,
            start_deadline: None,
        };
        (deployment, event)
    }

    /// Whether `new` asks for exactly this deployment (after trimming): a retry of the
    /// request that created it, as far as idempotent creation is concerned. A promoted
    /// deployment was not created by a createDeployment request.
    pub fn was_requested_by(&self, new: &NewDeployment) -> bool {
        self.promoted_from.is_none()
            && self.service == new.service()
            && self.environment == new.environment()
            && self.version == new.version()
            && self.requester == new.requester()
            && self.work_refs == new.work_refs()
            && self.risk.as_deref() == new.risk()
            && self.rollback_plan == new.rollback_plan()
            && self.release_notes.as_deref() == new.release_notes()
    }

    /// [`Deployment::apply_given`] for a deployment nobody has approved yet (every
    /// deployment that needs one approval and is still pending, for instance).
    pub fn apply(
        &self,
        command: &ActionCommand,
        event_id: Uuid,
        now: Timestamp,
    ) -> Result<(Deployment, DeploymentEvent), Refusal> {
        self.apply_given(command, &Approvals::default(), event_id, now)
    }

    /// Whether deciding `action` needs the approvals so far: an approval of a pending
    /// deployment that needs more than one. (Otherwise `apply` decides alone.)
    pub fn needs_approvals(&self, action: Action) -> bool {
        action == Action::Approve
            && self.status == Status::PendingApproval
            && self.required_approvals > 1
    }

    /// Decides an action, given who has approved the deployment so far: the deployment as
    /// it is after it, and the one event it appends. The status is checked first. An
    /// approval by someone who is neither the requester nor a previous approver is
    /// recorded; it moves the deployment to APPROVED once the distinct approvals reach
    /// `required_approvals`, and until then leaves it PENDING_APPROVAL. The event's time
    /// never goes before the deployment's last change, so a history stays in order even
    /// if the system clock steps back.
    pub fn apply_given(
        &self,
        command: &ActionCommand,
        approvals: &Approvals,
        event_id: Uuid,
        now: Timestamp,
    ) -> Result<(Deployment, DeploymentEvent), Refusal> {
        let action = command.action();
        let mut to = action.transition(self.status).ok_or(Refusal::Conflict {
            status: self.status,
            action,
        })?;
        if action == Action::Approve {
            if same_person(command.actor(), &self.requester) {
                return Err(Refusal::SelfApproval);
            }
            if approvals.includes(command.actor()) {
                return Err(Refusal::AlreadyApproved);
            }
            if approvals.distinct() + 1 < usize::from(self.required_approvals) {
                to = self.status;
            }
        }
        let occurred_at = now.max(self.updated_at);
        let mut next = self.clone();
        next.status = to;
        next.updated_at = occurred_at;
        if action.is_review() {
            next.reviewed_by = Some(command.actor().to_owned());
            next.reviewed_at = Some(occurred_at);
        }
        if action == Action::Start {
            // The deadline comes from the environment: see `with_start_timeout`.
            next.started_at = Some(occurred_at);
        }
        let event = DeploymentEvent {
            id: event_id,
            deployment_id: self.id,
            service: self.service.clone(),
            environment: self.environment.clone(),
            kind: action.event_kind(),
            actor: command.actor().to_owned(),
            note: command.note().map(str::to_owned),
            from_status: Some(self.status),
            to_status: to,
            occurred_at,
            overrides: Vec::new(),
        };
        Ok((next, event))
    }
}
