//! Start timeouts: a start keeps the start timeout its environment had at that moment as
//! a deadline, and a deployment still STARTED when its deadline comes is failed by the
//! server itself. Pure: the store reads the environment inside the start's transaction
//! and, later, the deployment inside the timeout's; the timeout task decides nothing.

use chrono::Duration;
use uuid::Uuid;

use super::{Action, ActionCommand, Deployment, DeploymentEvent, Status, Timestamp};

/// Who records a FAILED for want of an outcome.
pub const TIMEOUT_ACTOR: &str = "shiplog";

/// The deadline of a start at `started_at` in an environment whose start timeout is then
/// `timeout_seconds` (None: no timeout, no deadline).
pub fn start_deadline(started_at: Timestamp, timeout_seconds: Option<u32>) -> Option<Timestamp> {
    timeout_seconds.map(|s| started_at + Duration::seconds(i64::from(s)))
}

/// "start timeout of 600 s passed without an outcome".
fn timeout_note(started_at: Option<Timestamp>, deadline: Timestamp) -> String {
    match started_at {
        Some(started_at) => format!(
            "start timeout of {} s passed without an outcome",
            (deadline - started_at).num_seconds()
        ),
        None => "start timeout passed without an outcome".to_owned(),
    }
}

impl Deployment {
    /// A deployment that has just started (as `apply` leaves it), with the deadline its
    /// environment's start timeout in force at the start gives it. Anything else is
    /// returned as it is: a deadline is set at the start only, and never moved.
    pub fn with_start_timeout(mut self, timeout_seconds: Option<u32>) -> Self {
        if self.status == Status::Started && self.start_deadline.is_none() {
            if let Some(started_at) = self.started_at {
                self.start_deadline = start_deadline(started_at, timeout_seconds);
            }
        }
        self
    }

    /// Whether the start timeout fails this deployment at `now`: it is still STARTED
    /// and its deadline has come.
    pub fn start_timed_out(&self, now: Timestamp) -> bool {
        self.status == Status::Started && self.start_deadline.is_some_and(|d| d <= now)
    }

    /// The timeout action, decided on the deployment as the timeout's transaction reads
    /// it: FAILED by [`TIMEOUT_ACTOR`] with a note that says the start timeout passed,
    /// and its event; None when the timeout does not apply (any outcome recorded first
    /// wins, and a deadline not reached yet fails nothing). The store then
    /// compare-and-sets the status from STARTED, as for any action.
    pub fn time_out(
        &self,
        event_id: Uuid,
        now: Timestamp,
    ) -> Option<(Deployment, DeploymentEvent)> {
        if !self.start_timed_out(now) {
            return None;
        }
        let deadline = self.start_deadline?;
        let note = timeout_note(self.started_at, deadline);
        let command = ActionCommand::validate(Action::Fail, TIMEOUT_ACTOR, Some(&note)).ok()?;
        self.apply(&command, event_id, now).ok()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{
        DeploymentRequest, EventKind, NewDeployment, ProductionEnvironments, Timestamp,
    };

    fn at(seconds: i64) -> Timestamp {
        chrono::Utc
            .timestamp_opt(1_780_000_000 + seconds, 0)
            .unwrap()
    }

    fn created() -> Deployment {
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
        let new = NewDeployment::validate(&request, &ProductionEnvironments::default())
            .expect("valid request");
        Deployment::create(new, Uuid::nil(), Uuid::nil(), at(0)).0
    }

    fn act(d: &Deployment, action: Action, seconds: i64) -> Deployment {
        let command = ActionCommand::validate(action, "bob", Some("n")).expect("valid");
        d.apply(&command, Uuid::nil(), at(seconds))
            .expect("allowed")
            .0
    }

    /// Started at 10 s, with a timeout of `timeout` seconds then.
    fn started(timeout: Option<u32>) -> Deployment {
        let approved = act(&created(), Action::Approve, 5);
        act(&approved, Action::Start, 10).with_start_timeout(timeout)
    }

    #[test]
    fn a_start_records_its_time_and_the_deadline_of_the_timeout_in_force() {
        let cases: [(Option<u32>, Option<Timestamp>); 4] = [
            (None, None),
            (Some(1), Some(at(11))),
            (Some(600), Some(at(610))),
            (Some(2_592_000), Some(at(10 + 2_592_000))),
        ];
        for (timeout, deadline) in cases {
            let d = started(timeout);
            assert_eq!(d.started_at, Some(at(10)), "{timeout:?}");
            assert_eq!(d.start_deadline, deadline, "{timeout:?}");
        }
    }

    #[test]
    fn nothing_but_a_start_gets_a_deadline_and_a_deadline_never_moves() {
        let approved = act(&created(), Action::Approve, 5);
        assert_eq!(
            approved.clone().with_start_timeout(Some(60)).start_deadline,
            None
        );
        let d = started(Some(60));
        // A later configuration (another timeout, or none) does not move it.
        assert_eq!(
            d.clone().with_start_timeout(Some(1)).start_deadline,
            Some(at(70))
        );
        assert_eq!(
            d.clone().with_start_timeout(None).start_deadline,
            Some(at(70))
        );
        // The outcome keeps both times.
        for outcome in [Action::Succeed, Action::Fail] {
            let after = act(&d, outcome, 20);
            assert_eq!(after.started_at, Some(at(10)));
            assert_eq!(after.start_deadline, Some(at(70)));
        }
        let rolled_back = act(&act(&d, Action::Succeed, 20), Action::RollBack, 30);
        assert_eq!(rolled_back.start_deadline, Some(at(70)));
    }

    #[test]
    fn the_timeout_fails_only_a_deployment_still_started_at_its_deadline() {
        let with = started(Some(60));
        let without = started(None);
        let succeeded = act(&with, Action::Succeed, 69);
        let failed = act(&with, Action::Fail, 69);
        let rolled_back = act(&succeeded, Action::RollBack, 69);
        // (deployment, now in seconds, whether the timeout fails it)
        let cases: [(&Deployment, i64, bool); 11] = [
            (&with, 69, false),
            (&with, 70, true),
            (&with, 71, true),
            (&with, 10_000, true),
            (&without, 70, false),
            (&without, 10_000, false),
            (&succeeded, 70, false),
            (&succeeded, 10_000, false),
            (&failed, 70, false),
            (&rolled_back, 70, false),
            (&created(), 70, false),
        ];
        for (i, (d, now, fails)) in cases.into_iter().enumerate() {
            assert_eq!(d.start_timed_out(at(now)), fails, "case {i}");
            let decided = d.time_out(Uuid::nil(), at(now));
            assert_eq!(decided.is_some(), fails, "case {i}");
            if let Some((next, event)) = decided {
                assert_eq!(next.status, Status::Failed, "case {i}");
                assert_eq!(next.start_deadline, d.start_deadline, "case {i}");
                assert_eq!(next.updated_at, at(now), "case {i}");
                assert_eq!(event.kind, EventKind::Failed, "case {i}");
                assert_eq!(event.actor, TIMEOUT_ACTOR, "case {i}");
                assert_eq!(event.from_status, Some(Status::Started), "case {i}");
                assert_eq!(event.to_status, Status::Failed, "case {i}");
                assert_eq!(
                    event.note.as_deref(),
                    Some("start timeout of 60 s passed without an outcome"),
                    "case {i}"
                );
            }
        }
    }
}
