//! Guards on start: what stands in the way of starting a deployment, as pure functions
//! over the facts the store read (inside the start's write transaction for a start;
//! from a reader for `Deployment.blockers`). The order is the contract's: ENVIRONMENT_BUSY,
//! OUTDATED, then FROZEN (filled in by the freeze windows).

use std::fmt;

use uuid::Uuid;

use super::freeze::FreezeWindow;
use super::{Action, Approvals, Deployment, DeploymentEvent, Refusal, Status, Timestamp};

/// Something that stops a start now. Stored by name in an event's `overrides`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BlockerKind {
    /// PENDING_APPROVAL: fewer distinct approvals than required.
    AwaitingApproval,
    /// Another deployment of the same service and environment is STARTED.
    EnvironmentBusy,
    /// A deployment of the same service and environment created later is SUCCEEDED.
    Outdated,
    /// A freeze period covering the environment is in force.
    Frozen,
}

impl BlockerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockerKind::AwaitingApproval => "AWAITING_APPROVAL",
            BlockerKind::EnvironmentBusy => "ENVIRONMENT_BUSY",
            BlockerKind::Outdated => "OUTDATED",
            BlockerKind::Frozen => "FROZEN",
        }
    }

    /// Whether startDeployment may override it: FROZEN only.
    pub fn overridable(self) -> bool {
        self == BlockerKind::Frozen
    }
}

impl fmt::Display for BlockerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the store read about a deployment's (service, environment) that decides whether
/// it may start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartFacts {
    /// The STARTED deployment of the same service and environment, if any (the database
    /// holds at most one). Never the deployment itself.
    pub started: Option<Uuid>,
    /// The newest SUCCEEDED deployment of the same service and environment created later
    /// than this one (in (createdAt, id) order), if any.
    pub newer_succeeded: Option<Uuid>,
}

/// One reason a start would be refused now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub kind: BlockerKind,
    /// For people: what blocks, and what would unblock it.
    pub message: String,
    /// ENVIRONMENT_BUSY: the STARTED deployment; OUTDATED: the newer SUCCEEDED one.
    pub deployment: Option<Uuid>,
    /// FROZEN: the window in force, and when its period ends.
    pub freeze_window: Option<FreezeWindow>,
    pub until: Option<Timestamp>,
}

/// The guards on start, in the contract's order: the first one that stands is the
/// refusal; otherwise the kinds this start overrides (none yet: only FROZEN can be).
pub fn start_guards(facts: &StartFacts) -> Result<Vec<BlockerKind>, Refusal> {
    if let Some(blocked_by) = facts.started {
        return Err(Refusal::EnvironmentBusy { blocked_by });
    }
    if let Some(blocked_by) = facts.newer_succeeded {
        return Err(Refusal::Outdated { blocked_by });
    }
    Ok(Vec::new())
}

/// Everything that would stop `deployment` from starting now: for a PENDING_APPROVAL one,
/// AWAITING_APPROVAL first (given who approved it so far), then the guards on start in
/// their order; for an APPROVED one, the guards; for any other status, nothing.
pub fn blockers(
    deployment: &Deployment,
    approvals: &Approvals,
    facts: &StartFacts,
) -> Vec<Blocker> {
    let mut found = Vec::new();
    match deployment.status {
        Status::PendingApproval => {
            let missing =
                usize::from(deployment.required_approvals).saturating_sub(approvals.distinct());
            let missing = missing.max(1);
            found.push(Blocker {
                kind: BlockerKind::AwaitingApproval,
                message: format!(
                    "waiting for {missing} more approval{}",
                    if missing == 1 { "" } else { "s" }
                ),
                deployment: None,
                freeze_window: None,
                until: None,
            });
        }
        Status::Approved => {}
        _ => return found,
    }
    if let Some(id) = facts.started {
        found.push(Blocker {
            kind: BlockerKind::EnvironmentBusy,
            message: format!(
                "deployment {id} of {} is STARTED in {}: wait for its outcome",
                deployment.service, deployment.environment
            ),
            deployment: Some(id),
            freeze_window: None,
            until: None,
        });
    }
    if let Some(id) = facts.newer_succeeded {
        found.push(Blocker {
            kind: BlockerKind::Outdated,
            message: format!(
                "deployment {id} of {}, created later, has SUCCEEDED in {}: request a new deployment instead",
                deployment.service, deployment.environment
            ),
            deployment: Some(id),
            freeze_window: None,
            until: None,
        });
    }
    found
}

impl Deployment {
    /// Whether deciding `action` needs the start facts: a start of an APPROVED deployment.
    /// (From any other status the start is refused on its status alone.)
    pub fn needs_start_facts(&self, action: Action) -> bool {
        action == Action::Start && self.status == Status::Approved
    }

    /// [`Deployment::apply_given`], then the guards on start over `facts`: the status is
    /// checked first, then the guards in their order. The event lists what it overrode.
    pub fn apply_start(
        &self,
        command: &super::ActionCommand,
        facts: &StartFacts,
        event_id: Uuid,
        now: Timestamp,
    ) -> Result<(Deployment, DeploymentEvent), Refusal> {
        let (next, mut event) = self.apply(command, event_id, now)?;
        event.overrides = start_guards(facts)?;
        Ok((next, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ActionCommand, Deployment, DeploymentRequest, NewDeployment, Tier};

    fn deployment(status: Status, required_approvals: u8) -> Deployment {
        let request = DeploymentRequest {
            service: "billing".into(),
            environment: "staging".into(),
            version: "v1".into(),
            requester: "alice".into(),
            work_refs: vec!["JIRA-1".into()],
            risk: None,
            rollback_plan: "redeploy".into(),
            idempotency_key: None,
            release_notes: None,
        };
        let new = NewDeployment::validate_in(&request, Tier::Staging).expect("valid");
        let (mut d, _) =
            Deployment::create(new, Uuid::now_v7(), Uuid::now_v7(), Timestamp::default());
        d.status = status;
        d.required_approvals = required_approvals;
        d
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn start_guards_refuse_in_the_contracts_order() {
        let cases = [
            ("nothing stands in the way", None, None, Ok(vec![])),
            (
                "a STARTED one makes the environment busy",
                Some(id(1)),
                None,
                Err(Refusal::EnvironmentBusy { blocked_by: id(1) }),
            ),
            (
                "a later SUCCEEDED one makes it outdated",
                None,
                Some(id(2)),
                Err(Refusal::Outdated { blocked_by: id(2) }),
            ),
            (
                "busy is checked before outdated",
                Some(id(1)),
                Some(id(2)),
                Err(Refusal::EnvironmentBusy { blocked_by: id(1) }),
            ),
        ];
        for (name, started, newer_succeeded, expected) in cases {
            let facts = StartFacts {
                started,
                newer_succeeded,
            };
            assert_eq!(start_guards(&facts), expected, "{name}");
        }
    }

    #[test]
    fn a_start_checks_the_status_before_the_guards() {
        let busy = StartFacts {
            started: Some(id(1)),
            ..StartFacts::default()
        };
        let start = ActionCommand::validate(Action::Start, "bot", None).expect("valid");
        let pending = deployment(Status::PendingApproval, 1);
        assert_eq!(
            pending
                .apply_start(&start, &busy, Uuid::now_v7(), Timestamp::default())
                .map(|_| ()),
            Err(Refusal::Conflict {
                status: Status::PendingApproval,
                action: Action::Start
            })
        );
        let approved = deployment(Status::Approved, 1);
        assert_eq!(
            approved
                .apply_start(&start, &busy, Uuid::now_v7(), Timestamp::default())
                .map(|_| ()),
            Err(Refusal::EnvironmentBusy { blocked_by: id(1) })
        );
        let (next, event) = approved
            .apply_start(
                &start,
                &StartFacts::default(),
                Uuid::now_v7(),
                Timestamp::default(),
            )
            .expect("starts");
        assert_eq!(next.status, Status::Started);
        assert_eq!(event.overrides, vec![]);
    }

    #[test]
    fn only_a_start_of_an_approved_deployment_needs_the_start_facts() {
        for status in Status::ALL {
            for action in Action::ALL {
                let d = deployment(status, 1);
                assert_eq!(
                    d.needs_start_facts(action),
                    status == Status::Approved && action == Action::Start,
                    "{action} from {status}"
                );
            }
        }
    }

    #[test]
    fn blockers_list_what_stops_a_start_in_order() {
        let facts = |started: Option<u128>, newer: Option<u128>| StartFacts {
            started: started.map(id),
            newer_succeeded: newer.map(id),
        };
        use BlockerKind::*;
        struct Case {
            name: &'static str,
            status: Status,
            required: u8,
            approvers: Vec<&'static str>,
            facts: StartFacts,
            kinds: Vec<BlockerKind>,
            first_message: &'static str,
        }
        let case = |name, status, required, approvers, facts, kinds, first_message| Case {
            name,
            status,
            required,
            approvers,
            facts,
            kinds,
            first_message,
        };
        let cases = vec![
            case(
                "a pending deployment awaits its approval",
                Status::PendingApproval,
                1,
                vec![],
                facts(None, None),
                vec![AwaitingApproval],
                "waiting for 1 more approval",
            ),
            case(
                "a pending deployment counts distinct approvals",
                Status::PendingApproval,
                3,
                vec!["bob", "BOB "],
                facts(None, None),
                vec![AwaitingApproval],
                "waiting for 2 more approvals",
            ),
            case(
                "awaiting approval comes first",
                Status::PendingApproval,
                2,
                vec!["bob"],
                facts(Some(1), Some(2)),
                vec![AwaitingApproval, EnvironmentBusy, Outdated],
                "waiting for 1 more approval",
            ),
            case(
                "an approved deployment with nothing in the way has no blockers",
                Status::Approved,
                1,
                vec![],
                facts(None, None),
                vec![],
                "",
            ),
            case(
                "an approved deployment is blocked by a busy environment",
                Status::Approved,
                1,
                vec![],
                facts(Some(1), None),
                vec![EnvironmentBusy],
                "is STARTED in staging",
            ),
            case(
                "an approved deployment is blocked by a newer success",
                Status::Approved,
                1,
                vec![],
                facts(None, Some(2)),
                vec![Outdated],
                "created later, has SUCCEEDED",
            ),
            case(
                "busy comes before outdated",
                Status::Approved,
                1,
                vec![],
                facts(Some(1), Some(2)),
                vec![EnvironmentBusy, Outdated],
                "is STARTED",
            ),
        ];
        for Case {
            name,
            status,
            required,
            approvers,
            facts,
            kinds,
            first_message,
        } in cases
        {
            let d = deployment(status, required);
            let found = blockers(&d, &Approvals::new(approvers), &facts);
            assert_eq!(
                found.iter().map(|b| b.kind).collect::<Vec<_>>(),
                kinds,
                "{name}"
            );
            if let Some(first) = found.first() {
                assert!(
                    first.message.contains(first_message),
                    "{name}: {}",
                    first.message
                );
            }
            for b in &found {
                let expected = match b.kind {
                    EnvironmentBusy => facts.started,
                    Outdated => facts.newer_succeeded,
                    _ => None,
                };
                assert_eq!(b.deployment, expected, "{name}");
            }
        }
    }

    #[test]
    fn no_status_but_pending_and_approved_has_blockers() {
        let busy = StartFacts {
            started: Some(id(1)),
            newer_succeeded: Some(id(2)),
        };
        for status in Status::ALL {
            let found = blockers(&deployment(status, 1), &Approvals::default(), &busy);
            let expected = matches!(status, Status::PendingApproval | Status::Approved);
            assert_eq!(!found.is_empty(), expected, "{status}");
        }
    }

    #[test]
    fn only_frozen_is_overridable() {
        assert!(BlockerKind::Frozen.overridable());
        assert!(!BlockerKind::AwaitingApproval.overridable());
        assert!(!BlockerKind::EnvironmentBusy.overridable());
        assert!(!BlockerKind::Outdated.overridable());
    }

    #[test]
    fn blocker_kinds_are_stored_by_their_contract_names() {
        let all = [
            BlockerKind::AwaitingApproval,
            BlockerKind::EnvironmentBusy,
            BlockerKind::Outdated,
            BlockerKind::Frozen,
        ];
        let json = serde_json::to_string(&all).expect("serializes");
        assert_eq!(
            json,
            r#"["AWAITING_APPROVAL","ENVIRONMENT_BUSY","OUTDATED","FROZEN"]"#
        );
        for kind in all {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
    }
}
