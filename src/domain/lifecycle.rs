//! Statuses, actions and the transition table: the whole lifecycle of a deployment.

use std::fmt;
use std::str::FromStr;

/// Where a deployment is in its lifecycle. Stored as its SCREAMING_SNAKE name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    PendingApproval,
    Approved,
    Rejected,
    Started,
    Succeeded,
    Failed,
    RolledBack,
    /// Withdrawn before it started. Terminal.
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::PendingApproval,
        Status::Approved,
        Status::Rejected,
        Status::Started,
        Status::Succeeded,
        Status::Failed,
        Status::RolledBack,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingApproval => "PENDING_APPROVAL",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
            Status::Started => "STARTED",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::RolledBack => "ROLLED_BACK",
            Status::Cancelled => "CANCELLED",
        }
    }

    /// No action at all is allowed from a terminal status.
    pub fn is_terminal(self) -> bool {
        Action::ALL
            .iter()
            .all(|action| action.transition(self).is_none())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored value that names no status (or kind): the database holds something this
/// version of shiplog never wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for Status {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "status",
                value: s.to_owned(),
            })
    }
}

/// What an event records. Every action appends exactly one event of its own kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Created,
    Approved,
    Rejected,
    Started,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::Created,
        EventKind::Approved,
        EventKind::Rejected,
        EventKind::Started,
        EventKind::Succeeded,
        EventKind::Failed,
        EventKind::RolledBack,
        EventKind::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "CREATED",
            EventKind::Approved => "APPROVED",
            EventKind::Rejected => "REJECTED",
            EventKind::Started => "STARTED",
            EventKind::Succeeded => "SUCCEEDED",
            EventKind::Failed => "FAILED",
            EventKind::RolledBack => "ROLLED_BACK",
            EventKind::Cancelled => "CANCELLED",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "event kind",
                value: s.to_owned(),
            })
    }
}

/// A lifecycle action on an existing deployment (creation is not one: it has no "from").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Approve,
    Reject,
    Start,
    Succeed,
    Fail,
    RollBack,
    Cancel,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Approve,
        Action::Reject,
        Action::Start,
        Action::Succeed,
        Action::Fail,
        Action::RollBack,
        Action::Cancel,
    ];

    /// The name clients know the action by (the mutation without its `Deployment` suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::Start => "start",
            Action::Succeed => "succeed",
            Action::Fail => "fail",
            Action::RollBack => "rollBack",
            Action::Cancel => "cancel",
        }
    }

    /// The transition table. `None`: the action is not allowed from `from`. For approve,
    /// the status once enough distinct reviewers approved (see `Deployment::apply_given`).
    pub fn transition(self, from: Status) -> Option<Status> {
        use Status::*;
        match (self, from) {
            (Action::Approve, PendingApproval) => Some(Approved),
            (Action::Reject, PendingApproval) => Some(Rejected),
            (Action::Start, Approved) => Some(Started),
            (Action::Succeed, Started) => Some(Succeeded),
            (Action::Fail, Started) => Some(Failed),
            (Action::RollBack, Started | Succeeded | Failed) => Some(RolledBack),
            (Action::Cancel, PendingApproval | Approved) => Some(Cancelled),
            _ => None,
        }
    }

    pub fn event_kind(self) -> EventKind {
        match self {
            Action::Approve => EventKind::Approved,
            Action::Reject => EventKind::Rejected,
            Action::Start => EventKind::Started,
            Action::Succeed => EventKind::Succeeded,
            Action::Fail => EventKind::Failed,
            Action::RollBack => EventKind::RolledBack,
            Action::Cancel => EventKind::Cancelled,
        }
    }

    /// Negative and recovery decisions must say why.
    pub fn requires_note(self) -> bool {
        matches!(
            self,
            Action::Reject | Action::Fail | Action::RollBack | Action::Cancel
        )
    }

    /// A review sets `reviewedBy` and `reviewedAt`.
    pub fn is_review(self) -> bool {
        matches!(self, Action::Approve | Action::Reject)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
