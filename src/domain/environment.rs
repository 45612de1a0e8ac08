//! Environments: their tiers, the naming rule that gives a new environment its tier and
//! release-train position, and configuration with absent-versus-null semantics.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::lifecycle::UnknownName;
use super::validation::{Problems, ProductionEnvironments, ValidationErrors, MAX_NAME_CHARS};
use super::Timestamp;

pub const MIN_REQUIRED_APPROVALS: i32 = 1;
pub const MAX_REQUIRED_APPROVALS: i32 = 10;
pub const MIN_START_TIMEOUT_SECONDS: i32 = 1;
/// Thirty days.
pub const MAX_START_TIMEOUT_SECONDS: i32 = 2_592_000;

/// Tiers as GitLab names them. PRODUCTION makes risk required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Development,
    Testing,
    Staging,
    Production,
    Other,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Development,
        Tier::Testing,
        Tier::Staging,
        Tier::Production,
        Tier::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Development => "DEVELOPMENT",
            Tier::Testing => "TESTING",
            Tier::Staging => "STAGING",
            Tier::Production => "PRODUCTION",
            Tier::Other => "OTHER",
        }
    }

    /// The tier the naming rule gives an environment registered by use: PRODUCTION when
    /// the name is in the production set; otherwise, by case-insensitive substring, the
    /// first that matches of STAGING, TESTING and DEVELOPMENT; otherwise OTHER.
    pub fn of_name(name: &str, production: &ProductionEnvironments) -> Tier {
        if production.contains(name) {
            return Tier::Production;
        }
        const RULES: [(Tier, &[&str]); 3] = [
            (Tier::Staging, &["stag", "model", "demo"]),
            (Tier::Testing, &["test", "qc"]),
            (Tier::Development, &["dev", "review", "trunk"]),
        ];
        let name = name.trim().to_lowercase();
        RULES
            .into_iter()
            .find(|(_, parts)| parts.iter().any(|part| name.contains(part)))
            .map_or(Tier::Other, |(tier, _)| tier)
    }

    /// Where an environment of this tier stands in the release train when registered:
    /// 10 x its rank (DEVELOPMENT 10 ... OTHER 50).
    pub fn default_position(self) -> i32 {
        match self {
            Tier::Development => 10,
            Tier::Testing => 20,
            Tier::Staging => 30,
            Tier::Production => 40,
            Tier::Other => 50,
        }
    }

    /// Deployments to an environment of this tier must state their risk.
    pub fn requires_risk(self) -> bool {
        self == Tier::Production
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "tier",
                value: s.to_owned(),
            })
    }
}

/// A place deployments go, with its release-train position and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub id: Uuid,
    /// Trimmed; compared exactly.
    pub name: String,
    pub position: i32,
    pub tier: Tier,
    /// 1 to 10.
    pub required_approvals: u8,
    /// 1 to 2,592,000; `None`: never.
    pub start_timeout_seconds: Option<u32>,
    /// Who last configured it; `None` while it has only been registered by use.
    pub updated_by: Option<String>,
    pub updated_at: Timestamp,
}

impl Environment {
    /// An environment registered by use: tier and position by the naming rule, the
    /// default settings, configured by nobody.
    pub fn register(
        name: &str,
        production: &ProductionEnvironments,
        id: Uuid,
        now: Timestamp,
    ) -> Environment {
        let tier = Tier::of_name(name, production);
        Environment {
            id,
            name: name.trim().to_owned(),
            position: tier.default_position(),
            tier,
            required_approvals: 1,
            start_timeout_seconds: None,
            updated_by: None,
            updated_at: now,
        }
    }

    /// Deployments here must state their risk.
    pub fn requires_risk(&self) -> bool {
        self.tier.requires_risk()
    }

    /// The environment with the configuration's settings applied, recorded as changed by
    /// its actor. Settings the configuration leaves out stay as they are; setting the
    /// tier does not move the position.
    pub fn configure(&self, config: &EnvironmentConfig, now: Timestamp) -> Environment {
        let mut next = self.clone();
        if let Some(position) = config.position {
            next.position = position;
        }
        if let Some(tier) = config.tier {
            next.tier = tier;
        }
        if let Some(required) = config.required_approvals {
            next.required_approvals = required;
        }
        if let Some(timeout) = config.start_timeout_seconds {
            next.start_timeout_seconds = timeout;
        }
        next.updated_by = Some(config.actor.clone());
        next.updated_at = now.max(self.updated_at);
        next
    }
}

/// One optional input field as a client sent it: left out, an explicit null, or a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Setting<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

/// A `configureEnvironment` input as a client sent it, nothing checked yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentRequest {
    pub name: String,
    pub actor: String,
    pub position: Setting<i32>,
    pub tier: Setting<Tier>,
    pub required_approvals: Setting<i32>,
    pub start_timeout_seconds: Setting<i32>,
}

/// A configuration that passed every rule: `None` leaves a setting as it is;
/// `start_timeout_seconds: Some(None)` removes the timeout. Built by
/// [`EnvironmentConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentConfig {
    name: String,
    actor: String,
    position: Option<i32>,
    tier: Option<Tier>,
    required_approvals: Option<u8>,
    start_timeout_seconds: Option<Option<u32>>,
}

impl EnvironmentConfig {
    /// Checks every field, reporting every problem at once. An explicit null is
    /// refused for position, tier and requiredApprovals; for startTimeoutSeconds it
    /// means no timeout.
    pub fn validate(request: &EnvironmentRequest) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let name = p.line("name", &request.name, MAX_NAME_CHARS);
        let actor = p.line("actor", &request.actor, MAX_NAME_CHARS);

        let position = match request.position {
            Setting::Absent => None,
            Setting::Null => {
                p.add("position", "must not be null");
                None
            }
            Setting::Value(position) => Some(position),
        };
        let tier = match request.tier {
            Setting::Absent => None,
            Setting::Null => {
                p.add("tier", "must not be null");
                None
            }
            Setting::Value(tier) => Some(tier),
        };
        let required_approvals = match request.required_approvals {
            Setting::Absent => None,
            Setting::Null => {
                p.add("requiredApprovals", "must not be null");
                None
            }
            Setting::Value(n @ MIN_REQUIRED_APPROVALS..=MAX_REQUIRED_APPROVALS) => {
                u8::try_from(n).ok()
            }
            Setting::Value(_) => {
                p.add(
                    "requiredApprovals",
                    format!(
                        "must be between {MIN_REQUIRED_APPROVALS} and {MAX_REQUIRED_APPROVALS}"
                    ),
                );
                None
            }
        };
        let start_timeout_seconds = match request.start_timeout_seconds {
            Setting::Absent => None,
            Setting::Null => Some(None),
            Setting::Value(n @ MIN_START_TIMEOUT_SECONDS..=MAX_START_TIMEOUT_SECONDS) => {
                Some(u32::try_from(n).ok())
            }
            Setting::Value(_) => {
                p.add(
                    "startTimeoutSeconds",
                    format!(
                        "must be between {MIN_START_TIMEOUT_SECONDS} and \
                         {MAX_START_TIMEOUT_SECONDS}, or null for none"
                    ),
                );
                None
            }
        };
        p.finish(EnvironmentConfig {
            name,
            actor,
            position,
            tier,
            required_approvals,
            start_timeout_seconds,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn actor(&self) -> &str {
        &self.actor
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{Deployment, DeploymentRequest, NewDeployment};

    fn at(seconds: i64) -> Timestamp {
        chrono::Utc
            .timestamp_opt(1_780_000_000 + seconds, 0)
            .unwrap()
    }

    #[test]
    fn the_naming_rule_gives_each_name_its_tier() {
        let default = ProductionEnvironments::default();
        let eu = ProductionEnvironments::new(["prod-eu", " PROD-US "]);
        let cases: &[(&str, &ProductionEnvironments, Tier)] = &[
            ("dev", &default, Tier::Development),
            ("development", &default, Tier::Development),
            ("review-app", &default, Tier::Development),
            ("review/feature-42", &default, Tier::Development),
            ("trunk", &default, Tier::Development),
            ("testing", &default, Tier::Testing),
            ("test", &default, Tier::Testing),
            ("qc", &default, Tier::Testing),
            ("staging", &default, Tier::Staging),
            ("stage", &default, Tier::Staging),
            ("model", &default, Tier::Staging),
            ("demo", &default, Tier::Staging),
            ("production", &default, Tier::Production),
            (" Production ", &default, Tier::Production),
            ("prod-eu", &default, Tier::Other),
            ("prod-eu", &eu, Tier::Production),
            ("PROD-EU", &eu, Tier::Production),
            ("prod-us", &eu, Tier::Production),
            ("production", &eu, Tier::Other),
            ("DEV", &default, Tier::Development),
            ("Staging-EU", &default, Tier::Staging),
            ("QC-2", &default, Tier::Testing),
            // The first tier that matches wins: STAGING, then TESTING, then DEVELOPMENT.
            ("dev-staging", &default, Tier::Staging),
            ("test-dev", &default, Tier::Testing),
            ("demo-test", &default, Tier::Staging),
            ("sandbox", &default, Tier::Other),
            ("canary", &default, Tier::Other),
            ("live", &default, Tier::Other),
        ];
        for (name, production, expected) in cases {
            assert_eq!(
                Tier::of_name(name, production),
                *expected,
                "{name:?} with {:?}",
                production.names().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn a_tier_places_a_new_environment_at_ten_times_its_rank() {
        let cases = [
            (Tier::Development, 10),
            (Tier::Testing, 20),
            (Tier::Staging, 30),
            (Tier::Production, 40),
            (Tier::Other, 50),
        ];
        for (tier, position) in cases {
            assert_eq!(tier.default_position(), position, "{tier}");
        }
    }

    #[test]
    fn dev_testing_staging_and_production_form_a_train_with_no_configuration() {
        let production = ProductionEnvironments::default();
        let mut train: Vec<Environment> = ["production", "staging", "dev", "testing"]
            .into_iter()
            .map(|name| Environment::register(name, &production, Uuid::nil(), at(0)))
            .collect();
        train.sort_by(|a, b| (a.position, &a.name).cmp(&(b.position, &b.name)));
        let names: Vec<&str> = train.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "testing", "staging", "production"]);
    }

    #[test]
    fn only_the_production_tier_requires_a_risk() {
        for tier in Tier::ALL {
            assert_eq!(tier.requires_risk(), tier == Tier::Production, "{tier}");
        }
    }

    #[test]
    fn every_tier_reads_back_from_its_name_and_nothing_else_does() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        }
        for bad in ["", "production", "PROD", " STAGING"] {
            assert!(bad.parse::<Tier>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_environment_registered_by_use_is_trimmed_with_defaults_and_configured_by_nobody() {
        let e = Environment::register(
            "  staging ",
            &ProductionEnvironments::default(),
            Uuid::nil(),
            at(5),
        );
        assert_eq!(e.name, "staging");
        assert_eq!((e.tier, e.position), (Tier::Staging, 30));
        assert_eq!(e.required_approvals, 1);
        assert_eq!(e.start_timeout_seconds, None);
        assert_eq!(e.updated_by, None);
        assert_eq!(e.updated_at, at(5));
    }

    fn request() -> EnvironmentRequest {
        EnvironmentRequest {
            name: "staging".into(),
            actor: "carol".into(),
            ..Default::default()
        }
    }

    fn fields(result: Result<EnvironmentConfig, ValidationErrors>) -> Vec<String> {
        match result {
            Ok(_) => vec![],
            Err(ValidationErrors(errors)) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn configuration_accepts_exactly_the_documented_values_and_reports_every_problem() {
        type Tweak = fn(&mut EnvironmentRequest);
        let cases: &[(&str, Tweak, &[&str])] = &[
            ("nothing but name and actor", |_| {}, &[]),
            (
                "any position",
                |r| r.position = Setting::Value(i32::MIN),
                &[],
            ),
            (
                "a negative position",
                |r| r.position = Setting::Value(-5),
                &[],
            ),
            ("a tier", |r| r.tier = Setting::Value(Tier::Production), &[]),
            (
                "one approval",
                |r| r.required_approvals = Setting::Value(1),
                &[],
            ),
            (
                "ten approvals",
                |r| r.required_approvals = Setting::Value(10),
                &[],
            ),
            (
                "no approval",
                |r| r.required_approvals = Setting::Value(0),
                &["requiredApprovals"],
            ),
            (
                "eleven approvals",
                |r| r.required_approvals = Setting::Value(11),
                &["requiredApprovals"],
            ),
            (
                "a one-second timeout",
                |r| r.start_timeout_seconds = Setting::Value(1),
                &[],
            ),
            (
                "a thirty-day timeout",
                |r| r.start_timeout_seconds = Setting::Value(2_592_000),
                &[],
            ),
            (
                "a null timeout",
                |r| r.start_timeout_seconds = Setting::Null,
                &[],
            ),
            (
                "a zero timeout",
                |r| r.start_timeout_seconds = Setting::Value(0),
                &["startTimeoutSeconds"],
            ),
            (
                "a negative timeout",
                |r| r.start_timeout_seconds = Setting::Value(-1),
                &["startTimeoutSeconds"],
            ),
            (
                "a timeout over thirty days",
                |r| r.start_timeout_seconds = Setting::Value(2_592_001),
                &["startTimeoutSeconds"],
            ),
            (
                "a null position",
                |r| r.position = Setting::Null,
                &["position"],
            ),
            ("a null tier", |r| r.tier = Setting::Null, &["tier"]),
            (
                "null approvals",
                |r| r.required_approvals = Setting::Null,
                &["requiredApprovals"],
            ),
            ("a blank name", |r| r.name = "  ".into(), &["name"]),
            ("a name too long", |r| r.name = "x".repeat(101), &["name"]),
            ("a blank actor", |r| r.actor = "".into(), &["actor"]),
            (
                "a control character in the actor",
                |r| r.actor = "car\u{7}ol".into(),
                &["actor"],
            ),
            (
                "everything wrong at once",
                |r| {
                    r.name = " ".into();
                    r.actor = " ".into();
                    r.position = Setting::Null;
                    r.tier = Setting::Null;
                    r.required_approvals = Setting::Value(0);
                    r.start_timeout_seconds = Setting::Value(0);
                },
                &[
                    "name",
                    "actor",
                    "position",
                    "tier",
                    "requiredApprovals",
                    "startTimeoutSeconds",
                ],
            ),
        ];
        for (what, tweak, expected) in cases {
            let mut r = request();
            tweak(&mut r);
            assert_eq!(fields(EnvironmentConfig::validate(&r)), *expected, "{what}");
        }
    }

    #[test]
    fn configuring_changes_only_what_is_given_and_records_who_and_when() {
        let production = ProductionEnvironments::default();
        let mut registered = Environment::register("staging", &production, Uuid::nil(), at(0));
        registered.start_timeout_seconds = Some(600);
        type Check = fn(&Environment);
        let cases: &[(&str, EnvironmentRequest, Check)] = &[
            ("nothing given", request(), |e| {
                assert_eq!(
                    (e.position, e.tier, e.required_approvals),
                    (30, Tier::Staging, 1)
                );
                assert_eq!(e.start_timeout_seconds, Some(600));
            }),
            (
                "the tier, which does not move the position",
                EnvironmentRequest {
                    tier: Setting::Value(Tier::Production),
                    ..request()
                },
                |e| assert_eq!((e.tier, e.position), (Tier::Production, 30)),
            ),
            (
                "the position, which does not change the tier",
                EnvironmentRequest {
                    position: Setting::Value(5),
                    ..request()
                },
                |e| assert_eq!((e.tier, e.position), (Tier::Staging, 5)),
            ),
            (
                "the approvals",
                EnvironmentRequest {
                    required_approvals: Setting::Value(3),
                    ..request()
                },
                |e| assert_eq!(e.required_approvals, 3),
            ),
            (
                "a new timeout",
                EnvironmentRequest {
                    start_timeout_seconds: Setting::Value(60),
                    ..request()
                },
                |e| assert_eq!(e.start_timeout_seconds, Some(60)),
            ),
            (
                "a null timeout, which removes it",
                EnvironmentRequest {
                    start_timeout_seconds: Setting::Null,
                    ..request()
                },
                |e| assert_eq!(e.start_timeout_seconds, None),
            ),
        ];
        for (what, r, check) in cases {
            let config = EnvironmentConfig::validate(r).expect(what);
            let configured = registered.configure(&config, at(9));
            check(&configured);
            assert_eq!(configured.updated_by.as_deref(), Some("carol"), "{what}");
            assert_eq!(configured.updated_at, at(9), "{what}");
            assert_eq!(
                (configured.id, &configured.name),
                (registered.id, &registered.name)
            );
        }
    }

    fn deployment_request(environment: &str, risk: Option<&str>) -> DeploymentRequest {
        DeploymentRequest {
            service: "billing".into(),
            environment: environment.into(),
            version: "v1".into(),
            requester: "alice".into(),
            work_refs: vec!["JIRA-1".into()],
            risk: risk.map(str::to_owned),
            rollback_plan: "redeploy v0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_tier_decides_whether_a_deployment_must_state_its_risk() {
        for tier in Tier::ALL {
            for (risk, ok) in [(Some("canary first"), true), (None, !tier.requires_risk())] {
                let result =
                    NewDeployment::validate_in(&deployment_request("anywhere", risk), tier);
                assert_eq!(result.is_ok(), ok, "{tier} with risk {risk:?}");
            }
        }
    }

    #[test]
    fn creation_in_an_environment_follows_its_tier_and_keeps_its_required_approvals() {
        let production = ProductionEnvironments::default();
        let configured = |tier: Tier, approvals: u8| Environment {
            tier,
            required_approvals: approvals,
            ..Environment::register("production", &production, Uuid::nil(), at(0))
        };
        let cases = [
            (Tier::Production, 1, Some("canary"), Ok(1)),
            (Tier::Production, 3, Some("canary"), Ok(3)),
            (Tier::Production, 2, None, Err(vec!["risk"])),
            (Tier::Staging, 2, None, Ok(2)),
            (Tier::Other, 10, None, Ok(10)),
        ];
        for (tier, approvals, risk, expected) in cases {
            // Validated against the naming rule's tier; the environment decides again.
            let new =
                NewDeployment::validate_in(&deployment_request("production", risk), Tier::Other)
                    .expect("valid request");
            let result = Deployment::create_in(
                new,
                &configured(tier, approvals),
                Uuid::nil(),
                Uuid::nil(),
                at(1),
            )
            .map(|(d, _)| d.required_approvals)
            .map_err(|ValidationErrors(errors)| {
                errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
            });
            let expected = expected
                .map_err(|fields| fields.into_iter().map(str::to_owned).collect::<Vec<_>>());
            assert_eq!(
                result, expected,
                "{tier}, {approvals} approvals, risk {risk:?}"
            );
        }
    }
}
