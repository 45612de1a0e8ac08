//! Turning what clients send into values the lifecycle accepts, reporting every problem at once.

use std::collections::BTreeSet;
use std::fmt;

use super::environment::Tier;
use super::lifecycle::Action;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_VERSION_CHARS: usize = 200;
pub const MAX_WORK_REFS: usize = 50;
pub const MAX_WORK_REF_CHARS: usize = 500;
pub const MAX_TEXT_CHARS: usize = 10_000;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 200;

/// The problem with `risk` when a production environment's deployment leaves it out.
pub(super) const RISK_REQUIRED: &str = "is required for a production environment";

/// One problem with one input field. `field` is a path relative to the input object,
/// such as `risk` or `workRefs[2]`; the API edge prefixes it with the argument name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every problem found in one input, in field order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid input: ")?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}", e.field, e.message)?;
        }
        Ok(())
    }
}

/// Collects field problems while a whole input is checked.
#[derive(Default)]
pub(super) struct Problems(Vec<FieldError>);

impl Problems {
    pub(super) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub(super) fn finish<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(self.0))
        }
    }

    /// A required one-line value: trimmed, 1..=max characters, no control characters.
    pub(super) fn line(&mut self, field: &str, raw: &str, max: usize) -> String {
        let value = raw.trim();
        if value.is_empty() {
            self.add(field, "must not be blank");
        } else if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else if value.chars().any(char::is_control) {
            self.add(field, "must not contain control characters");
        }
        value.to_owned()
    }

    /// Work references: 1..=MAX_WORK_REFS entries, each a line of at most
    /// MAX_WORK_REF_CHARS.
    pub(super) fn work_refs(&mut self, refs: &[String]) -> Vec<String> {
        if refs.is_empty() {
            self.add("workRefs", "must have at least one entry");
        } else if refs.len() > MAX_WORK_REFS {
            self.add(
                "workRefs",
                format!("must have at most {MAX_WORK_REFS} entries"),
            );
        }
        refs.iter()
            .enumerate()
            .take(MAX_WORK_REFS)
            .map(|(i, r)| self.line(&format!("workRefs[{i}]"), r, MAX_WORK_REF_CHARS))
            .collect()
    }

    /// Free text (newlines allowed): trimmed, at most max characters; blank becomes `None`.
    pub(super) fn text(&mut self, field: &str, raw: Option<&str>, max: usize) -> Option<String> {
        let value = raw.map(str::trim).filter(|v| !v.is_empty())?;
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        }
        Some(value.to_owned())
    }
}

/// The names of the environments whose deployments must state their risk,
/// compared trimmed and case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductionEnvironments(BTreeSet<String>);

impl ProductionEnvironments {
    pub fn new<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            names
                .into_iter()
                .map(|n| normalize_name(n.as_ref()))
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    pub fn contains(&self, environment: &str) -> bool {
        self.0.contains(&normalize_name(environment))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl Default for ProductionEnvironments {
    fn default() -> Self {
        Self::new(["production"])
    }
}

/// Trimmed and lowercased: how actor and environment names are compared.
fn normalize_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// A deployment request as a client sent it, nothing checked yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentRequest {
    pub service: String,
    pub environment: String,
    pub version: String,
    pub requester: String,
    pub work_refs: Vec<String>,
    pub risk: Option<String>,
    pub rollback_plan: String,
    /// Chosen by the client so that a retried request creates nothing new.
    pub idempotency_key: Option<String>,
    pub release_notes: Option<String>,
}

/// A deployment request that passed every creation rule; its strings are trimmed.
/// The only way to build one is [`NewDeployment::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeployment {
    service: String,
    environment: String,
    version: String,
    requester: String,
    work_refs: Vec<String>,
    risk: Option<String>,
    rollback_plan: String,
    idempotency_key: Option<String>,
    release_notes: Option<String>,
}

impl NewDeployment {
    /// Validates a request for an environment not configured yet: its tier is the one
    /// the naming rule gives it.
    pub fn validate(
        request: &DeploymentRequest,
        production: &ProductionEnvironments,
    ) -> Result<Self, ValidationErrors> {
        Self::validate_in(request, Tier::of_name(&request.environment, production))
    }

    /// Validates a request for an environment of tier `tier` (which decides whether the
    /// risk is required).
    pub fn validate_in(request: &DeploymentRequest, tier: Tier) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let service = p.line("service", &request.service, MAX_NAME_CHARS);
        let environment = p.line("environment", &request.environment, MAX_NAME_CHARS);
        let version = p.line("version", &request.version, MAX_VERSION_CHARS);
        let requester = p.line("requester", &request.requester, MAX_NAME_CHARS);

        let work_refs = p.work_refs(&request.work_refs);

        let risk = p.text("risk", request.risk.as_deref(), MAX_TEXT_CHARS);
        if risk.is_none() && tier.requires_risk() {
            p.add("risk", RISK_REQUIRED);
        }
        let rollback_plan = p.text(
            "rollbackPlan",
            Some(request.rollback_plan.as_str()),
            MAX_TEXT_CHARS,
        );
        if rollback_plan.is_none() {
            p.add("rollbackPlan", "must not be blank");
        }

        let idempotency_key = request
            .idempotency_key
            .as_deref()
            .map(|key| p.line("idempotencyKey", key, MAX_IDEMPOTENCY_KEY_CHARS));
        let release_notes = p.text(
            "releaseNotes",
            request.release_notes.as_deref(),
            MAX_TEXT_CHARS,
        );

        p.finish(NewDeployment {
            idempotency_key,
            service,
            environment,
            version,
            requester,
            work_refs,
            risk,
            rollback_plan: rollback_plan.unwrap_or_default(),
            release_notes,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }
    pub fn environment(&self) -> &str {
        &self.environment
    }
    pub fn version(&self) -> &str {
        &self.version
    }
    pub fn requester(&self) -> &str {
        &self.requester
    }
    pub fn work_refs(&self) -> &[String] {
        &self.work_refs
    }
    pub fn risk(&self) -> Option<&str> {
        self.risk.as_deref()
    }
    pub fn rollback_plan(&self) -> &str {
        &self.rollback_plan
    }
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
    pub fn release_notes(&self) -> Option<&str> {
        self.release_notes.as_deref()
    }
}

/// A lifecycle action with a checked actor and note. Built by [`ActionCommand::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCommand {
    action: Action,
    actor: String,
    note: Option<String>,
    /// A start that may go ahead despite a freeze in force (needs a note).
    override_freeze: bool,
}

impl ActionCommand {
    pub fn validate(
        action: Action,
        actor: &str,
        note: Option<&str>,
    ) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let actor = p.line("actor", actor, MAX_NAME_CHARS);
        let note = p.text("note", note, MAX_TEXT_CHARS);
        if note.is_none() && action.requires_note() {
            p.add("note", format!("is required to {action}"));
        }
        p.finish(ActionCommand {
            action,
            actor,
            note,
            override_freeze: false,
        })
    }

    /// A start; `override_freeze: true` needs a non-blank note, frozen or not.
    pub fn validate_start(
        actor: &str,
        note: Option<&str>,
        override_freeze: bool,
    ) -> Result<Self, ValidationErrors> {
        let mut p = Problems::default();
        let actor = p.line("actor", actor, MAX_NAME_CHARS);
        let note = p.text("note", note, MAX_TEXT_CHARS);
        if override_freeze && note.is_none() {
            p.add("note", "is required with overrideFreeze");
        }
        p.finish(ActionCommand {
            action: Action::Start,
            actor,
            note,
            override_freeze,
        })
    }

    pub fn override_freeze(&self) -> bool {
        self.override_freeze
    }

    pub fn action(&self) -> Action {
        self.action
    }
    pub fn actor(&self) -> &str {
        &self.actor
    }
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

/// True when `actor` and `requester` name the same person (trimmed, case-insensitive).
pub fn same_person(actor: &str, requester: &str) -> bool {
    normalize_name(actor) == normalize_name(requester)
}
