//! Webhooks and deploy targets: what they are, which events and actions they are sent,
//! and the retry schedule of a delivery or trigger. Pure; the store persists them and
//! `crate::outbox` carries them out.

use uuid::Uuid;

use super::validation::{Problems, ValidationErrors, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use super::{EventKind, Setting, Timestamp};

/// The executor that carries out deployments of one (service, environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutorKind {
    /// `workflow_dispatch` of a GitHub Actions workflow.
    GitHubActions,
    /// A signed POST (Standard Webhooks) to a URL.
    Http,
}

impl ExecutorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::GitHubActions => "GITHUB_ACTIONS",
            ExecutorKind::Http => "HTTP",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "GITHUB_ACTIONS" => Some(ExecutorKind::GitHubActions),
            "HTTP" => Some(ExecutorKind::Http),
            _ => None,
        }
    }
}

/// How a target's executor is reached: the settings of one executor kind.
#[derive(Clone, PartialEq, Eq)]
pub enum ExecutorSettings {
    GitHubActions(GitHubActionsSettings),
    Http(HttpSettings),
}

impl ExecutorSettings {
    pub fn kind(&self) -> ExecutorKind {
        match self {
            ExecutorSettings::GitHubActions(_) => ExecutorKind::GitHubActions,
            ExecutorSettings::Http(_) => ExecutorKind::Http,
        }
    }
}

impl std::fmt::Debug for ExecutorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutorSettings::GitHubActions(s) => s.fmt(f),
            ExecutorSettings::Http(s) => s.fmt(f),
        }
    }
}

/// `POST {api}/repos/{repository}/actions/workflows/{workflow}/dispatches`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubActionsSettings {
    /// `owner/name`.
    pub repository: String,
    /// The workflow's file name (e.g. `deploy.yml`) or numeric id.
    pub workflow: String,
    /// The git ref the workflow runs on. Default `main`.
    pub workflow_ref: String,
    /// The name of the workflow input that gets the environment. Default `environment`.
    pub environment_input: String,
    /// The name of the workflow input that gets the version to deploy. Default `ref`.
    pub ref_input: String,
    /// The name of the server's environment variable that holds the token.
    pub token_env: String,
}

/// A Standard Webhooks POST to `url`, signed with `secret`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub url: String,
    /// `whsec_` + base64, as the client gave it. Never shown.
    pub secret: String,
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What an execution asks the executor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionAction {
    /// After a start: deploy the deployment's version.
    Deploy,
    /// After a rollback: deploy the version live after it.
    Rollback,
}

impl ExecutionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionAction::Deploy => "DEPLOY",
            ExecutionAction::Rollback => "ROLLBACK",
        }
    }

    /// As sent to executors: `deploy` or `rollback`.
    pub fn lower(self) -> &'static str {
        match self {
            ExecutionAction::Deploy => "deploy",
            ExecutionAction::Rollback => "rollback",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "DEPLOY" => Some(ExecutionAction::Deploy),
            "ROLLBACK" => Some(ExecutionAction::Rollback),
            _ => None,
        }
    }
}

/// One trigger of an executor, as an executor implementation needs it.
#[derive(Debug, Clone)]
pub struct TriggerRequest {
    /// The execution's id; sent as `webhook-id` by the HTTP executor.
    pub execution_id: Uuid,
    pub action: ExecutionAction,
    pub deployment_id: Uuid,
    pub service: String,
    pub environment: String,
    /// The version to deploy: the deployment's (DEPLOY) or the one live after the
    /// rollback (ROLLBACK).
    pub git_ref: String,
    /// Who started or rolled back.
    pub actor: String,
    /// The deployment's fields as the webhook payloads carry them (GraphQL names,
    /// scalars only), for executors that send it.
    pub deployment: serde_json::Value,
    /// When this attempt is made.
    pub now: Timestamp,
}

/// What one attempt to deliver or trigger came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    pub at: Timestamp,
    /// The HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// Why it failed, for people; None on success. Never contains a secret or token.
    pub error: Option<String>,
    pub duration_ms: u32,
    /// Whether the attempt succeeded (a 2xx, or 204 from GitHub).
    pub succeeded: bool,
    /// A failure that retrying cannot mend (executors: 400, 401, 403, 404, 422; a
    /// missing token).
    pub is_final: bool,
}

/// Kinds an event filter names; `None` matches every kind.
pub type KindFilter = Option<Vec<EventKind>>;

/// Webhooks that may exist at once.
pub const MAX_WEBHOOKS: u64 = 100;
/// Longest URL accepted.
pub const MAX_URL_CHARS: usize = 2_000;
/// The longest wait between two attempts.
pub const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(3_600);
/// Jitter: each wait is the nominal one +/- this share of it.
pub const JITTER: f64 = 0.2;

/// A webhook as stored. The secret is only ever used to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub kinds: KindFilter,
    pub active: bool,
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_by: String,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("service", &self.service)
            .field("environment", &self.environment)
            .field("kinds", &self.kinds)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Whether this committed event gets a delivery: the webhook is active and every
    /// filter it sets holds (null filters match everything).
    pub fn wants(&self, event: &super::DeploymentEvent) -> bool {
        self.active
            && self.service.as_deref().is_none_or(|s| s == event.service)
            && self
                .environment
                .as_deref()
                .is_none_or(|e| e == event.environment)
            && self
                .kinds
                .as_deref()
                .is_none_or(|k| k.contains(&event.kind))
    }

    /// A new webhook from a checked request.
    pub fn create(new: NewWebhook, id: Uuid, now: Timestamp) -> Self {
        Self {
            id,
            url: new.url,
            secret: new.secret,
            service: new.service,
            environment: new.environment,
            kinds: new.kinds,
            active: true,
            created_by: new.actor.clone(),
            created_at: now,
            updated_by: new.actor,
            updated_at: now,
        }
    }

    /// This webhook with a checked update applied.
    pub fn updated(mut self, update: &WebhookUpdate, now: Timestamp) -> Self {
        if let Some(url) = &update.url {
            self.url.clone_from(url);
        }
        if let Some(secret) = &update.secret {
            self.secret.clone_from(secret);
        }
        if let Some(active) = update.active {
            self.active = active;
        }
        if let Some(service) = &update.service {
            self.service.clone_from(service);
        }
        if let Some(environment) = &update.environment {
            self.environment.clone_from(environment);
        }
        if let Some(kinds) = &update.kinds {
            self.kinds.clone_from(kinds);
        }
        self.updated_by.clone_from(&update.actor);
        self.updated_at = now;
        self
    }
}

/// `createWebhook`'s input as a client sent it.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub url: String,
    pub secret: String,
    pub service: Option<String>,
    pub environment: Option<String>,
    pub kinds: Option<Vec<EventKind>>,
    pub actor: String,
}

/// A webhook request that passed every rule.
#[derive(Clone)]
pub struct NewWebhook {
    url: String,
    secret: String,
    service: Option<String>,
    environment: Option<String>,
    kinds: KindFilter,
    actor: String,
}

impl NewWebhook {
    /// Checks every field, reporting every problem at once. Whether the URL's host
    /// resolves to an allowed address is checked apart (it needs DNS).
    pub fn validate(request: &WebhookRequest) -> Result<Self, ValidationErrors> {
        let mut problems = Problems::default();
        let url = url_field(&mut problems, "url", &request.url);
        let secret = secret_field(&mut problems, "secret", &request.secret);
        let service = filter_line(&mut problems, "service", request.service.as_deref());
        let environment = filter_line(&mut problems, "environment", request.environment.as_deref());
        let kinds = kinds_field(&mut problems, request.kinds.as_deref());
        let actor = problems.line("actor", &request.actor, MAX_NAME_CHARS);
        problems.finish(Self {
            url,
            secret,
            service,
            environment,
            kinds,
            actor,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// `updateWebhook`'s input as a client sent it: absent fields stay as they are, an
/// explicit null clears a filter field.
#[derive(Debug, Clone, Default)]
pub struct WebhookUpdateRequest {
    pub actor: String,
    pub url: Setting<String>,
    pub secret: Setting<String>,
    pub active: Setting<bool>,
    pub service: Setting<String>,
    pub environment: Setting<String>,
    pub kinds: Setting<Vec<EventKind>>,
}

/// A checked update: `None` leaves a field as it is; `Some(None)` clears a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUpdate {
    actor: String,
    url: Option<String>,
    secret: Option<String>,
    active: Option<bool>,
    service: Option<Option<String>>,
    environment: Option<Option<String>>,
    kinds: Option<KindFilter>,
}

impl WebhookUpdate {
    pub fn validate(request: &WebhookUpdateRequest) -> Result<Self, ValidationErrors> {
        let mut problems = Problems::default();
        let actor = problems.line("actor", &request.actor, MAX_NAME_CHARS);
        let url = match &request.url {
            Setting::Absent => None,
            Setting::Null => {
                problems.add("url", "cannot be null");
                None
            }
            Setting::Value(url) => Some(url_field(&mut problems, "url", url)),
        };
        let secret = match &request.secret {
            Setting::Absent => None,
            Setting::Null => {
                problems.add("secret", "cannot be null");
                None
            }
            Setting::Value(secret) => Some(secret_field(&mut problems, "secret", secret)),
        };
        let active = match request.active {
            Setting::Absent => None,
            Setting::Null => {
                problems.add("active", "cannot be null");
                None
            }
            Setting::Value(active) => Some(active),
        };
        let service = match &request.service {
            Setting::Absent => None,
            Setting::Null => Some(None),
            Setting::Value(s) => Some(filter_line(&mut problems, "service", Some(s))),
        };
        let environment = match &request.environment {
            Setting::Absent => None,
            Setting::Null => Some(None),
            Setting::Value(e) => Some(filter_line(&mut problems, "environment", Some(e))),
        };
        let kinds = match &request.kinds {
            Setting::Absent => None,
            Setting::Null => Some(None),
            Setting::Value(k) => Some(kinds_field(&mut problems, Some(k))),
        };
        problems.finish(Self {
            actor,
            url,
            secret,
            active,
            service,
            environment,
            kinds,
        })
    }

    /// The new URL, when the update changes it (its address needs checking).
    pub fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }
}

fn url_field(problems: &mut Problems, field: &str, raw: &str) -> String {
    match super::destination::check_url(raw) {
        Ok(url) => url,
        Err(message) => {
            problems.add(field, message);
            String::new()
        }
    }
}

fn secret_field(problems: &mut Problems, field: &str, raw: &str) -> String {
    match super::destination::check_secret(raw) {
        Ok(_) => raw.trim().to_owned(),
        Err(message) => {
            problems.add(field, message);
            String::new()
        }
    }
}

/// An optional filter line: null or blank matches everything.
fn filter_line(problems: &mut Problems, field: &str, raw: Option<&str>) -> Option<String> {
    let raw = raw?;
    if raw.trim().is_empty() {
        problems.add(
            field,
            "must not be blank (leave it out or null to match every value)",
        );
        return None;
    }
    Some(problems.line(field, raw, MAX_NAME_CHARS))
}

fn kinds_field(problems: &mut Problems, raw: Option<&[EventKind]>) -> KindFilter {
    let raw = raw?;
    if raw.is_empty() {
        problems.add(
            "kind",
            "must name at least one kind (leave it out or null for every kind)",
        );
        return None;
    }
    let mut kinds: Vec<EventKind> = Vec::with_capacity(raw.len());
    for kind in raw {
        if !kinds.contains(kind) {
            kinds.push(*kind);
        }
    }
    Some(kinds)
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Delivered => "DELIVERED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PENDING" => Some(DeliveryStatus::Pending),
            "DELIVERED" => Some(DeliveryStatus::Delivered),
            "FAILED" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// How deliveries and triggers are retried: `backoff` x 2^(attempt-1), +/- 20% jitter,
/// capped at an hour, up to `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: std::time::Duration,
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: std::time::Duration::from_millis(30_000),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1 for the first), with `jitter`
    /// in [-1, 1] choosing where in the +/- 20% band it falls.
    pub fn delay(&self, attempt: u32, jitter: f64) -> std::time::Duration {
        let doublings = attempt.saturating_sub(1).min(40);
        let nominal = self.backoff.as_secs_f64() * 2f64.powi(doublings as i32);
        let jittered = nominal * (1.0 + JITTER * jitter.clamp(-1.0, 1.0));
        std::time::Duration::from_secs_f64(jittered.clamp(0.0, MAX_BACKOFF.as_secs_f64()))
    }
}

/// The schedule of one delivery or trigger: its status, the attempts of its series,
/// when the next one is due, and whether one extra attempt was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub status: DeliveryStatus,
    /// Attempts of the retry series made so far (a redelivery is not one of them).
    pub attempts: u32,
    /// When the series' next attempt is due; None unless PENDING.
    pub next_attempt_at: Option<Timestamp>,
    /// One more attempt now was asked for (`redeliverWebhookDelivery`).
    pub redeliver: bool,
}

impl Schedule {
    /// A new delivery or trigger: its first attempt is due at once.
    pub fn first(now: Timestamp) -> Self {
        Self {
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: Some(now),
            redeliver: false,
        }
    }

    /// When the next attempt is due, if any is: now for a redelivery, else the series'.
    pub fn due_at(&self, now: Timestamp) -> Option<Timestamp> {
        if self.redeliver {
            Some(now)
        } else {
            self.next_attempt_at
        }
    }

    /// Asks for exactly one more attempt now, whatever the status.
    pub fn redelivered(self) -> Self {
        Self {
            redeliver: true,
            ..self
        }
    }

    /// The schedule after an attempt made on it. A redelivery's attempt changes only the
    /// status, and only on success; an attempt of the series counts, and after a
    /// failure the next is scheduled (`jitter` in [-1, 1]) or, after the last one or a
    /// final answer, the delivery is FAILED.
    pub fn after(self, report: &AttemptReport, policy: &RetryPolicy, jitter: f64) -> Self {
        if self.redeliver {
            return if report.succeeded {
                Self {
                    status: DeliveryStatus::Delivered,
                    next_attempt_at: None,
                    redeliver: false,
                    ..self
                }
            } else {
                Self {
                    redeliver: false,
                    ..self
                }
            };
        }
        let attempts = self.attempts.saturating_add(1);
        if report.succeeded {
            return Self {
                status: DeliveryStatus::Delivered,
                attempts,
                next_attempt_at: None,
                redeliver: false,
            };
        }
        if report.is_final || attempts >= policy.max_attempts {
            return Self {
                status: DeliveryStatus::Failed,
                attempts,
                next_attempt_at: None,
                redeliver: false,
            };
        }
        let wait = policy.delay(attempts, jitter);
        let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
        Self {
            status: DeliveryStatus::Pending,
            attempts,
            next_attempt_at: Some(report.at + wait),
            redeliver: false,
        }
    }
}

/// What an event asks of the target of its (service, environment), if there is one:
/// after a start, deploy its version; after a rollback, deploy the version live after
/// it (`live_after`; nothing live: nothing to trigger).
pub fn trigger_for(
    event: &super::DeploymentEvent,
    deployment: &super::Deployment,
    live_after: Option<&str>,
) -> Option<(ExecutionAction, String)> {
    match event.kind {
        EventKind::Started => Some((ExecutionAction::Deploy, deployment.version.clone())),
        EventKind::RolledBack => {
            live_after.map(|version| (ExecutionAction::Rollback, version.to_owned()))
        }
        _ => None,
    }
}

/// The note of the FAILED event recorded when a deploy's trigger failed for good.
pub fn executor_failure_note(kind: ExecutorKind, error: &str) -> String {
    let executor = match kind {
        ExecutorKind::GitHubActions => "GitHub Actions",
        ExecutorKind::Http => "HTTP",
    };
    let note = format!("the {executor} executor could not be triggered: {error}");
    note.chars().take(MAX_TEXT_CHARS).collect()
}

/// The status of an execution, from its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Pending,
    Triggered,
    Failed,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "PENDING",
            ExecutionStatus::Triggered => "TRIGGERED",
            ExecutionStatus::Failed => "FAILED",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "PENDING" => Some(ExecutionStatus::Pending),
            "TRIGGERED" => Some(ExecutionStatus::Triggered),
            "FAILED" => Some(ExecutionStatus::Failed),
            _ => None,
        }
    }

    pub fn of(status: DeliveryStatus) -> Self {
        match status {
            DeliveryStatus::Pending => ExecutionStatus::Pending,
            DeliveryStatus::Delivered => ExecutionStatus::Triggered,
            DeliveryStatus::Failed => ExecutionStatus::Failed,
        }
    }

    pub fn schedule_status(self) -> DeliveryStatus {
        match self {
            ExecutionStatus::Pending => DeliveryStatus::Pending,
            ExecutionStatus::Triggered => DeliveryStatus::Delivered,
            ExecutionStatus::Failed => DeliveryStatus::Failed,
        }
    }
}

/// One trigger of a target's executor, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub executor: ExecutorKind,
    pub action: ExecutionAction,
    pub status: ExecutionStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub triggered_at: Option<Timestamp>,
}

/// A deploy target as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentTarget {
    pub service: String,
    pub environment: String,
    pub settings: ExecutorSettings,
    pub updated_by: String,
    pub updated_at: Timestamp,
}

/// `configureDeploymentTarget`'s input as a client sent it.
#[derive(Debug, Clone)]
pub struct TargetRequest {
    pub service: String,
    pub environment: String,
    pub executor: ExecutorKind,
    pub actor: String,
    pub repository: Option<String>,
    pub workflow: Option<String>,
    pub workflow_ref: Option<String>,
    pub environment_input: Option<String>,
    pub ref_input: Option<String>,
    pub token_env: Option<String>,
    pub url: Option<String>,
    pub secret: Option<String>,
}

/// A target request that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTarget {
    pub service: String,
    pub environment: String,
    pub settings: ExecutorSettings,
    pub actor: String,
}

impl NewTarget {
    /// Checks every field, reporting every problem at once: GITHUB_ACTIONS needs
    /// repository (`owner/name`), workflow and tokenEnv; HTTP needs url and secret. A
    /// field of the other executor is refused rather than silently dropped.
    pub fn validate(request: &TargetRequest) -> Result<Self, ValidationErrors> {
        let mut problems = Problems::default();
        let service = problems.line("service", &request.service, MAX_NAME_CHARS);
        let environment = problems.line("environment", &request.environment, MAX_NAME_CHARS);
        let actor = problems.line("actor", &request.actor, MAX_NAME_CHARS);
        let not_for = |problems: &mut Problems, field: &str, value: &Option<String>, kind: &str| {
            if value.is_some() {
                problems.add(field, format!("does not apply to the {kind} executor"));
            }
        };
        let settings = match request.executor {
            ExecutorKind::GitHubActions => {
                for (field, value) in [("url", &request.url), ("secret", &request.secret)] {
                    not_for(&mut problems, field, value, "GITHUB_ACTIONS");
                }
                let repository = required(&mut problems, "repository", &request.repository);
                if repository
                    .as_deref()
                    .is_some_and(|r| !r.is_empty() && !is_repository(r))
                {
                    problems.add("repository", "must be owner/name");
                }
                let workflow = required(&mut problems, "workflow", &request.workflow);
                if workflow.as_deref().is_some_and(|w| w.contains('/')) {
                    problems.add("workflow", "must be a workflow file name or id, without /");
                }
                let token_env = required(&mut problems, "tokenEnv", &request.token_env);
                if token_env.as_deref().is_some_and(|t| !is_env_name(t)) {
                    problems.add(
                        "tokenEnv",
                        "must be an environment variable name (letters, digits, _)",
                    );
                }
                let workflow_ref =
                    defaulted(&mut problems, "workflowRef", &request.workflow_ref, "main");
                let environment_input = defaulted(
                    &mut problems,
                    "environmentInput",
                    &request.environment_input,
                    "environment",
                );
                let ref_input = defaulted(&mut problems, "refInput", &request.ref_input, "ref");
                ExecutorSettings::GitHubActions(GitHubActionsSettings {
                    repository: repository.unwrap_or_default(),
                    workflow: workflow.unwrap_or_default(),
                    workflow_ref,
                    environment_input,
                    ref_input,
                    token_env: token_env.unwrap_or_default(),
                })
            }
            ExecutorKind::Http => {
                for (field, value) in [
                    ("repository", &request.repository),
                    ("workflow", &request.workflow),
                    ("workflowRef", &request.workflow_ref),
                    ("environmentInput", &request.environment_input),
                    ("refInput", &request.ref_input),
                    ("tokenEnv", &request.token_env),
                ] {
                    not_for(&mut problems, field, value, "HTTP");
                }
                let url = match &request.url {
                    Some(url) => url_field(&mut problems, "url", url),
                    None => {
                        problems.add("url", "is required for the HTTP executor");
                        String::new()
                    }
                };
                let secret = match &request.secret {
                    Some(secret) => secret_field(&mut problems, "secret", secret),
                    None => {
                        problems.add("secret", "is required for the HTTP executor");
                        String::new()
                    }
                };
                ExecutorSettings::Http(HttpSettings { url, secret })
            }
        };
        problems.finish(Self {
            service,
            environment,
            settings,
            actor,
        })
    }
}

fn required(problems: &mut Problems, field: &str, value: &Option<String>) -> Option<String> {
    match value {
        Some(value) => Some(problems.line(field, value, MAX_NAME_CHARS)),
        None => {
            problems.add(field, "is required for the GITHUB_ACTIONS executor");
            None
        }
    }
}

fn defaulted(
    problems: &mut Problems,
    field: &str,
    value: &Option<String>,
    default: &str,
) -> String {
    match value {
        Some(value) => problems.line(field, value, MAX_NAME_CHARS),
        None => default.to_owned(),
    }
}

fn is_repository(name: &str) -> bool {
    let mut parts = name.split('/');
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(owner), Some(repo), None) if valid(owner) && valid(repo))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::domain::{DeploymentEvent, Status};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn at(ms: i64) -> Timestamp {
        chrono::Utc
            .timestamp_millis_opt(1_780_000_000_000 + ms)
            .unwrap()
    }

    fn report(ms: i64, succeeded: bool, is_final: bool) -> AttemptReport {
        AttemptReport {
            at: at(ms),
            status_code: Some(if succeeded { 200 } else { 500 }),
            error: (!succeeded).then(|| "HTTP 500".to_owned()),
            duration_ms: 5,
            succeeded,
            is_final,
        }
    }

    #[test]
    fn delays_double_within_twenty_percent_and_stop_at_an_hour() {
        let policy = RetryPolicy::default();
        // (attempt, jitter, expected)
        let table = [
            (1, 0.0, Duration::from_secs(30)),
            (2, 0.0, Duration::from_secs(60)),
            (3, 0.0, Duration::from_secs(120)),
            (1, 1.0, Duration::from_secs(36)),
            (1, -1.0, Duration::from_secs(24)),
            (2, 5.0, Duration::from_secs(72)),
            (7, 0.0, Duration::from_secs(1_920)),
            (8, 0.0, MAX_BACKOFF),
            (8, 1.0, MAX_BACKOFF),
            (60, -1.0, MAX_BACKOFF),
        ];
        for (attempt, jitter, expected) in table {
            let got = policy.delay(attempt, jitter);
            let diff = got.abs_diff(expected);
            assert!(
                diff < Duration::from_millis(1),
                "attempt {attempt} jitter {jitter}: {got:?}"
            );
        }
    }

    #[test]
    fn schedules_move_on_after_each_attempt() {
        let policy = RetryPolicy {
            backoff: Duration::from_millis(1_000),
            max_attempts: 3,
        };
        let first = Schedule::first(at(0));
        assert_eq!(first.due_at(at(5)), Some(at(0)));
        // (from, report, expected status, attempts, next attempt)
        let pending = |attempts, next| Schedule {
            status: DeliveryStatus::Pending,
            attempts,
            next_attempt_at: next,
            redeliver: false,
        };
        let table = [
            (
                first,
                report(10, true, false),
                DeliveryStatus::Delivered,
                1,
                None,
            ),
            (
                first,
                report(10, false, false),
                DeliveryStatus::Pending,
                1,
                Some(at(1_010)),
            ),
            (
                pending(1, Some(at(1_010))),
                report(1_020, false, false),
                DeliveryStatus::Pending,
                2,
                Some(at(3_020)),
            ),
            (
                pending(2, Some(at(3_020))),
                report(3_030, false, false),
                DeliveryStatus::Failed,
                3,
                None,
            ),
            (
                first,
                report(10, false, true),
                DeliveryStatus::Failed,
                1,
                None,
            ),
        ];
        for (from, report, status, attempts, next) in table {
            let after = from.after(&report, &policy, 0.0);
            assert_eq!(
                (
                    after.status,
                    after.attempts,
                    after.next_attempt_at,
                    after.redeliver
                ),
                (status, attempts, next, false),
                "{from:?} then {report:?}"
            );
        }
    }

    #[test]
    fn a_redelivery_is_one_attempt_outside_the_series() {
        let policy = RetryPolicy::default();
        let failed = Schedule {
            status: DeliveryStatus::Failed,
            attempts: 8,
            next_attempt_at: None,
            redeliver: false,
        };
        let asked = failed.redelivered();
        assert_eq!(asked.due_at(at(7)), Some(at(7)), "due at once");
        let again = asked.after(&report(10, false, false), &policy, 0.0);
        assert_eq!(
            again, failed,
            "a failed redelivery changes nothing but the flag"
        );
        let done = asked.after(&report(10, true, false), &policy, 0.0);
        assert_eq!(done.status, DeliveryStatus::Delivered);
        assert_eq!(done.attempts, 8);

        // A pending delivery keeps its schedule when the extra attempt fails.
        let pending = Schedule {
            status: DeliveryStatus::Pending,
            attempts: 2,
            next_attempt_at: Some(at(90_000)),
            redeliver: false,
        };
        let after = pending
            .redelivered()
            .after(&report(10, false, false), &policy, 0.0);
        assert_eq!(after, pending);
        assert_eq!(after.due_at(at(20)), Some(at(90_000)));
    }

    fn event(kind: EventKind, service: &str, environment: &str) -> DeploymentEvent {
        DeploymentEvent {
            id: Uuid::nil(),
            deployment_id: Uuid::nil(),
            service: service.into(),
            environment: environment.into(),
            kind,
            actor: "a".into(),
            note: None,
            from_status: None,
            to_status: Status::PendingApproval,
            occurred_at: at(0),
            overrides: Vec::new(),
        }
    }

    fn webhook(service: Option<&str>, environment: Option<&str>, kinds: KindFilter) -> Webhook {
        Webhook {
            id: Uuid::nil(),
            url: "https://example.com".into(),
            secret: SECRET.into(),
            service: service.map(Into::into),
            environment: environment.map(Into::into),
            kinds,
            active: true,
            created_by: "ops".into(),
            created_at: at(0),
            updated_by: "ops".into(),
            updated_at: at(0),
        }
    }

    #[test]
    fn filters_match_like_the_event_feed() {
        let e = event(EventKind::Started, "payments", "staging");
        let table = [
            (webhook(None, None, None), true),
            (webhook(Some("payments"), None, None), true),
            (webhook(Some("search"), None, None), false),
            (webhook(None, Some("staging"), None), true),
            (webhook(None, Some("production"), None), false),
            (webhook(None, None, Some(vec![EventKind::Started])), true),
            (
                webhook(
                    None,
                    None,
                    Some(vec![EventKind::Created, EventKind::Failed]),
                ),
                false,
            ),
            (
                webhook(
                    Some("payments"),
                    Some("staging"),
                    Some(vec![EventKind::Started]),
                ),
                true,
            ),
            (
                Webhook {
                    active: false,
                    ..webhook(None, None, None)
                },
                false,
            ),
        ];
        for (w, wanted) in table {
            assert_eq!(w.wants(&e), wanted, "{w:?}");
        }
    }

    fn fields(errors: ValidationErrors) -> Vec<String> {
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn webhook_requests_report_every_problem() {
        let ok = WebhookRequest {
            url: " https://hooks.example.com/shiplog ".into(),
            secret: SECRET.into(),
            actor: "ops".into(),
            kinds: Some(vec![EventKind::Started, EventKind::Started]),
            ..Default::default()
        };
        let new = NewWebhook::validate(&ok).unwrap();
        assert_eq!(new.url(), "https://hooks.example.com/shiplog");
        let hook = Webhook::create(new, Uuid::nil(), at(0));
        assert_eq!(hook.kinds, Some(vec![EventKind::Started]), "deduplicated");

        let table: [(WebhookRequest, &[&str]); 4] = [
            (
                WebhookRequest {
                    url: "ftp://x".into(),
                    ..ok.clone()
                },
                &["url"],
            ),
            (
                WebhookRequest {
                    secret: "whsec_c2hvcnQ=".into(),
                    ..ok.clone()
                },
                &["secret"],
            ),
            (
                WebhookRequest {
                    service: Some("  ".into()),
                    kinds: Some(vec![]),
                    actor: "".into(),
                    ..ok.clone()
                },
                &["service", "kind", "actor"],
            ),
            (
                WebhookRequest {
                    url: "x".repeat(MAX_URL_CHARS + 1),
                    environment: Some("e".repeat(101)),
                    ..ok.clone()
                },
                &["url", "environment"],
            ),
        ];
        for (request, expected) in table {
            let errors = NewWebhook::validate(&request).err().expect("refused");
            assert_eq!(fields(errors.clone()), expected, "{request:?}");
            assert!(!errors.to_string().contains("c2hvcnQ"), "no secret echoed");
        }
    }

    #[test]
    fn updates_tell_absent_from_null() {
        let hook = webhook(
            Some("payments"),
            Some("staging"),
            Some(vec![EventKind::Failed]),
        );
        let update = WebhookUpdate::validate(&WebhookUpdateRequest {
            actor: "bob".into(),
            service: Setting::Null,
            active: Setting::Value(false),
            ..Default::default()
        })
        .unwrap();
        let after = hook.clone().updated(&update, at(9));
        assert_eq!(after.service, None);
        assert_eq!(after.environment, hook.environment, "absent: kept");
        assert_eq!(after.kinds, hook.kinds);
        assert!(!after.active);
        assert_eq!(
            (after.updated_by.as_str(), after.updated_at),
            ("bob", at(9))
        );
        assert_eq!(after.created_at, hook.created_at);

        let errors = WebhookUpdate::validate(&WebhookUpdateRequest {
            actor: "bob".into(),
            url: Setting::Null,
            secret: Setting::Null,
            active: Setting::Null,
            ..Default::default()
        })
        .expect_err("refused");
        assert_eq!(fields(errors), ["url", "secret", "active"]);
    }

    #[test]
    fn targets_need_their_executors_fields_and_only_those() {
        let github = TargetRequest {
            service: "payments".into(),
            environment: "staging".into(),
            executor: ExecutorKind::GitHubActions,
            actor: "ops".into(),
            repository: Some("acme/payments".into()),
            workflow: Some("deploy.yml".into()),
            workflow_ref: None,
            environment_input: None,
            ref_input: Some("version".into()),
            token_env: Some("GH_TOKEN".into()),
            url: None,
            secret: None,
        };
        let target = NewTarget::validate(&github).unwrap();
        assert_eq!(
            target.settings,
            ExecutorSettings::GitHubActions(GitHubActionsSettings {
                repository: "acme/payments".into(),
                workflow: "deploy.yml".into(),
                workflow_ref: "main".into(),
                environment_input: "environment".into(),
                ref_input: "version".into(),
                token_env: "GH_TOKEN".into(),
            })
        );
        let http = TargetRequest {
            executor: ExecutorKind::Http,
            repository: None,
            workflow: None,
            ref_input: None,
            token_env: None,
            url: Some("https://deployer.example.com/run".into()),
            secret: Some(SECRET.into()),
            ..github.clone()
        };
        assert_eq!(
            NewTarget::validate(&http).unwrap().settings.kind(),
            ExecutorKind::Http
        );

        let table: [(TargetRequest, &[&str]); 4] = [
            (
                TargetRequest {
                    repository: Some("acme".into()),
                    token_env: Some("1BAD-NAME".into()),
                    ..github.clone()
                },
                &["repository", "tokenEnv"],
            ),
            (
                TargetRequest {
                    repository: None,
                    workflow: None,
                    token_env: None,
                    url: Some("https://x.example.com".into()),
                    ..github.clone()
                },
                &["url", "repository", "workflow", "tokenEnv"],
            ),
            (
                TargetRequest {
                    url: None,
                    secret: None,
                    workflow: Some("deploy.yml".into()),
                    ..http.clone()
                },
                &["workflow", "url", "secret"],
            ),
            (
                TargetRequest {
                    service: "".into(),
                    secret: Some("whsec_short".into()),
                    ..http.clone()
                },
                &["service", "secret"],
            ),
        ];
        for (request, expected) in table {
            let errors = NewTarget::validate(&request).expect_err("refused");
            assert_eq!(fields(errors), expected, "{request:?}");
        }
    }

    #[test]
    fn starts_deploy_and_rollbacks_deploy_what_is_live_after_them() {
        let deployment = crate::domain::Deployment {
            id: Uuid::nil(),
            service: "payments".into(),
            environment: "staging".into(),
            version: "v2".into(),
            requester: "alice".into(),
            work_refs: vec!["JIRA-1".into()],
            risk: None,
            rollback_plan: "redeploy v1".into(),
            status: Status::Started,
            reviewed_by: None,
            reviewed_at: None,
            created_at: at(0),
            updated_at: at(0),
            required_approvals: 1,
            promoted_from: None,
            release_notes: None,
            started_at: None,
            start_deadline: None,
        };
        let table = [
            (
                EventKind::Started,
                None,
                Some((ExecutionAction::Deploy, "v2")),
            ),
            (
                EventKind::Started,
                Some("v1"),
                Some((ExecutionAction::Deploy, "v2")),
            ),
            (
                EventKind::RolledBack,
                Some("v1"),
                Some((ExecutionAction::Rollback, "v1")),
            ),
            (EventKind::RolledBack, None, None),
            (EventKind::Succeeded, Some("v1"), None),
            (EventKind::Created, None, None),
        ];
        for (kind, live, expected) in table {
            let got = trigger_for(&event(kind, "payments", "staging"), &deployment, live);
            let expected = expected.map(|(a, v)| (a, v.to_owned()));
            assert_eq!(got, expected, "{kind} with {live:?} live");
        }
    }

    #[test]
    fn the_failure_note_names_the_executor_and_stays_within_limits() {
        let note = executor_failure_note(ExecutorKind::GitHubActions, "HTTP 422: bad inputs");
        assert_eq!(
            note,
            "the GitHub Actions executor could not be triggered: HTTP 422: bad inputs"
        );
        let long = executor_failure_note(ExecutorKind::Http, &"x".repeat(20_000));
        assert_eq!(long.chars().count(), MAX_TEXT_CHARS);
    }
}
