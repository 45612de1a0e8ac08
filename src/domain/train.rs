//! The release train of one service: per known environment, in train order, what runs
//! there now (`live`), what is on its way (`in_flight`), what waits for review
//! (`pending`), and what the nearest earlier stop could promote into it (`promotable`).
//! Pure: the store reads the environments and the deployments that matter, this decides.

use std::cmp::Ordering;

use super::validation::Problems;
use super::{Deployment, Environment, Status, ValidationErrors, MAX_NAME_CHARS};

/// One deployment of the service, as the train reads it. For a SUCCEEDED deployment,
/// `succeeded_seq` is the commit position of its SUCCEEDED event: of two deployments
/// that succeeded in the same millisecond, the one committed later succeeded last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainEntry {
    pub deployment: Deployment,
    pub succeeded_seq: Option<i64>,
}

impl TrainEntry {
    pub fn new(deployment: Deployment, succeeded_seq: Option<i64>) -> Self {
        Self {
            deployment,
            succeeded_seq,
        }
    }
}

/// One environment of the train and the service's deployments there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainStop {
    pub environment: Environment,
    /// Of the SUCCEEDED deployments here, the one that succeeded last.
    pub live: Option<Deployment>,
    /// APPROVED or STARTED, oldest first.
    pub in_flight: Vec<Deployment>,
    /// PENDING_APPROVAL, oldest first.
    pub pending: Vec<Deployment>,
    /// The live deployment of the nearest earlier stop that has one, when its version
    /// differs from this stop's live version (or this stop has none).
    pub promotable: Option<Deployment>,
}

/// One service across every known environment, in release-train order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseTrain {
    pub service: String,
    pub stops: Vec<TrainStop>,
}

/// The `service` argument of a train read: trimmed, 1 to 100 characters, no control
/// characters (the rule of every name). Problems are reported on `field`.
pub fn train_service(field: &str, raw: &str) -> Result<String, ValidationErrors> {
    let mut problems = Problems::default();
    let service = problems.line(field, raw, MAX_NAME_CHARS);
    problems.finish(service)
}

/// Whether the first succeeded after the second: the later SUCCEEDED event (a SUCCEEDED
/// deployment last changed when it succeeded), then the later commit, then the greater id.
fn succeeded_order(a: &TrainEntry, b: &TrainEntry) -> Ordering {
    a.deployment
        .updated_at
        .cmp(&b.deployment.updated_at)
        .then(a.succeeded_seq.cmp(&b.succeeded_seq))
        .then(a.deployment.id.cmp(&b.deployment.id))
}

fn oldest_first(a: &Deployment, b: &Deployment) -> Ordering {
    a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id))
}

impl ReleaseTrain {
    /// The train of `service` over `environments` (put in train order: position, then
    /// name), given deployments of the service: any superset of those that are
    /// SUCCEEDED, APPROVED, STARTED or PENDING_APPROVAL will do. Deployments of other
    /// services or of environments not given are left out.
    pub fn assemble(
        service: &str,
        mut environments: Vec<Environment>,
        entries: impl IntoIterator<Item = TrainEntry>,
    ) -> ReleaseTrain {
        environments.sort_by(|a, b| a.position.cmp(&b.position).then(a.name.cmp(&b.name)));
        let mut stops: Vec<TrainStop> = environments
            .into_iter()
            .map(|environment| TrainStop {
                environment,
                live: None,
                in_flight: Vec::new(),
                pending: Vec::new(),
                promotable: None,
            })
            .collect();
        let mut live: Vec<Option<TrainEntry>> = vec![None; stops.len()];
        for entry in entries {
            let d = &entry.deployment;
            if d.service != service {
                continue;
            }
            let Some(at) = stops
                .iter()
                .position(|s| s.environment.name == d.environment)
            else {
                continue;
            };
            match d.status {
                Status::Succeeded => {
                    let later = live[at]
                        .as_ref()
                        .is_none_or(|current| succeeded_order(&entry, current).is_gt());
                    if later {
                        live[at] = Some(entry);
                    }
                }
                Status::Approved | Status::Started => stops[at].in_flight.push(entry.deployment),
                Status::PendingApproval => stops[at].pending.push(entry.deployment),
                _ => {}
            }
        }
        let mut earlier_live: Option<Deployment> = None;
        for (stop, live) in stops.iter_mut().zip(live) {
            stop.in_flight.sort_by(oldest_first);
            stop.pending.sort_by(oldest_first);
            stop.live = live.map(|e| e.deployment);
            stop.promotable = earlier_live
                .as_ref()
                .filter(|earlier| {
                    stop.live
                        .as_ref()
                        .is_none_or(|here| here.version != earlier.version)
                })
                .cloned();
            if let Some(here) = &stop.live {
                earlier_live = Some(here.clone());
            }
        }
        ReleaseTrain {
            service: service.to_owned(),
            stops,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProductionEnvironments, Timestamp};
    use uuid::Uuid;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_timestamp_millis(1_700_000_000_000 + ms).expect("a time")
    }

    fn env(name: &str) -> Environment {
        let id = Uuid::from_u128(name.bytes().fold(0, |h, b| h * 31 + u128::from(b)));
        Environment::register(name, &ProductionEnvironments::default(), id, at(0))
    }

    fn positioned(name: &str, position: i32) -> Environment {
        Environment {
            position,
            ..env(name)
        }
    }

    /// Deployment number `n` of `service` in `environment`: created at n, last changed
    /// at `updated`.
    fn dep(
        n: u128,
        service: &str,
        environment: &str,
        version: &str,
        status: Status,
        updated: i64,
    ) -> Deployment {
        Deployment {
            id: Uuid::from_u128(n),
            service: service.to_owned(),
            environment: environment.to_owned(),
            version: version.to_owned(),
            requester: "alice".to_owned(),
            work_refs: vec!["JIRA-1".to_owned()],
            risk: Some("low".to_owned()),
            rollback_plan: "redeploy".to_owned(),
            status,
            reviewed_by: None,
            reviewed_at: None,
            created_at: at(n as i64),
            updated_at: at(updated),
            required_approvals: 1,
            promoted_from: None,
            release_notes: None,
            started_at: None,
            start_deadline: None,
        }
    }

    /// A deployment of `billing` whose SUCCEEDED event (if any) is the `n`th commit.
    fn entry(
        n: u128,
        environment: &str,
        version: &str,
        status: Status,
        updated: i64,
    ) -> TrainEntry {
        let d = dep(n, "billing", environment, version, status, updated);
        let seq = (status == Status::Succeeded).then_some(n as i64);
        TrainEntry::new(d, seq)
    }

    /// The train as (environment, live id, in-flight ids, pending ids, promotable id).
    type Summary = Vec<(String, Option<u128>, Vec<u128>, Vec<u128>, Option<u128>)>;

    fn summary(train: &ReleaseTrain) -> Summary {
        let id = |d: &Deployment| d.id.as_u128();
        train
            .stops
            .iter()
            .map(|s| {
                (
                    s.environment.name.clone(),
                    s.live.as_ref().map(id),
                    s.in_flight.iter().map(id).collect(),
                    s.pending.iter().map(id).collect(),
                    s.promotable.as_ref().map(id),
                )
            })
            .collect()
    }

    fn stop(
        name: &str,
        live: Option<u128>,
        in_flight: &[u128],
        pending: &[u128],
        promotable: Option<u128>,
    ) -> (String, Option<u128>, Vec<u128>, Vec<u128>, Option<u128>) {
        (
            name.to_owned(),
            live,
            in_flight.to_vec(),
            pending.to_vec(),
            promotable,
        )
    }

    fn four() -> Vec<Environment> {
        ["production", "dev", "staging", "testing"]
            .into_iter()
            .map(env)
            .collect()
    }

    use Status::*;

    #[test]
    fn every_known_environment_is_a_stop_in_train_order_even_with_no_deployment() {
        let cases: Vec<(&str, Vec<Environment>, Vec<&str>)> = vec![
            (
                "the four conventional names, given in any order",
                four(),
                vec!["dev", "testing", "staging", "production"],
            ),
            ("no environment at all", vec![], vec![]),
            (
                "equal positions are ordered by name",
                vec![positioned("b", 5), positioned("a", 5), positioned("c", 1)],
                vec!["c", "a", "b"],
            ),
            (
                "a configured position beats the tier's",
                vec![env("dev"), positioned("production", -1), env("qa-box")],
                vec!["production", "dev", "qa-box"],
            ),
        ];
        for (case, environments, order) in cases {
            let train = ReleaseTrain::assemble("billing", environments, vec![]);
            let names: Vec<_> = train
                .stops
                .iter()
                .map(|s| s.environment.name.as_str())
                .collect();
            assert_eq!(names, order, "{case}");
            assert!(
                train.stops.iter().all(|s| s.live.is_none()
                    && s.in_flight.is_empty()
                    && s.pending.is_empty()
                    && s.promotable.is_none()),
                "{case}"
            );
            assert_eq!(train.service, "billing");
        }
    }

    #[test]
    fn each_deployment_lands_in_its_environment_by_status_and_oldest_first() {
        let cases: Vec<(&str, Vec<TrainEntry>, Summary)> = vec![
            (
                "approved and started are in flight, pending waits, oldest first",
                vec![
                    entry(5, "staging", "v5", Started, 50),
                    entry(2, "staging", "v2", Approved, 20),
                    entry(4, "staging", "v4", PendingApproval, 40),
                    entry(3, "staging", "v3", PendingApproval, 30),
                ],
                vec![
                    stop("dev", None, &[], &[], None),
                    stop("testing", None, &[], &[], None),
                    stop("staging", None, &[2, 5], &[3, 4], None),
                    stop("production", None, &[], &[], None),
                ],
            ),
            (
                "terminal and failed deployments are nowhere",
                vec![
                    entry(1, "dev", "v1", Rejected, 10),
                    entry(2, "dev", "v2", Failed, 20),
                    entry(3, "dev", "v3", RolledBack, 30),
                    entry(4, "dev", "v4", Cancelled, 40),
                ],
                vec![
                    stop("dev", None, &[], &[], None),
                    stop("testing", None, &[], &[], None),
                    stop("staging", None, &[], &[], None),
                    stop("production", None, &[], &[], None),
                ],
            ),
            (
                "other services and unknown environments are left out",
                vec![
                    TrainEntry::new(dep(1, "payroll", "dev", "v1", Succeeded, 10), Some(1)),
                    entry(2, "nowhere", "v2", Succeeded, 20),
                    entry(3, "nowhere", "v3", PendingApproval, 30),
                ],
                vec![
                    stop("dev", None, &[], &[], None),
                    stop("testing", None, &[], &[], None),
                    stop("staging", None, &[], &[], None),
                    stop("production", None, &[], &[], None),
                ],
            ),
        ];
        for (case, entries, expected) in cases {
            let train = ReleaseTrain::assemble("billing", four(), entries);
            assert_eq!(summary(&train), expected, "{case}");
        }
    }

    #[test]
    fn the_live_deployment_is_the_succeeded_one_that_succeeded_last() {
        let cases: Vec<(&str, Vec<TrainEntry>, Option<u128>)> = vec![
            (
                "nothing succeeded",
                vec![entry(1, "dev", "v1", Started, 10)],
                None,
            ),
            (
                "the later success wins, whatever the creation order",
                vec![
                    entry(1, "dev", "v1", Succeeded, 90),
                    entry(2, "dev", "v2", Succeeded, 50),
                ],
                Some(1),
            ),
            (
                "a rolled-back success is not live: the previous success is again",
                vec![
                    entry(1, "dev", "v1", Succeeded, 10),
                    entry(2, "dev", "v2", RolledBack, 30),
                ],
                Some(1),
            ),
            (
                "successes in the same millisecond: the later commit wins",
                vec![
                    TrainEntry::new(dep(1, "billing", "dev", "v1", Succeeded, 10), Some(7)),
                    TrainEntry::new(dep(2, "billing", "dev", "v2", Succeeded, 10), Some(6)),
                ],
                Some(1),
            ),
            (
                "same millisecond and no commit position: the greater id wins",
                vec![
                    TrainEntry::new(dep(2, "billing", "dev", "v2", Succeeded, 10), None),
                    TrainEntry::new(dep(1, "billing", "dev", "v1", Succeeded, 10), None),
                ],
                Some(2),
            ),
        ];
        for (case, entries, live) in cases {
            let train = ReleaseTrain::assemble("billing", four(), entries);
            let dev = &train.stops[0];
            assert_eq!(dev.environment.name, "dev", "{case}");
            assert_eq!(dev.live.as_ref().map(|d| d.id.as_u128()), live, "{case}");
        }
    }

    #[test]
    fn promotable_is_the_nearest_earlier_live_deployment_when_its_version_differs() {
        type Case = (&'static str, Vec<TrainEntry>, [Option<u128>; 4]);
        let cases: Vec<Case> = vec![
            ("nothing live anywhere", vec![], [None; 4]),
            (
                "live in dev only: every later stop may take it",
                vec![entry(1, "dev", "v1", Succeeded, 10)],
                [None, Some(1), Some(1), Some(1)],
            ),
            (
                "the same version further on: nothing to promote there, but after it",
                vec![
                    entry(1, "dev", "v2", Succeeded, 10),
                    entry(2, "testing", "v2", Succeeded, 20),
                ],
                [None, None, Some(2), Some(2)],
            ),
            (
                "the nearest earlier stop with a live one counts, not the first",
                vec![
                    entry(1, "dev", "v3", Succeeded, 10),
                    entry(2, "testing", "v2", Succeeded, 20),
                    entry(3, "production", "v1", Succeeded, 30),
                ],
                [None, Some(1), Some(2), Some(2)],
            ),
            (
                "equal to the nearest, though different from one further back: null",
                vec![
                    entry(1, "dev", "v3", Succeeded, 10),
                    entry(2, "staging", "v2", Succeeded, 20),
                    entry(3, "production", "v2", Succeeded, 30),
                ],
                [None, Some(1), Some(1), None],
            ),
            (
                "an in-flight or pending deployment is never promotable",
                vec![
                    entry(1, "dev", "v1", Started, 10),
                    entry(2, "testing", "v2", PendingApproval, 20),
                ],
                [None; 4],
            ),
        ];
        for (case, entries, promotable) in cases {
            let train = ReleaseTrain::assemble("billing", four(), entries);
            let got: Vec<_> = train
                .stops
                .iter()
                .map(|s| s.promotable.as_ref().map(|d| d.id.as_u128()))
                .collect();
            assert_eq!(got, promotable.to_vec(), "{case}");
        }
    }

    #[test]
    fn the_service_argument_follows_the_naming_rule_of_every_name() {
        let long = "s".repeat(MAX_NAME_CHARS + 1);
        let cases: Vec<(&str, &str, Result<&str, &str>)> = vec![
            ("a plain name", "billing", Ok("billing")),
            (
                "surrounding blanks are trimmed",
                "  billing \t",
                Ok("billing"),
            ),
            ("blank", "   ", Err("must not be blank")),
            ("too long", &long, Err("must be at most 100 characters")),
            (
                "a control character",
                "bill\u{7}ing",
                Err("must not contain control characters"),
            ),
        ];
        for (case, raw, expected) in cases {
            let got = train_service("service", raw);
            match expected {
                Ok(name) => assert_eq!(got.as_deref(), Ok(name), "{case}"),
                Err(message) => {
                    let errors = got.expect_err(case).0;
                    assert_eq!(errors.len(), 1, "{case}");
                    assert_eq!(errors[0].field, "service", "{case}");
                    assert_eq!(errors[0].message, message, "{case}");
                }
            }
        }
    }
}
