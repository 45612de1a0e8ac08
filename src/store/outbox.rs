//! The transactional outbox: webhooks and their deliveries, deploy targets and their
//! executions.
//!
//! A delivery (one per committed event and matching webhook) and an execution (one per
//! start or rollback of a deployment whose place has a target) are written by the
//! writer inside the transaction of the event they carry: the event and its deliveries
//! commit together or not at all, so a crash cannot lose one. `crate::outbox` sends them
//! after commit and records each attempt through the writer again.
//!
//! The domain (`domain::integrations`) decides filters, schedules and triggers; this
//! module only reads and writes rows, with plain SQL.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};
use uuid::Uuid;

use super::statements::{self, Bind, Columns, Run};
use super::{now, Store, StoreError, Written};
use crate::domain::integrations::{
    AttemptReport, DeliveryStatus, DeploymentTarget, Execution, ExecutionAction, ExecutionStatus,
    ExecutorKind, ExecutorSettings, GitHubActionsSettings, HttpSettings, NewTarget, NewWebhook,
    RetryPolicy, Schedule, Webhook, WebhookUpdate, MAX_WEBHOOKS,
};
use crate::domain::{EventKind, Timestamp};

/// Why a webhook or target write is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrationError {
    #[error("no webhook has id {0}")]
    WebhookNotFound(Uuid),
    #[error("no webhook delivery has id {0}")]
    DeliveryNotFound(Uuid),
    #[error("at most {MAX_WEBHOOKS} webhooks may exist; delete one first")]
    TooManyWebhooks,
    #[error(
        "no deployment target is configured for service {service:?} in environment {environment:?}"
    )]
    TargetNotFound {
        service: String,
        environment: String,
    },
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_seq: i64,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: Timestamp,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u32,
}

/// A delivery due now, with what sending it needs.
#[derive(Clone)]
pub struct DeliveryJob {
    pub seq: i64,
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    pub body: String,
}

/// An execution due now, with what triggering it needs. `settings` is None when its
/// target was removed after it was created.
#[derive(Clone)]
pub struct ExecutionJob {
    pub seq: i64,
    pub id: Uuid,
    pub deployment_id: Uuid,
    pub service: String,
    pub environment: String,
    pub executor: ExecutorKind,
    pub action: ExecutionAction,
    pub git_ref: String,
    pub actor: String,
    pub deployment: String,
    pub settings: Option<ExecutorSettings>,
}

/// A lane of the outbox: the jobs that go out one at a time, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The deliveries of one webhook.
    Webhook(Uuid),
    /// The executions of one (service, environment).
    Target(String, String),
}

fn stmt(conn: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    super::sql::statement(conn.get_database_backend(), sql, values)
}

fn millis(t: Timestamp) -> Value {
    t.timestamp_millis().into()
}

fn opt_millis(t: Option<Timestamp>) -> Value {
    t.map(|t| t.timestamp_millis()).into()
}

fn time(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time {ms} is out of range")))
}

fn opt_time(ms: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    ms.map(time).transpose()
}

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("id {text:?}: {e}")))
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T, StoreError> {
    Ok(row.try_get("", column)?)
}

// ------------------------------------------------------------------ webhooks

const WEBHOOK_COLUMNS: &str = "id, url, secret, service, environment, kinds, active, \
     created_by, created_at, updated_by, updated_at";

fn webhook(row: &QueryResult) -> Result<Webhook, StoreError> {
    let kinds: Option<String> = get(row, "kinds")?;
    let kinds = kinds
        .map(|text| {
            let names: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("webhook kinds: {e}")))?;
            names
                .iter()
                .map(|name| {
                    name.parse::<EventKind>()
                        .map_err(|e| StoreError::Corrupt(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(Webhook {
        id: uuid(&get::<String>(row, "id")?)?,
        url: get(row, "url")?,
        secret: get(row, "secret")?,
        service: get(row, "service")?,
        environment: get(row, "environment")?,
        kinds,
        active: get::<i64>(row, "active")? != 0,
        created_by: get(row, "created_by")?,
        created_at: time(get(row, "created_at")?)?,
        updated_by: get(row, "updated_by")?,
        updated_at: time(get(row, "updated_at")?)?,
    })
}

fn kinds_json(webhook: &Webhook) -> Value {
    webhook
        .kinds
        .as_ref()
        .map(|kinds| {
            serde_json::Value::from(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
                .to_string()
        })
        .into()
}

/// The active webhooks, read inside the writer's transaction.
pub(super) async fn active_webhooks(
    txn: &impl ConnectionTrait,
) -> Result<Vec<Webhook>, StoreError> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE active = 1 ORDER BY created_at, id");
    txn.query_all_raw(stmt(txn, &sql, vec![]))
        .await?
        .iter()
        .map(webhook)
        .collect()
}

async fn webhook_by_id(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Webhook>, StoreError> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?");
    txn.query_one_raw(stmt(txn, &sql, vec![id.to_string().into()]))
        .await?
        .as_ref()
        .map(webhook)
        .transpose()
}

pub(super) async fn create_webhook(
    txn: &impl ConnectionTrait,
    new: &NewWebhook,
) -> Result<Webhook, StoreError> {
    let count = txn
        .query_one_raw(stmt(txn, "SELECT COUNT(*) AS n FROM webhooks", vec![]))
        .await?
        .map(|row| get::<i64>(&row, "n"))
        .transpose()?
        .unwrap_or(0);
    if count as u64 >= MAX_WEBHOOKS {
        return Err(StoreError::Integration(IntegrationError::TooManyWebhooks));
    }
    let webhook = Webhook::create(new.clone(), Uuid::now_v7(), now());
    write_webhook(txn, &webhook, true).await?;
    Ok(webhook)
}

async fn write_webhook(
    txn: &impl ConnectionTrait,
    w: &Webhook,
    insert: bool,
) -> Result<(), StoreError> {
    let sql = if insert {
        "INSERT INTO webhooks (url, secret, service, environment, kinds, active, created_by, \
         created_at, updated_by, updated_at, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    } else {
        "UPDATE webhooks SET url = ?, secret = ?, service = ?, environment = ?, kinds = ?, \
         active = ?, created_by = ?, created_at = ?, updated_by = ?, updated_at = ? WHERE id = ?"
    };
    txn.execute_raw(stmt(
        txn,
        sql,
        vec![
            w.url.clone().into(),
            w.secret.clone().into(),
            w.service.clone().into(),
            w.environment.clone().into(),
            kinds_json(w),
            i64::from(w.active).into(),
            w.created_by.clone().into(),
            millis(w.created_at),
            w.updated_by.clone().into(),
            millis(w.updated_at),
            w.id.to_string().into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn update_webhook(
    txn: &impl ConnectionTrait,
    id: Uuid,
    update: &WebhookUpdate,
) -> Result<Webhook, StoreError> {
    let current = webhook_by_id(txn, id)
        .await?
        .ok_or(StoreError::Integration(IntegrationError::WebhookNotFound(
            id,
        )))?;
    let next = current.updated(update, now());
    write_webhook(txn, &next, false).await?;
    Ok(next)
}

/// Deletes the webhook and, with it, its deliveries and their attempts.
pub(super) async fn delete_webhook(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Webhook, StoreError> {
    let current = webhook_by_id(txn, id)
        .await?
        .ok_or(StoreError::Integration(IntegrationError::WebhookNotFound(
            id,
        )))?;
    txn.execute_raw(stmt(
        txn,
        "DELETE FROM webhooks WHERE id = ?",
        vec![id.to_string().into()],
    ))
    .await?;
    Ok(current)
}

// ------------------------------------------------------------------ deliveries

/// Writes one delivery per matching webhook for the event just written, in its
/// transaction. Returns how many.
///
/// `at` is when they fall due: the writer never lets it go back (a clock stepped back
/// would otherwise put a later event's first attempt before an earlier one's).
pub(super) async fn enqueue_deliveries(
    txn: &impl ConnectionTrait,
    written: &Written,
    webhooks: &[Webhook],
    at: Timestamp,
) -> Result<usize, StoreError> {
    let wanting: Vec<&Webhook> = webhooks
        .iter()
        .filter(|w| w.wants(&written.event.event))
        .collect();
    if wanting.is_empty() {
        return Ok(0);
    }
    // The body once per event; the deliveries in one statement.
    txn.execute_raw(stmt(
        txn,
        "INSERT INTO webhook_payloads (event_seq, body) VALUES (?, ?)",
        vec![
            written.event.seq.into(),
            super::payload::webhook_body(written).into(),
        ],
    ))
    .await?;
    let schedule = Schedule::first(at);
    let mut sql = String::from(
        "INSERT INTO webhook_deliveries (id, webhook_id, event_seq, status, attempts, \
         next_attempt_at, redeliver, due_at, created_at) VALUES ",
    );
    let mut values: Vec<Value> = Vec::with_capacity(wanting.len() * 7);
    for (i, webhook) in wanting.iter().enumerate() {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, 0, ?, 0, ?, ?)"
        } else {
            ", (?, ?, ?, ?, 0, ?, 0, ?, ?)"
        });
        values.extend([
            Uuid::now_v7().to_string().into(),
            webhook.id.to_string().into(),
            written.event.seq.into(),
            schedule.status.as_str().into(),
            opt_millis(schedule.next_attempt_at),
            opt_millis(schedule.due_at(at)),
            millis(at),
        ]);
    }
    txn.execute_raw(stmt(txn, &sql, values)).await?;
    Ok(wanting.len())
}

const DELIVERY_COLUMNS: &str =
    "seq, id, webhook_id, event_seq, status, attempts, next_attempt_at, redeliver, delivered_at";

fn delivery(row: &QueryResult) -> Result<Delivery, StoreError> {
    let status: String = get(row, "status")?;
    Ok(Delivery {
        seq: get(row, "seq")?,
        id: uuid(&get::<String>(row, "id")?)?,
        webhook_id: uuid(&get::<String>(row, "webhook_id")?)?,
        event_seq: get(row, "event_seq")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?,
        next_attempt_at: opt_time(get(row, "next_attempt_at")?)?,
        delivered_at: opt_time(get(row, "delivered_at")?)?,
    })
}

fn schedule_of(row: &QueryResult) -> Result<Schedule, StoreError> {
    let status: String = get(row, "status")?;
    Ok(Schedule {
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("delivery status {status:?}")))?,
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: opt_time(get(row, "next_attempt_at")?)?,
        redeliver: get::<i64>(row, "redeliver")? != 0,
    })
}

/// Records attempts of deliveries and moves their schedules on, in three statements
/// however many there are. Deliveries deleted with their webhook meanwhile are left
/// gone.
pub(super) async fn record_delivery_attempts(
    txn: &impl ConnectionTrait,
    attempts: &[(i64, AttemptReport, f64)],
    policy: &RetryPolicy,
) -> Result<(), StoreError> {
    // Well below SQLite's limit on bound values per statement.
    for chunk in attempts.chunks(256) {
        record_chunk(txn, chunk, policy).await?;
    }
    Ok(())
}

async fn record_chunk(
    txn: &impl ConnectionTrait,
    attempts: &[(i64, AttemptReport, f64)],
    policy: &RetryPolicy,
) -> Result<(), StoreError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT seq, status, attempts, tries, next_attempt_at, redeliver, delivered_at \
         FROM webhook_deliveries WHERE seq IN ({})",
        placeholders(attempts.len())
    );
    let seqs = attempts.iter().map(|(seq, ..)| Value::from(*seq)).collect();
    let mut current: HashMap<i64, (Schedule, i64, Option<Timestamp>)> = HashMap::new();
    for row in txn.query_all_raw(stmt(txn, &sql, seqs)).await? {
        current.insert(
            get(&row, "seq")?,
            (
                schedule_of(&row)?,
                get(&row, "tries")?,
                opt_time(get(&row, "delivered_at")?)?,
            ),
        );
    }
    // The attempts in order (a delivery attempted twice is moved on twice), then one
    // row of new values per delivery.
    let mut rows: Vec<Value> = Vec::new();
    let mut order: Vec<i64> = Vec::new();
    for (seq, report, jitter) in attempts {
        let Some((schedule, tries, delivered_at)) = current.get_mut(seq) else {
            continue;
        };
        let next = schedule.after(report, policy, *jitter);
        if next.status == DeliveryStatus::Delivered && delivered_at.is_none() {
            *delivered_at = Some(report.at);
        }
        *schedule = next;
        *tries += 1;
        rows.extend([
            Value::from(*seq),
            Value::from(*tries),
            millis(report.at),
            report.status_code.map(i32::from).into(),
            report.error.clone().into(),
            i64::from(report.duration_ms).into(),
        ]);
        if !order.contains(seq) {
            order.push(*seq);
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    let mut values: Vec<Value> = Vec::with_capacity(order.len() * 8);
    for seq in &order {
        let Some((schedule, tries, delivered_at)) = current.get(seq) else {
            continue;
        };
        values.extend([
            Value::from(*seq),
            schedule.status.as_str().into(),
            i64::from(schedule.attempts).into(),
            Value::from(*tries),
            opt_millis(schedule.next_attempt_at),
            i64::from(schedule.redeliver).into(),
            opt_millis(schedule.next_attempt_at.filter(|_| !schedule.redeliver)),
            opt_millis(*delivered_at),
        ]);
    }
    let tuples = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; order.len()].join(", ");
    txn.execute_raw(stmt(
        txn,
        &format!(
            "UPDATE webhook_deliveries AS d SET status = v.column2, attempts = v.column3, \
             tries = v.column4, next_attempt_at = v.column5, redeliver = v.column6, \
             due_at = v.column7, delivered_at = v.column8 \
             FROM (VALUES {tuples}) AS v WHERE d.seq = v.column1"
        ),
        values,
    ))
    .await?;
    let inserts = vec!["(?, ?, ?, ?, ?, ?)"; rows.len() / 6].join(", ");
    txn.execute_raw(stmt(
        txn,
        &format!(
            "INSERT INTO webhook_attempts (delivery_seq, n, at, status_code, error, duration_ms) \
             VALUES {inserts}"
        ),
        rows,
    ))
    .await?;
    Ok(())
}

/// Asks for one more attempt of the delivery, now.
pub(super) async fn redeliver(
    txn: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Delivery, StoreError> {
    let at = now();
    let changed = txn
        .execute_raw(stmt(
            txn,
            "UPDATE webhook_deliveries SET redeliver = 1, due_at = ? WHERE id = ?",
            vec![millis(at), id.to_string().into()],
        ))
        .await?;
    if changed.rows_affected() != 1 {
        return Err(StoreError::Integration(IntegrationError::DeliveryNotFound(
            id,
        )));
    }
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?");
    let row = txn
        .query_one_raw(stmt(txn, &sql, vec![id.to_string().into()]))
        .await?
        .ok_or(StoreError::Integration(IntegrationError::DeliveryNotFound(
            id,
        )))?;
    delivery(&row)
}

// ------------------------------------------------------------------ targets and executions

/// A target's executor settings, from `target`'s columns.
fn settings(row: &dyn Columns) -> Result<ExecutorSettings, StoreError> {
    let executor = row.text(2)?;
    let text =
        |at: usize| -> Result<String, StoreError> { Ok(row.maybe_text(at)?.unwrap_or_default()) };
    match ExecutorKind::parse(&executor) {
        Some(ExecutorKind::GitHubActions) => {
            Ok(ExecutorSettings::GitHubActions(GitHubActionsSettings {
                repository: text(3)?,
                workflow: text(4)?,
                workflow_ref: text(5)?,
                environment_input: text(6)?,
                ref_input: text(7)?,
                token_env: text(8)?,
            }))
        }
        Some(ExecutorKind::Http) => Ok(ExecutorSettings::Http(HttpSettings {
            url: text(9)?,
            secret: text(10)?,
        })),
        None => Err(StoreError::Corrupt(format!("executor {executor:?}"))),
    }
}

/// A `deployment_targets` row, its columns in `statements::TARGET` order.
fn target(row: &dyn Columns) -> Result<DeploymentTarget, StoreError> {
    Ok(DeploymentTarget {
        service: row.text(0)?,
        environment: row.text(1)?,
        settings: settings(row)?,
        updated_by: row.text(11)?,
        updated_at: time(row.int(12)?)?,
    })
}

async fn target_of(
    txn: &impl Run,
    service: &str,
    environment: &str,
) -> Result<Option<DeploymentTarget>, StoreError> {
    txn.row(
        &statements::TARGET,
        &[Bind::Text(service), Bind::Text(environment)],
        target,
    )
    .await
}

pub(super) async fn configure_target(
    txn: &impl ConnectionTrait,
    new: &NewTarget,
) -> Result<DeploymentTarget, StoreError> {
    let target = DeploymentTarget {
        service: new.service.clone(),
        environment: new.environment.clone(),
        settings: new.settings.clone(),
        updated_by: new.actor.clone(),
        updated_at: now(),
    };
    let none = || Value::String(None);
    let (gh, http) = match &target.settings {
        ExecutorSettings::GitHubActions(s) => (Some(s), None),
        ExecutorSettings::Http(s) => (None, Some(s)),
    };
    let gh_field = |f: fn(&GitHubActionsSettings) -> &String| {
        gh.map(|s| Value::from(f(s).clone())).unwrap_or_else(none)
    };
    txn.execute_raw(stmt(
        txn,
        "INSERT INTO deployment_targets (service, environment, executor, repository, \
         workflow, workflow_ref, environment_input, ref_input, token_env, url, secret, \
         updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (service, environment) DO UPDATE SET executor = excluded.executor, \
         repository = excluded.repository, workflow = excluded.workflow, \
         workflow_ref = excluded.workflow_ref, environment_input = excluded.environment_input, \
         ref_input = excluded.ref_input, token_env = excluded.token_env, url = excluded.url, \
         secret = excluded.secret, updated_by = excluded.updated_by, \
         updated_at = excluded.updated_at",
        vec![
            target.service.clone().into(),
            target.environment.clone().into(),
            target.settings.kind().as_str().into(),
            gh_field(|s| &s.repository),
            gh_field(|s| &s.workflow),
            gh_field(|s| &s.workflow_ref),
            gh_field(|s| &s.environment_input),
            gh_field(|s| &s.ref_input),
            gh_field(|s| &s.token_env),
            http.map(|s| Value::from(s.url.clone()))
                .unwrap_or_else(none),
            http.map(|s| Value::from(s.secret.clone()))
                .unwrap_or_else(none),
            target.updated_by.clone().into(),
            millis(target.updated_at),
        ],
    ))
    .await?;
    Ok(target)
}

pub(super) async fn remove_target(
    txn: &impl Run,
    service: &str,
    environment: &str,
) -> Result<DeploymentTarget, StoreError> {
    let current = target_of(txn, service, environment).await?.ok_or_else(|| {
        StoreError::Integration(IntegrationError::TargetNotFound {
            service: service.to_owned(),
            environment: environment.to_owned(),
        })
    })?;
    txn.execute_raw(stmt(
        txn,
        "DELETE FROM deployment_targets WHERE service = ? AND environment = ?",
        vec![service.into(), environment.into()],
    ))
    .await?;
    Ok(current)
}

/// The version live in the deployment's place now, as the writer's transaction sees it:
/// the release train's own rule (`ReleaseTrain::assemble`), read on the transaction.
async fn live_version(
    txn: &impl ConnectionTrait,
    service: &str,
    environment: &str,
) -> Result<Option<String>, StoreError> {
    let train = super::train::train_in(txn, service).await?;
    Ok(train
        .stops
        .into_iter()
        .find(|stop| stop.environment.name == environment)
        .and_then(|stop| stop.live)
        .map(|live| live.version))
}

/// Writes the execution the event just written asks of its place's target, if any, in
/// its transaction. Returns whether one was written.
pub(super) async fn enqueue_execution(
    txn: &impl Run,
    written: &Written,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let event = &written.event.event;
    if !matches!(event.kind, EventKind::Started | EventKind::RolledBack) {
        return Ok(false);
    }
    let d = &written.deployment;
    let Some(target) = target_of(txn, &d.service, &d.environment).await? else {
        return Ok(false);
    };
    let live_after = if event.kind == EventKind::RolledBack {
        live_version(txn, &d.service, &d.environment).await?
    } else {
        None
    };
    let Some((action, git_ref)) =
        crate::domain::integrations::trigger_for(event, d, live_after.as_deref())
    else {
        return Ok(false);
    };
    txn.execute_raw(stmt(
        txn,
        "INSERT INTO executions (id, deployment_id, service, environment, executor, action, \
         git_ref, actor, deployment, status, attempts, next_attempt_at, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?)",
        vec![
            Uuid::now_v7().to_string().into(),
            d.id.to_string().into(),
            d.service.clone().into(),
            d.environment.clone().into(),
            target.settings.kind().as_str().into(),
            action.as_str().into(),
            git_ref.into(),
            event.actor.clone().into(),
            super::payload::deployment_json(d).to_string().into(),
            millis(at),
            millis(at),
        ],
    ))
    .await?;
    Ok(true)
}

/// What recording a trigger attempt leads to: the deployment to fail, when a DEPLOY
/// failed for good, with the executor's error.
pub(super) struct TriggerResult {
    pub fail: Option<(Uuid, ExecutorKind, String)>,
}

/// Records one attempt of an execution and moves its schedule on.
pub(super) async fn record_execution_attempt(
    txn: &impl ConnectionTrait,
    seq: i64,
    report: &AttemptReport,
    policy: &RetryPolicy,
    jitter: f64,
) -> Result<TriggerResult, StoreError> {
    let Some(row) = txn
        .query_one_raw(stmt(
            txn,
            "SELECT deployment_id, executor, action, status, attempts, next_attempt_at, \
             triggered_at FROM executions WHERE seq = ?",
            vec![seq.into()],
        ))
        .await?
    else {
        return Ok(TriggerResult { fail: None });
    };
    let status: String = get(&row, "status")?;
    let status = ExecutionStatus::parse(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("execution status {status:?}")))?;
    let schedule = Schedule {
        status: status.schedule_status(),
        attempts: u32::try_from(get::<i64>(&row, "attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: opt_time(get(&row, "next_attempt_at")?)?,
        redeliver: false,
    };
    if schedule.status != DeliveryStatus::Pending {
        return Ok(TriggerResult { fail: None });
    }
    let next = schedule.after(report, policy, jitter);
    let next_status = ExecutionStatus::of(next.status);
    let triggered_at = if next_status == ExecutionStatus::Triggered {
        Some(report.at)
    } else {
        opt_time(get(&row, "triggered_at")?)?
    };
    txn.execute_raw(stmt(
        txn,
        "UPDATE executions SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, \
         triggered_at = ? WHERE seq = ?",
        vec![
            next_status.as_str().into(),
            i64::from(next.attempts).into(),
            opt_millis(next.next_attempt_at),
            report.error.clone().into(),
            opt_millis(triggered_at),
            seq.into(),
        ],
    ))
    .await?;
    let action: String = get(&row, "action")?;
    let executor: String = get(&row, "executor")?;
    let fail = (next_status == ExecutionStatus::Failed
        && ExecutionAction::parse(&action) == Some(ExecutionAction::Deploy))
    .then(|| -> Result<_, StoreError> {
        Ok((
            uuid(&get::<String>(&row, "deployment_id")?)?,
            ExecutorKind::parse(&executor)
                .ok_or_else(|| StoreError::Corrupt(format!("executor {executor:?}")))?,
            report
                .error
                .clone()
                .unwrap_or_else(|| "it failed".to_owned()),
        ))
    })
    .transpose()?;
    Ok(TriggerResult { fail })
}

fn execution(row: &QueryResult) -> Result<Execution, StoreError> {
    let executor: String = get(row, "executor")?;
    let action: String = get(row, "action")?;
    let status: String = get(row, "status")?;
    Ok(Execution {
        id: uuid(&get::<String>(row, "id")?)?,
        deployment_id: uuid(&get::<String>(row, "deployment_id")?)?,
        executor: ExecutorKind::parse(&executor)
            .ok_or_else(|| StoreError::Corrupt(format!("executor {executor:?}")))?,
        action: ExecutionAction::parse(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("action {action:?}")))?,
        status: ExecutionStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("execution status {status:?}")))?,
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
        last_error: get(row, "last_error")?,
        triggered_at: opt_time(get(row, "triggered_at")?)?,
    })
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Store {
    /// Every webhook, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY created_at, id");
        self.read
            .query_all_raw(stmt(&self.read, &sql, vec![]))
            .await?
            .iter()
            .map(webhook)
            .collect()
    }

    pub async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, StoreError> {
        webhook_by_id(&self.read, id).await
    }

    /// The webhooks with these ids, in one statement.
    pub async fn webhooks_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Webhook>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id IN ({})",
            placeholders(ids.len())
        );
        let values = ids.iter().map(|id| id.to_string().into()).collect();
        self.read
            .query_all_raw(stmt(&self.read, &sql, values))
            .await?
            .iter()
            .map(webhook)
            .collect()
    }

    /// Newest first: up to `first` deliveries of the webhook before `before` (a
    /// delivery's seq), with any of `statuses` (None: any). One statement.
    pub async fn delivery_page(
        &self,
        webhook_id: Uuid,
        first: u64,
        before: Option<i64>,
        statuses: Option<&[DeliveryStatus]>,
    ) -> Result<super::Page<Delivery>, StoreError> {
        let mut sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ? AND seq < ?"
        );
        let mut values: Vec<Value> = vec![
            webhook_id.to_string().into(),
            before.unwrap_or(i64::MAX).into(),
        ];
        if let Some(statuses) = statuses {
            if statuses.is_empty() {
                return Ok(super::Page {
                    items: Vec::new(),
                    has_next: false,
                });
            }
            sql.push_str(&format!(
                " AND status IN ({})",
                placeholders(statuses.len())
            ));
            values.extend(statuses.iter().map(|s| Value::from(s.as_str())));
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        values.push(i64::try_from(first + 1).unwrap_or(i64::MAX).into());
        let rows = self
            .read
            .query_all_raw(stmt(&self.read, &sql, values))
            .await?;
        super::page(rows, first, |row| delivery(&row))
    }

    pub async fn delivery(&self, id: Uuid) -> Result<Option<Delivery>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?");
        self.read
            .query_one_raw(stmt(&self.read, &sql, vec![id.to_string().into()]))
            .await?
            .as_ref()
            .map(delivery)
            .transpose()
    }

    /// The attempts of these deliveries (by seq), oldest first, in one statement.
    pub async fn attempts_of(
        &self,
        seqs: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<Attempt>>, StoreError> {
        let mut found: std::collections::HashMap<i64, Vec<Attempt>> = Default::default();
        if seqs.is_empty() {
            return Ok(found);
        }
        let sql = format!(
            "SELECT delivery_seq, at, status_code, error, duration_ms FROM webhook_attempts \
             WHERE delivery_seq IN ({}) ORDER BY delivery_seq, n",
            placeholders(seqs.len())
        );
        let values = seqs.iter().map(|&s| Value::from(s)).collect();
        for row in self
            .read
            .query_all_raw(stmt(&self.read, &sql, values))
            .await?
        {
            let status_code: Option<i64> = get(&row, "status_code")?;
            found
                .entry(get(&row, "delivery_seq")?)
                .or_default()
                .push(Attempt {
                    at: time(get(&row, "at")?)?,
                    status_code: status_code.and_then(|c| u16::try_from(c).ok()),
                    error: get(&row, "error")?,
                    duration_ms: u32::try_from(get::<i64>(&row, "duration_ms")?).unwrap_or(0),
                });
        }
        Ok(found)
    }

    /// Every deployment target, by service then environment.
    pub async fn deployment_targets(&self) -> Result<Vec<DeploymentTarget>, StoreError> {
        self.read
            .rows(&statements::TARGETS, &[], None, target)
            .await
    }

    /// The latest execution of each of these deployments, in one statement.
    pub async fn executions_of(
        &self,
        ids: &[Uuid],
    ) -> Result<std::collections::HashMap<Uuid, Execution>, StoreError> {
        let mut found = std::collections::HashMap::new();
        if ids.is_empty() {
            return Ok(found);
        }
        let sql = format!(
            "SELECT id, deployment_id, executor, action, status, attempts, last_error, \
             triggered_at FROM executions WHERE deployment_id IN ({}) ORDER BY seq",
            placeholders(ids.len())
        );
        let values = ids.iter().map(|id| id.to_string().into()).collect();
        for row in self
            .read
            .query_all_raw(stmt(&self.read, &sql, values))
            .await?
        {
            let execution = execution(&row)?;
            // Later rows replace earlier ones: the latest wins.
            found.insert(execution.deployment_id, execution);
        }
        Ok(found)
    }

    /// The lanes with work due at `now`, and when the next later job falls due.
    pub async fn due_lanes(
        &self,
        now: Timestamp,
    ) -> Result<(Vec<Lane>, Option<Timestamp>), StoreError> {
        let mut lanes = Vec::new();
        let mut next: Option<i64> = None;
        let now_ms = now.timestamp_millis();
        // Per webhook, its earliest due delivery: one step down its index each.
        for row in self
            .quiet_read
            .query_all_raw(stmt(
                &self.quiet_read,
                "SELECT w.id AS webhook_id, \
                   (SELECT MIN(d.due_at) FROM webhook_deliveries d \
                     WHERE d.webhook_id = w.id AND d.due_at IS NOT NULL) AS first_due \
                 FROM webhooks w",
                vec![],
            ))
            .await?
        {
            let Some(first_due) = get::<Option<i64>>(&row, "first_due")? else {
                continue;
            };
            if first_due <= now_ms {
                lanes.push(Lane::Webhook(uuid(&get::<String>(&row, "webhook_id")?)?));
            } else {
                next = Some(next.map_or(first_due, |n| n.min(first_due)));
            }
        }
        for row in self
            .quiet_read
            .query_all_raw(stmt(
                &self.quiet_read,
                "SELECT DISTINCT service, environment FROM executions \
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?",
                vec![millis(now)],
            ))
            .await?
        {
            lanes.push(Lane::Target(
                get(&row, "service")?,
                get(&row, "environment")?,
            ));
        }
        let later = self
            .quiet_read
            .query_one_raw(stmt(
                &self.quiet_read,
                "SELECT MIN(next_attempt_at) AS t FROM executions \
                 WHERE next_attempt_at IS NOT NULL AND next_attempt_at > ?",
                vec![millis(now)],
            ))
            .await?
            .map(|row| get::<Option<i64>>(&row, "t"))
            .transpose()?
            .flatten();
        let next = match (next, later) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((lanes, opt_time(next)?))
    }

    /// The deliveries of this webhook to attempt next, up to `limit`, if any are due:
    /// earliest due first, first attempts in commit order.
    pub async fn next_deliveries(
        &self,
        webhook_id: Uuid,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<DeliveryJob>, StoreError> {
        let rows = self
            .quiet_read
            .query_all_raw(stmt(
                &self.quiet_read,
                "SELECT d.seq, d.id, p.body, w.url, w.secret FROM webhook_deliveries d \
                 JOIN webhook_payloads p ON p.event_seq = d.event_seq \
                 JOIN webhooks w ON w.id = d.webhook_id \
                 WHERE d.webhook_id = ? AND d.due_at IS NOT NULL AND d.due_at <= ? \
                 ORDER BY d.due_at, d.seq LIMIT ?",
                vec![
                    webhook_id.to_string().into(),
                    millis(now),
                    i64::from(limit).into(),
                ],
            ))
            .await?;
        rows.iter()
            .map(|row| {
                Ok(DeliveryJob {
                    seq: get(row, "seq")?,
                    id: uuid(&get::<String>(row, "id")?)?,
                    body: get(row, "body")?,
                    url: get(row, "url")?,
                    secret: get(row, "secret")?,
                })
            })
            .collect()
    }

    /// The execution of this place to attempt next, if one is due, oldest first.
    pub async fn next_execution(
        &self,
        service: &str,
        environment: &str,
        now: Timestamp,
    ) -> Result<Option<ExecutionJob>, StoreError> {
        let row = self
            .quiet_read
            .query_one_raw(stmt(
                &self.quiet_read,
                "SELECT seq, id, deployment_id, service, environment, executor, action, git_ref, \
                 actor, deployment FROM executions \
                 WHERE service = ? AND environment = ? AND next_attempt_at IS NOT NULL \
                   AND next_attempt_at <= ? ORDER BY seq LIMIT 1",
                vec![service.into(), environment.into(), millis(now)],
            ))
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let executor: String = get(&row, "executor")?;
        let action: String = get(&row, "action")?;
        let settings = target_of(&self.quiet_read, service, environment)
            .await?
            .map(|t| t.settings);
        Ok(Some(ExecutionJob {
            seq: get(&row, "seq")?,
            id: uuid(&get::<String>(&row, "id")?)?,
            deployment_id: uuid(&get::<String>(&row, "deployment_id")?)?,
            service: get(&row, "service")?,
            environment: get(&row, "environment")?,
            executor: ExecutorKind::parse(&executor)
                .ok_or_else(|| StoreError::Corrupt(format!("executor {executor:?}")))?,
            action: ExecutionAction::parse(&action)
                .ok_or_else(|| StoreError::Corrupt(format!("action {action:?}")))?,
            git_ref: get(&row, "git_ref")?,
            actor: get(&row, "actor")?,
            deployment: get(&row, "deployment")?,
            settings,
        }))
    }
}

impl Store {
    async fn integration_write(
        &self,
        write: super::writer::Write,
    ) -> Result<super::writer::Integration, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writes
            .send(super::writer::Job {
                write,
                reply: super::writer::Reply::Integration(reply),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn webhook_write(&self, write: super::writer::Write) -> Result<Webhook, StoreError> {
        match self.integration_write(write).await? {
            super::writer::Integration::Webhook(w) => Ok(w),
            _ => Err(StoreError::Corrupt(
                "a webhook write answered something else".into(),
            )),
        }
    }

    async fn target_write(
        &self,
        write: super::writer::Write,
    ) -> Result<DeploymentTarget, StoreError> {
        match self.integration_write(write).await? {
            super::writer::Integration::Target(t) => Ok(t),
            _ => Err(StoreError::Corrupt(
                "a target write answered something else".into(),
            )),
        }
    }

    /// Records a new webhook (at most `MAX_WEBHOOKS`). It gets the events that commit
    /// after it.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        self.webhook_write(super::writer::Write::CreateWebhook(new))
            .await
    }

    pub async fn update_webhook(
        &self,
        id: Uuid,
        update: WebhookUpdate,
    ) -> Result<Webhook, StoreError> {
        self.webhook_write(super::writer::Write::UpdateWebhook(id, update))
            .await
    }

    /// Deletes a webhook with its deliveries; answers it as it was.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<Webhook, StoreError> {
        self.webhook_write(super::writer::Write::DeleteWebhook(id))
            .await
    }

    /// Schedules one more attempt of a delivery, now.
    pub async fn redeliver(&self, id: Uuid) -> Result<Delivery, StoreError> {
        match self
            .integration_write(super::writer::Write::Redeliver(id))
            .await?
        {
            super::writer::Integration::Delivery(d) => Ok(d),
            _ => Err(StoreError::Corrupt(
                "a redelivery answered something else".into(),
            )),
        }
    }

    /// Records attempts of deliveries (with each one's retry jitter in [-1, 1]) in one
    /// write.
    pub async fn record_delivery_attempts(
        &self,
        attempts: Vec<(i64, AttemptReport, f64)>,
    ) -> Result<(), StoreError> {
        self.integration_write(super::writer::Write::DeliveryAttempts(attempts))
            .await
            .map(drop)
    }

    /// Records an attempt of an execution; a DEPLOY that failed for good fails its
    /// deployment in the same write.
    pub async fn record_execution_attempt(
        &self,
        seq: i64,
        report: AttemptReport,
        jitter: f64,
    ) -> Result<(), StoreError> {
        self.integration_write(super::writer::Write::ExecutionAttempt(seq, report, jitter))
            .await
            .map(drop)
    }

    /// Creates or replaces the target of (service, environment).
    pub async fn configure_target(&self, new: NewTarget) -> Result<DeploymentTarget, StoreError> {
        self.target_write(super::writer::Write::ConfigureTarget(new))
            .await
    }

    pub async fn remove_target(
        &self,
        service: &str,
        environment: &str,
    ) -> Result<DeploymentTarget, StoreError> {
        self.target_write(super::writer::Write::RemoveTarget(
            service.trim().to_owned(),
            environment.trim().to_owned(),
        ))
        .await
    }

    /// Woken (one permit kept if nobody waits) each time deliveries or executions commit.
    pub fn outbox_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }
}
