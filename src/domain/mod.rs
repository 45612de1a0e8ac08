//! The deployment lifecycle: statuses, actions, the transition table, validation and the
//! records an action produces. Pure: no I/O, no database, no GraphQL. The store persists
//! what this module decides; the API translates it.

mod lifecycle;
mod validation;

#[cfg(test)]
mod tests;

pub use lifecycle::{Action, EventKind, Status, UnknownName};
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
}

/// Why an action on an existing deployment is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("cannot {action} a deployment that is {status}")]
    Conflict { status: Status, action: Action },
    #[error("a requester cannot approve their own deployment")]
    SelfApproval,
}

impl Deployment {
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
            release_notes: None,
        };
        (deployment, event)
    }

    /// Whether `new` asks for exactly this deployment (after trimming): a retry of the
    /// request that created it, as far as idempotent creation is concerned.
    pub fn was_requested_by(&self, new: &NewDeployment) -> bool {
        self.service == new.service()
            && self.environment == new.environment()
            && self.version == new.version()
            && self.requester == new.requester()
            && self.work_refs == new.work_refs()
            && self.risk.as_deref() == new.risk()
            && self.rollback_plan == new.rollback_plan()
    }

    /// Decides an action: the deployment as it is after it, and the one event it appends.
    /// The event's time never goes before the deployment's last change, so a history
    /// stays in order even if the system clock steps back.
    pub fn apply(
        &self,
        command: &ActionCommand,
        event_id: Uuid,
        now: Timestamp,
    ) -> Result<(Deployment, DeploymentEvent), Refusal> {
        let action = command.action();
        let to = action.transition(self.status).ok_or(Refusal::Conflict {
            status: self.status,
            action,
        })?;
        if action == Action::Approve && same_person(command.actor(), &self.requester) {
            return Err(Refusal::SelfApproval);
        }
        let occurred_at = now.max(self.updated_at);
        let mut next = self.clone();
        next.status = to;
        next.updated_at = occurred_at;
        if action.is_review() {
            next.reviewed_by = Some(command.actor().to_owned());
            next.reviewed_at = Some(occurred_at);
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
        };
        Ok((next, event))
    }
}
