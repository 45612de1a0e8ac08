//! Promotion: a SUCCEEDED deployment's service and version, requested again in a later
//! environment of the release train. The store reads the source and the train inside
//! one write transaction; this module decides the target, the defaults and the result.

use std::cmp::Ordering;

use uuid::Uuid;

use super::environment::{Environment, Tier};
use super::validation::{
    DeploymentRequest, NewDeployment, Problems, ValidationErrors, MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_NAME_CHARS, MAX_TEXT_CHARS, RISK_REQUIRED,
};
use super::{Deployment, DeploymentEvent, Refusal, Status, Timestamp};

/// A `promoteDeployment` input as a client sent it, nothing checked yet. `None` is a
/// field left out or given as null: both mean "the default".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromotionRequest {
    /// The deployment whose service and version are promoted.
    pub source: Uuid,
    /// Default: the next environment after the source's in the release train.
    pub environment: Option<String>,
    pub requester: String,
    /// Default: the source's.
    pub work_refs: Option<Vec<String>>,
    /// Never copied from the source.
    pub risk: Option<String>,
    /// Default: the source's.
    pub rollback_plan: Option<String>,
    /// Never copied from the source.
    pub release_notes: Option<String>,
    pub idempotency_key: Option<String>,
}

/// A promotion whose own fields passed every rule that does not depend on the source or
/// the target; its strings are trimmed. Built by [`Promotion::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion {
    source: Uuid,
    environment: Option<String>,
    requester: String,
    work_refs: Option<Vec<String>>,
    risk: Option<String>,
    rollback_plan: Option<String>,
    release_notes: Option<String>,
    idempotency_key: Option<String>,
}

/// An environment's place in the release train, which is ordered by position, then name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub name: String,
    pub position: i32,
}

impl Place {
    pub fn new(name: impl Into<String>, position: i32) -> Self {
        Self {
            name: name.into(),
            position,
        }
    }

    /// Release-train order: position, then name.
    fn order(&self, other: &Place) -> Ordering {
        (self.position, self.name.as_str()).cmp(&(other.position, other.name.as_str()))
    }
}

impl From<&Environment> for Place {
    fn from(e: &Environment) -> Self {
        Place::new(e.name.clone(), e.position)
    }
}

/// Why a promotion is refused once its source and the train are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromotionRefused {
    /// The source is not SUCCEEDED.
    #[error(transparent)]
    Refused(Refusal),
    /// The target, or the deployment it would create, breaks a rule.
    #[error(transparent)]
    Invalid(ValidationErrors),
}

/// The problem with `environment` when nothing comes after the source's.
const NOTHING_AFTER: &str = "has no environment after it in the release train";

impl Promotion {
    /// Checks every field the client sent, reporting every problem at once. `target_tier`:
    /// the tier of the environment the request names, when it names one (then a risk the
    /// tier requires is checked here already; for the default target it is checked once
    /// the target is known).
    pub fn validate(
        request: &PromotionRequest,
        target_tier: Option<Tier>,
    ) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let environment = request
            .environment
            .as_deref()
            .map(|e| p.line("environment", e, MAX_NAME_CHARS));
        let requester = p.line("requester", &request.requester, MAX_NAME_CHARS);
        let work_refs = request.work_refs.as_deref().map(|refs| p.work_refs(refs));
        let risk = p.text("risk", request.risk.as_deref(), MAX_TEXT_CHARS);
        if risk.is_none() && target_tier.is_some_and(Tier::requires_risk) {
            p.add("risk", RISK_REQUIRED);
        }
        let rollback_plan = match request.rollback_plan.as_deref() {
            None => None,
            Some(plan) => {
                let plan = p.text("rollbackPlan", Some(plan), MAX_TEXT_CHARS);
                if plan.is_none() {
                    p.add("rollbackPlan", "must not be blank");
                }
                plan
            }
        };
        let release_notes = p.text(
            "releaseNotes",
            request.release_notes.as_deref(),
            MAX_TEXT_CHARS,
        );
        let idempotency_key = request
            .idempotency_key
            .as_deref()
            .map(|key| p.line("idempotencyKey", key, MAX_IDEMPOTENCY_KEY_CHARS));
        p.finish(Promotion {
            source: request.source,
            environment,
            requester,
            work_refs,
            risk,
            rollback_plan,
            release_notes,
            idempotency_key,
        })
    }

    pub fn source(&self) -> Uuid {
        self.source
    }
    /// The target the client named, if any.
    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }
    pub fn requester(&self) -> &str {
        &self.requester
    }
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Where the promotion goes, given the source and the release train (every known
    /// environment, the source's and a named target included, in any order). The source
    /// must be SUCCEEDED; the target is the named one or else the next after the
    /// source's, and it must come later in the train than the source's.
    pub fn target<'a>(
        &self,
        source: &Deployment,
        train: &'a [Place],
    ) -> Result<&'a Place, PromotionRefused> {
        if source.status != Status::Succeeded {
            return Err(PromotionRefused::Refused(Refusal::NotPromotable {
                status: source.status,
            }));
        }
        target(train, &source.environment, self.environment()).map_err(PromotionRefused::Invalid)
    }

    /// The new deployment in `target` (as it is inside the write transaction) and its
    /// CREATED event: the source's service and version; workRefs and rollbackPlan the
    /// source's unless given; risk and releaseNotes only as given. Every creation rule
    /// applies to the result, with the target's tier deciding whether the risk is
    /// required; the deployment keeps the target's `required_approvals`.
    pub fn create(
        &self,
        source: &Deployment,
        target: &Environment,
        id: Uuid,
        event_id: Uuid,
        now: Timestamp,
    ) -> Result<(Deployment, DeploymentEvent), ValidationErrors> {
        let new =
            NewDeployment::validate_in(&self.request_from(source, &target.name), target.tier)?;
        let (mut deployment, event) = Deployment::create_in(new, target, id, event_id, now)?;
        deployment.promoted_from = Some(source.id);
        Ok((deployment, event))
    }

    /// The creation this promotion amounts to, defaults filled in from the source.
    fn request_from(&self, source: &Deployment, environment: &str) -> DeploymentRequest {
        DeploymentRequest {
            service: source.service.clone(),
            environment: environment.to_owned(),
            version: source.version.clone(),
            requester: self.requester.clone(),
            work_refs: self
                .work_refs
                .clone()
                .unwrap_or_else(|| source.work_refs.clone()),
            risk: self.risk.clone(),
            rollback_plan: self
                .rollback_plan
                .clone()
                .unwrap_or_else(|| source.rollback_plan.clone()),
            idempotency_key: self.idempotency_key.clone(),
            release_notes: self.release_notes.clone(),
        }
    }

    /// Whether this promotion is a retry of the one that created `original` from
    /// `source`, as far as idempotency keys are concerned: the same source, requester,
    /// risk and release notes; workRefs and rollbackPlan as given or, left out, the
    /// source's; and the named target, if one is named, the one it went to (left out, the
    /// default it was given then).
    pub fn is_retry_of(&self, original: &Deployment, source: &Deployment) -> bool {
        original.promoted_from == Some(self.source)
            && source.id == self.source
            && self
                .environment
                .as_deref()
                .is_none_or(|e| e == original.environment)
            && original.requester == self.requester
            && original.work_refs == *self.work_refs.as_ref().unwrap_or(&source.work_refs)
            && original.risk == self.risk
            && original.rollback_plan
                == *self.rollback_plan.as_ref().unwrap_or(&source.rollback_plan)
            && original.release_notes == self.release_notes
    }
}

/// The target of a promotion from the environment `from`: `named` if given, else the next
/// environment after `from` in the release train. It must come later than `from`.
/// `train` holds every known environment (`from` and `named` included), in any order.
pub fn target<'a>(
    train: &'a [Place],
    from: &str,
    named: Option<&str>,
) -> Result<&'a Place, ValidationErrors> {
    let refuse = |message: String| {
        Err(ValidationErrors(vec![super::FieldError {
            field: "environment".to_owned(),
            message,
        }]))
    };
    let Some(from_place) = train.iter().find(|p| p.name == from) else {
        return refuse(format!("the source's environment {from:?} is not known"));
    };
    match named {
        Some(name) => match train.iter().find(|p| p.name == name) {
            Some(place) if place.order(from_place) == Ordering::Greater => Ok(place),
            Some(_) => refuse(format!(
                "must come later in the release train than {from:?}"
            )),
            None => refuse(format!("{name:?} is not a known environment")),
        },
        None => match train
            .iter()
            .filter(|p| p.order(from_place) == Ordering::Greater)
            .min_by(|a, b| a.order(b))
        {
            Some(place) => Ok(place),
            None => refuse(format!("{from:?} {NOTHING_AFTER}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::ProductionEnvironments;

    fn at(s: i64) -> Timestamp {
        chrono::Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn train(places: &[(&str, i32)]) -> Vec<Place> {
        places.iter().map(|(n, p)| Place::new(*n, *p)).collect()
    }

    const STANDARD: &[(&str, i32)] = &[
        ("dev", 10),
        ("testing", 20),
        ("staging", 30),
        ("production", 40),
    ];

    fn fields(errors: &ValidationErrors) -> Vec<&str> {
        errors.0.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn the_target_is_the_named_environment_or_the_next_after_the_sources() {
        // (what, the train, the source's environment, the named target, the target
        // expected or None for refused)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, i32)],
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (
                "testing goes to staging by default",
                STANDARD,
                "testing",
                None,
                Some("staging"),
            ),
            (
                "dev goes to testing by default",
                STANDARD,
                "dev",
                None,
                Some("testing"),
            ),
            (
                "staging goes to production by default",
                STANDARD,
                "staging",
                None,
                Some("production"),
            ),
            (
                "nothing comes after production",
                STANDARD,
                "production",
                None,
                None,
            ),
            (
                "a named later environment may skip one",
                STANDARD,
                "testing",
                Some("production"),
                Some("production"),
            ),
            (
                "a named earlier environment is refused",
                STANDARD,
                "staging",
                Some("testing"),
                None,
            ),
            (
                "the source's own environment is refused",
                STANDARD,
                "staging",
                Some("staging"),
                None,
            ),
            (
                "an unknown named environment is refused",
                STANDARD,
                "testing",
                Some("qa-west"),
                None,
            ),
            (
                "the train is ordered by position, not by how it is listed",
                &[
                    ("production", 40),
                    ("dev", 10),
                    ("staging", 30),
                    ("testing", 20),
                ],
                "testing",
                None,
                Some("staging"),
            ),
            (
                "a tie in position is broken by name",
                &[("staging-a", 30), ("staging-b", 30), ("production", 40)],
                "staging-a",
                None,
                Some("staging-b"),
            ),
            (
                "the later name of a tie may be named",
                &[("staging-a", 30), ("staging-b", 30)],
                "staging-a",
                Some("staging-b"),
                Some("staging-b"),
            ),
            (
                "the earlier name of a tie is earlier",
                &[("staging-a", 30), ("staging-b", 30)],
                "staging-b",
                Some("staging-a"),
                None,
            ),
            (
                "a configured position moves an environment in the train",
                &[
                    ("testing", 20),
                    ("staging", 30),
                    ("canary", 35),
                    ("production", 40),
                ],
                "staging",
                None,
                Some("canary"),
            ),
            (
                "negative positions come first",
                &[("sandbox", -5), ("dev", 10)],
                "sandbox",
                None,
                Some("dev"),
            ),
            (
                "an environment alone has nothing after it",
                &[("testing", 20)],
                "testing",
                None,
                None,
            ),
            (
                "an unknown source environment is refused",
                STANDARD,
                "elsewhere",
                None,
                None,
            ),
        ];
        for (name, places, from, named, expected) in cases {
            let train = train(places);
            let got = target(&train, from, *named);
            match (got, expected) {
                (Ok(place), Some(want)) => assert_eq!(place.name, *want, "{name}"),
                (Err(errors), None) => assert_eq!(fields(&errors), ["environment"], "{name}"),
                (got, want) => panic!("{name}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    fn request(source: Uuid) -> PromotionRequest {
        PromotionRequest {
            source,
            environment: None,
            requester: " alice ".to_owned(),
            work_refs: None,
            risk: None,
            rollback_plan: None,
            release_notes: None,
            idempotency_key: None,
        }
    }

    fn source(environment: &str, status: Status) -> Deployment {
        let new = NewDeployment::validate(
            &DeploymentRequest {
                service: "billing".into(),
                environment: environment.into(),
                version: "v2.4.0".into(),
                requester: "bob".into(),
                work_refs: vec!["JIRA-1".into(), "JIRA-2".into()],
                risk: Some("the source's risk".into()),
                rollback_plan: "redeploy v2.3.9".into(),
                idempotency_key: None,
                release_notes: Some("the source's notes".into()),
            },
            &ProductionEnvironments::default(),
        )
        .expect("valid");
        let (mut d, _) = Deployment::create(new, Uuid::now_v7(), Uuid::now_v7(), at(0));
        d.status = status;
        d
    }

    fn environment(name: &str, required_approvals: u8) -> Environment {
        let mut e = Environment::register(
            name,
            &ProductionEnvironments::default(),
            Uuid::now_v7(),
            at(0),
        );
        e.required_approvals = required_approvals;
        e
    }

    #[test]
    fn only_a_succeeded_deployment_can_be_promoted() {
        let train = train(STANDARD);
        for status in Status::ALL {
            let source = source("testing", status);
            let promotion = Promotion::validate(&request(source.id), None).expect("valid");
            let got = promotion.target(&source, &train);
            if status == Status::Succeeded {
                assert_eq!(got.expect("promotable").name, "staging");
            } else {
                assert_eq!(
                    got.unwrap_err(),
                    PromotionRefused::Refused(Refusal::NotPromotable { status }),
                    "{status}"
                );
            }
        }
    }

    #[test]
    fn the_source_status_is_checked_before_the_target() {
        let source = source("production", Status::Failed);
        let promotion = Promotion::validate(&request(source.id), None).expect("valid");
        assert!(matches!(
            promotion.target(&source, &train(STANDARD)),
            Err(PromotionRefused::Refused(_))
        ));
    }

    #[test]
    fn the_input_is_checked_field_by_field_with_every_problem_at_once() {
        let id = Uuid::now_v7();
        // (what, how the request is changed, the named target's tier, fields refused)
        type Change = fn(&mut PromotionRequest);
        let cases: &[(&str, Change, Option<Tier>, &[&str])] = &[
            ("left out, everything defaults", |_| {}, None, &[]),
            (
                "explicit nulls are defaults too",
                |r| {
                    r.work_refs = None;
                    r.rollback_plan = None;
                },
                None,
                &[],
            ),
            (
                "an explicit empty workRefs is refused",
                |r| r.work_refs = Some(vec![]),
                None,
                &["workRefs"],
            ),
            (
                "a blank work reference is refused by its index",
                |r| r.work_refs = Some(vec!["JIRA-9".into(), "  ".into()]),
                None,
                &["workRefs[1]"],
            ),
            (
                "a blank rollbackPlan is refused",
                |r| r.rollback_plan = Some("   ".into()),
                None,
                &["rollbackPlan"],
            ),
            (
                "a blank named environment is refused",
                |r| r.environment = Some(" ".into()),
                None,
                &["environment"],
            ),
            (
                "a blank requester is refused",
                |r| r.requester = "".into(),
                None,
                &["requester"],
            ),
            (
                "a named production target needs a risk",
                |r| r.environment = Some("production".into()),
                Some(Tier::Production),
                &["risk"],
            ),
            (
                "a named staging target does not",
                |r| r.environment = Some("staging".into()),
                Some(Tier::Staging),
                &[],
            ),
            (
                "every problem is reported at once",
                |r| {
                    r.requester = "\u{7}".into();
                    r.work_refs = Some(vec![]);
                    r.rollback_plan = Some("".into());
                    r.release_notes = Some("x".repeat(MAX_TEXT_CHARS + 1));
                    r.idempotency_key = Some("".into());
                },
                Some(Tier::Production),
                &[
                    "requester",
                    "workRefs",
                    "risk",
                    "rollbackPlan",
                    "releaseNotes",
                    "idempotencyKey",
                ],
            ),
        ];
        for (what, change, tier, refused) in cases {
            let mut r = request(id);
            change(&mut r);
            match Promotion::validate(&r, *tier) {
                Ok(p) => {
                    assert!(refused.is_empty(), "{what}: accepted");
                    assert_eq!(p.requester(), "alice", "{what}: trimmed");
                }
                Err(errors) => assert_eq!(fields(&errors), *refused, "{what}"),
            }
        }
    }

    #[test]
    fn work_refs_and_rollback_plan_default_to_the_sources_and_risk_and_notes_are_never_copied() {
        let source = source("testing", Status::Succeeded);
        let staging = environment("staging", 1);
        let promotion = Promotion::validate(&request(source.id), None).expect("valid");
        let (d, event) = promotion
            .create(&source, &staging, Uuid::now_v7(), Uuid::now_v7(), at(5))
            .expect("created");
        assert_eq!(d.service, "billing");
        assert_eq!(d.version, "v2.4.0");
        assert_eq!(d.environment, "staging");
        assert_eq!(d.requester, "alice");
        assert_eq!(d.work_refs, source.work_refs);
        assert_eq!(d.rollback_plan, source.rollback_plan);
        assert_eq!(d.risk, None);
        assert_eq!(d.release_notes, None);
        assert_eq!(d.promoted_from, Some(source.id));
        assert_eq!(d.status, Status::PendingApproval);
        assert_eq!(d.created_at, at(5));
        assert_eq!(event.kind, crate::domain::EventKind::Created);
        assert_eq!(event.actor, "alice");
        assert_eq!(event.environment, "staging");
        assert_eq!(event.to_status, Status::PendingApproval);
    }

    #[test]
    fn given_fields_replace_the_sources() {
        let source = source("testing", Status::Succeeded);
        let staging = environment("staging", 1);
        let mut r = request(source.id);
        r.work_refs = Some(vec![" JIRA-9 ".into()]);
        r.rollback_plan = Some(" flip the flag ".into());
        r.risk = Some(" new risk ".into());
        r.release_notes = Some(" notes ".into());
        let promotion = Promotion::validate(&r, None).expect("valid");
        let (d, _) = promotion
            .create(&source, &staging, Uuid::now_v7(), Uuid::now_v7(), at(5))
            .expect("created");
        assert_eq!(d.work_refs, ["JIRA-9"]);
        assert_eq!(d.rollback_plan, "flip the flag");
        assert_eq!(d.risk.as_deref(), Some("new risk"));
        assert_eq!(d.release_notes.as_deref(), Some("notes"));
    }

    #[test]
    fn a_production_target_needs_its_own_risk_and_keeps_its_required_approvals() {
        let source = source("staging", Status::Succeeded);
        let production = environment("production", 2);
        let promotion = Promotion::validate(&request(source.id), None).expect("valid");
        let errors = promotion
            .create(&source, &production, Uuid::now_v7(), Uuid::now_v7(), at(5))
            .unwrap_err();
        assert_eq!(fields(&errors), ["risk"]);

        let mut r = request(source.id);
        r.risk = Some("canary first".into());
        let promotion = Promotion::validate(&r, None).expect("valid");
        let (d, _) = promotion
            .create(&source, &production, Uuid::now_v7(), Uuid::now_v7(), at(5))
            .expect("created");
        assert_eq!(d.required_approvals, 2);
        assert_eq!(d.risk.as_deref(), Some("canary first"));
    }

    #[test]
    fn a_retry_is_the_same_input_with_defaults_as_the_source_gives_them() {
        let source = source("testing", Status::Succeeded);
        let staging = environment("staging", 1);
        let mut first = request(source.id);
        first.idempotency_key = Some("k".into());
        let original = Promotion::validate(&first, None)
            .expect("valid")
            .create(&source, &staging, Uuid::now_v7(), Uuid::now_v7(), at(5))
            .expect("created")
            .0;
        type Change = fn(&mut PromotionRequest);
        let cases: &[(&str, Change, bool)] = &[
            ("the same input", |_| {}, true),
            (
                "the target it defaulted to, named",
                |r| r.environment = Some("staging".into()),
                true,
            ),
            (
                "the source's workRefs, given",
                |r| r.work_refs = Some(vec!["JIRA-1".into(), "JIRA-2".into()]),
                true,
            ),
            (
                "the source's rollbackPlan, given",
                |r| r.rollback_plan = Some("redeploy v2.3.9".into()),
                true,
            ),
            (
                "the requester with other spacing",
                |r| r.requester = "alice".into(),
                true,
            ),
            (
                "another target",
                |r| r.environment = Some("production".into()),
                false,
            ),
            ("another requester", |r| r.requester = "carol".into(), false),
            (
                "other workRefs",
                |r| r.work_refs = Some(vec!["JIRA-1".into()]),
                false,
            ),
            (
                "another rollbackPlan",
                |r| r.rollback_plan = Some("other".into()),
                false,
            ),
            ("a risk", |r| r.risk = Some("some".into()), false),
            (
                "release notes",
                |r| r.release_notes = Some("some".into()),
                false,
            ),
            ("another source", |r| r.source = Uuid::now_v7(), false),
        ];
        for (what, change, same) in cases {
            let mut r = first.clone();
            change(&mut r);
            let retry = Promotion::validate(&r, None).expect("valid");
            assert_eq!(retry.is_retry_of(&original, &source), *same, "{what}");
        }
        // A deployment created directly is never the original of a promotion.
        let mut direct = original.clone();
        direct.promoted_from = None;
        let retry = Promotion::validate(&first, None).expect("valid");
        assert!(!retry.is_retry_of(&direct, &source));
    }
}
