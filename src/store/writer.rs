//! The writer: one task that owns every write, and commits them in groups.
//!
//! Each write is still its own compare-and-set with its own outcome and its own event,
//! run inside a SAVEPOINT so that a write that fails rolls back alone. What is shared is
//! the transaction around them, so one fsync (synchronous=FULL) makes a whole group
//! durable: the writes that queued up while the previous group was committing. Under no
//! load a group is one write and nothing waits; under load the fsync is amortised.
//!
//! Outcomes are sent only after the group's COMMIT returns, and committed events are
//! published right then, in sequence order, by this one task: subscribers see every event
//! once, in commit order, and never before it is durable. A caller that goes away does
//! not cancel its write; it only misses the answer.

use std::sync::Arc;

use std::future::Future;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait,
    QueryFilter, QueryOrder, TransactionTrait,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::direct::Direct;
use super::entity::{deployment, event};
use super::environments;
use super::freeze;
use super::guards;
use super::outbox::{self, Delivery};
use super::promotion;
use super::statements::{self, Bind, Run};
use super::timeouts;
use super::{now, rows, Live, StoreError, Written};
use crate::domain::freeze::{FreezeRemoval, FreezeWindow, NewFreezeWindow};
use crate::domain::integrations::{
    AttemptReport, DeploymentTarget, ExecutorKind, NewTarget, NewWebhook, RetryPolicy, Webhook,
    WebhookUpdate,
};
use crate::domain::{
    Action, ActionCommand, Approvals, Deployment, Environment, EnvironmentConfig, EventKind,
    NewDeployment, ProductionEnvironments, Promotion, Refusal, TIMEOUT_ACTOR,
};
use crate::domain::{Status, Timestamp};
use crate::metrics;

/// Most writes committed together. Bounds the latency a write adds to its group.
const MAX_GROUP: usize = 64;
/// Writes waiting for the writer; submitters wait for room beyond this.
const QUEUE: usize = 1024;

pub(super) enum Write {
    Create(NewDeployment),
    Transition(Uuid, ActionCommand),
    ConfigureEnvironment(EnvironmentConfig),
    Promote(Promotion),
    /// The start timeout of a STARTED deployment whose deadline has come.
    TimeOut(Uuid),
    CreateFreezeWindow(NewFreezeWindow),
    RemoveFreezeWindow(Uuid, FreezeRemoval),
    CreateWebhook(NewWebhook),
    UpdateWebhook(Uuid, WebhookUpdate),
    DeleteWebhook(Uuid),
    /// One more attempt of a delivery, now.
    Redeliver(Uuid),
    /// Attempts of deliveries (by seq) were made; `f64` is each one's retry jitter.
    DeliveryAttempts(Vec<(i64, AttemptReport, f64)>),
    ConfigureTarget(NewTarget),
    RemoveTarget(String, String),
    /// An attempt of an execution (by seq) was made; `f64` is the retry jitter.
    ExecutionAttempt(i64, AttemptReport, f64),
}

impl Write {
    /// Whether the write changes the webhooks (so the writer's copy must be re-read).
    fn changes_webhooks(&self) -> bool {
        matches!(
            self,
            Write::CreateWebhook(_) | Write::UpdateWebhook(..) | Write::DeleteWebhook(_)
        )
    }
}

pub(super) struct Job {
    pub write: Write,
    pub reply: Reply,
}

/// Where a write's outcome goes: a deployment write answers what it wrote, a
/// configuration the environment as it now is.
pub(super) enum Reply {
    Written(oneshot::Sender<Result<Written, StoreError>>),
    Environment(oneshot::Sender<Result<Environment, StoreError>>),
    FreezeWindow(oneshot::Sender<Result<FreezeWindow, StoreError>>),
    Integration(oneshot::Sender<Result<Integration, StoreError>>),
}

/// What a webhook or target write answers.
#[derive(Debug)]
pub(super) enum Integration {
    Webhook(Webhook),
    Delivery(Delivery),
    Target(DeploymentTarget),
    /// An attempt was recorded.
    Recorded,
}

impl Reply {
    fn send(self, answer: Result<Outcome, StoreError>) {
        let mismatch = || StoreError::Corrupt("a write answered with the wrong outcome".into());
        // An error only means that the caller went away.
        match self {
            Reply::Written(tx) => {
                let _ = tx.send(answer.and_then(|outcome| match outcome {
                    Outcome::Deployment(done) => Ok(done.written),
                    _ => Err(mismatch()),
                }));
            }
            Reply::Environment(tx) => {
                let _ = tx.send(answer.and_then(|outcome| match outcome {
                    Outcome::Environment(environment) => Ok(environment),
                    _ => Err(mismatch()),
                }));
            }
            Reply::FreezeWindow(tx) => {
                let _ = tx.send(answer.and_then(|outcome| match outcome {
                    Outcome::FreezeWindow(window) => Ok(window),
                    _ => Err(mismatch()),
                }));
            }
            Reply::Integration(tx) => {
                let _ = tx.send(answer.and_then(|outcome| match outcome {
                    Outcome::Integration(answer, _) => Ok(answer),
                    _ => Err(mismatch()),
                }));
            }
        }
    }
}

impl From<oneshot::Sender<Result<Written, StoreError>>> for Reply {
    fn from(tx: oneshot::Sender<Result<Written, StoreError>>) -> Self {
        Reply::Written(tx)
    }
}

/// What one write produced: a deployment write's `Done`, or a configured environment.
/// Outcomes live only until their group is answered; boxing the larger one would cost
/// every deployment write an allocation.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Deployment(Done),
    Environment(Environment),
    FreezeWindow(FreezeWindow),
    /// A webhook or target write, and the deployment write it led to (a DEPLOY trigger
    /// that failed for good fails its deployment).
    Integration(Integration, Option<Done>),
}

impl Outcome {
    /// The deployment write in this outcome, whose event is published after commit.
    fn done(&self) -> Option<&Done> {
        match self {
            Outcome::Deployment(done) | Outcome::Integration(_, Some(done)) => Some(done),
            _ => None,
        }
    }
}

impl From<Done> for Outcome {
    fn from(done: Done) -> Self {
        Outcome::Deployment(done)
    }
}

/// What one write did: `fresh` is false for an idempotent retry, which wrote nothing.
struct Done {
    written: Written,
    fresh: bool,
}

/// The tasks the writer wakes after a commit.
pub(super) struct Wake {
    /// The start-timeout task, after a start with a deadline.
    pub deadlines: Arc<tokio::sync::Notify>,
    /// The outbox, after deliveries or executions were written.
    pub outbox: Arc<tokio::sync::Notify>,
    /// Counts committed groups: moved on after every commit, before anyone is answered.
    pub generation: Arc<std::sync::atomic::AtomicU64>,
}

/// What the writer keeps between groups.
struct State {
    production: Arc<ProductionEnvironments>,
    retry: RetryPolicy,
    /// The active webhooks, read in a write transaction; None when a webhook write may
    /// have changed them.
    webhooks: Option<Arc<Vec<Webhook>>>,
    /// When the last outbox job was made due: first attempts go out in commit order, so
    /// their due times never go back, even when the clock does.
    last_due: Timestamp,
}

impl State {
    /// Now, or the last due time if the clock went back since.
    fn due_now(&mut self) -> Timestamp {
        self.last_due = Ord::max(self.last_due, now());
        self.last_due
    }
}

/// The writer's connection.
pub(super) enum Engine {
    /// SQLite: a plain connection the writer runs every statement on itself (see
    /// `direct.rs`), and the claim on the file it gives up once that connection is closed.
    Sqlite {
        db: Direct,
        claim: super::lock::Claim,
    },
    /// PostgreSQL: one pooled connection; each group is a transaction on it.
    Postgres(DatabaseConnection),
}

/// Taken first by every write group on PostgreSQL, held to its COMMIT: one group at a
/// time writes, across every instance on the database, as SQLite's one writer does. So
/// reads inside a group see every group committed before it, and event sequence numbers
/// (taken inside the group) are in commit order: a reader that sees event N sees every
/// event below N that will ever commit (ARCHITECTURE.md, "Commit order").
///
/// The first write's savepoint is opened in the same round trip.
pub(super) const EVENTS_LOCK: &str =
    "SELECT pg_advisory_xact_lock(7285561927120155422); SAVEPOINT write";

/// Wakes the tails of every instance at the COMMIT of a group that appended events.
pub(super) const EVENTS_NOTIFY: &str = "SELECT pg_notify('shiplog_events', '')";

/// How committed events reach the live feed.
pub(super) enum Publish {
    /// SQLite: this writer is the only one, and hands each event to the hub right after
    /// its COMMIT. `last` is the event handed out last.
    Hub {
        hub: broadcast::Sender<Arc<Live>>,
        last: i64,
    },
    /// PostgreSQL: the tail (`tail.rs`) reads every instance's events from the table; the
    /// writer wakes it after its own commits. `_stop` ends the tail with the writer.
    Tail {
        committed: Arc<tokio::sync::Notify>,
        _stop: oneshot::Sender<()>,
    },
}

/// Starts the writer. On SQLite it has a thread of its own, which runs every statement
/// itself: a group of writes takes no thread switch until its answers are sent (see
/// `direct.rs`). On PostgreSQL it is a task.
pub(super) fn spawn(
    engine: Engine,
    mut publish: Publish,
    production: Arc<ProductionEnvironments>,
    wake: Wake,
    retry: RetryPolicy,
) -> std::io::Result<mpsc::Sender<Job>> {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let runtime = tokio::runtime::Handle::current();
    let mut state = State {
        production,
        retry,
        webhooks: None,
        last_due: Timestamp::default(),
    };
    let on_sqlite = matches!(engine, Engine::Sqlite { .. });
    let writer = async move {
        drain(&mut rx, &engine, &mut publish, &mut state, &wake).await;
        match engine {
            Engine::Sqlite { db, claim } => {
                // The database is let go for the next process only once this connection
                // is closed.
                drop(db);
                drop(claim);
            }
            Engine::Postgres(db) => {
                if let Err(err) = db.close().await {
                    tracing::debug!(error = %err, "closing the writer's connection");
                }
            }
        }
    };
    if on_sqlite {
        // The statements' futures complete at once; only waiting for the queue parks the
        // thread.
        std::thread::Builder::new()
            .name("shiplog-writer".into())
            .spawn(move || runtime.block_on(writer))?;
    } else {
        runtime.spawn(writer);
    }
    Ok(tx)
}

/// Commits the queued writes group by group until every `Store` clone is gone.
async fn drain(
    rx: &mut mpsc::Receiver<Job>,
    engine: &Engine,
    publish: &mut Publish,
    state: &mut State,
    wake: &Wake,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    // Sampled where the writer touches its queue: what is left behind when a group is
    // taken, and what piled up while it was committed.
    let mut queued = metrics::QueuedWrites::new();
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        queued.set(rx.len());
        let taken = std::mem::take(&mut group);
        match engine {
            Engine::Sqlite { db, .. } => commit_sqlite(db, publish, state, wake, taken).await,
            Engine::Postgres(db) => commit_postgres(db, publish, state, wake, taken).await,
        }
        queued.set(rx.len());
    }
}

/// The active webhooks as this transaction sees them.
async fn webhooks(
    txn: &impl ConnectionTrait,
    state: &mut State,
) -> Result<Arc<Vec<Webhook>>, StoreError> {
    if let Some(webhooks) = &state.webhooks {
        return Ok(webhooks.clone());
    }
    let webhooks = Arc::new(outbox::active_webhooks(txn).await?);
    state.webhooks = Some(webhooks.clone());
    Ok(webhooks)
}

/// Runs one write in its savepoint, and writes the deliveries and the execution its
/// event asks for in the same savepoint. Returns its outcome and whether the outbox has
/// new work.
async fn run_write(
    txn: &impl Run,
    state: &mut State,
    write: &Write,
) -> Result<(Outcome, bool), StoreError> {
    let production = state.production.clone();
    let production = production.as_ref();
    let mut outbox_work = false;
    let outcome = match write {
        Write::Create(new) => create(txn, new, production).await.map(Outcome::from),
        Write::Transition(id, command) => transition(txn, *id, command).await.map(Outcome::from),
        Write::TimeOut(id) => timeouts::time_out(txn, *id).await.map(|written| {
            Outcome::from(Done {
                written,
                fresh: true,
            })
        }),
        Write::Promote(promotion) => promotion::promote(txn, promotion, production)
            .await
            .map(|(written, fresh)| Outcome::from(Done { written, fresh })),
        Write::ConfigureEnvironment(config) => environments::configure(txn, config, production)
            .await
            .map(Outcome::Environment),
        Write::CreateFreezeWindow(new) => freeze::create(txn, new, production)
            .await
            .map(Outcome::FreezeWindow),
        Write::RemoveFreezeWindow(id, removal) => freeze::remove(txn, *id, removal)
            .await
            .map(Outcome::FreezeWindow),
        Write::CreateWebhook(new) => outbox::create_webhook(txn, new)
            .await
            .map(|w| Outcome::Integration(Integration::Webhook(w), None)),
        Write::UpdateWebhook(id, update) => outbox::update_webhook(txn, *id, update)
            .await
            .map(|w| Outcome::Integration(Integration::Webhook(w), None)),
        Write::DeleteWebhook(id) => outbox::delete_webhook(txn, *id)
            .await
            .map(|w| Outcome::Integration(Integration::Webhook(w), None)),
        Write::Redeliver(id) => {
            outbox_work = true;
            outbox::redeliver(txn, *id)
                .await
                .map(|d| Outcome::Integration(Integration::Delivery(d), None))
        }
        Write::DeliveryAttempts(attempts) => {
            outbox::record_delivery_attempts(txn, attempts, &state.retry)
                .await
                .map(|()| Outcome::Integration(Integration::Recorded, None))
        }
        Write::ConfigureTarget(new) => outbox::configure_target(txn, new)
            .await
            .map(|t| Outcome::Integration(Integration::Target(t), None)),
        Write::RemoveTarget(service, environment) => {
            outbox::remove_target(txn, service, environment)
                .await
                .map(|t| Outcome::Integration(Integration::Target(t), None))
        }
        Write::ExecutionAttempt(seq, report, jitter) => {
            let result =
                outbox::record_execution_attempt(txn, *seq, report, &state.retry, *jitter).await?;
            let failed = match result.fail {
                Some((id, executor, error)) => executor_failed(txn, id, executor, &error).await?,
                None => None,
            };
            Ok(Outcome::Integration(Integration::Recorded, failed))
        }
    }?;
    if let Some(done) = outcome.done() {
        if done.fresh {
            let webhooks = webhooks(txn, state).await?;
            let at = state.due_now();
            let deliveries = outbox::enqueue_deliveries(txn, &done.written, &webhooks, at).await?;
            let execution = outbox::enqueue_execution(txn, &done.written, at).await?;
            outbox_work |= deliveries > 0 || execution;
        }
    }
    Ok((outcome, outbox_work))
}

/// Records FAILED on a deployment whose DEPLOY trigger failed for good, if it is still
/// STARTED (an outcome its executor or anyone reported first wins).
async fn executor_failed(
    txn: &impl Run,
    id: Uuid,
    executor: ExecutorKind,
    error: &str,
) -> Result<Option<Done>, StoreError> {
    let note = crate::domain::integrations::executor_failure_note(executor, error);
    let command = ActionCommand::validate(Action::Fail, TIMEOUT_ACTOR, Some(&note))
        .map_err(StoreError::Invalid)?;
    match transition(txn, id, &command).await {
        Ok(done) => Ok(Some(done)),
        Err(StoreError::Refused(Refusal::Conflict { .. })) | Err(StoreError::NotFound(_)) => {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// The statements that bracket a group's writes, on the group's connection.
trait Savepoints: Run {
    /// Whether `control` takes several statements at once (one round trip for them).
    const BATCHES: bool;
    fn control(&self, sql: &'static str) -> impl Future<Output = Result<(), DbErr>> + Send;
}

impl Savepoints for Direct {
    const BATCHES: bool = false;

    async fn control(&self, sql: &'static str) -> Result<(), DbErr> {
        Direct::control(self, sql)
    }
}

impl Savepoints for DatabaseTransaction {
    // PostgreSQL's simple query protocol runs every statement of the text.
    const BATCHES: bool = true;

    async fn control(&self, sql: &'static str) -> Result<(), DbErr> {
        self.execute_unprepared(sql).await.map(drop)
    }
}

/// What running a group's writes gave: one outcome per write, in order.
#[derive(Default)]
struct Ran {
    outcomes: Vec<Result<Outcome, StoreError>>,
    /// Whether the outbox has new work.
    outbox_work: bool,
    /// When the last write's statements were done (before COMMIT).
    executed: Option<std::time::Instant>,
}

/// Runs each write of the group in a SAVEPOINT of its own, inside the group's open
/// transaction: a write that fails rolls back alone. `first` opens the first write's
/// savepoint (after whatever must come first in the same round trip). Where the
/// connection takes several statements at once, one write's RELEASE and the next one's
/// SAVEPOINT go together.
async fn run_group<D: Savepoints>(
    db: &D,
    state: &mut State,
    group: &[Job],
    ran: &mut Ran,
    first: &'static str,
) -> Result<(), DbErr> {
    db.control(first).await?;
    for (i, job) in group.iter().enumerate() {
        let outcome = run_write(db, state, &job.write).await;
        if job.write.changes_webhooks() {
            state.webhooks = None;
        }
        let outcome = match outcome {
            Ok((outcome, work)) => {
                ran.outbox_work |= work;
                Ok(outcome)
            }
            Err(err) => Err(err),
        };
        if outcome.is_err() {
            db.control("ROLLBACK TO write").await?;
        }
        if i + 1 == group.len() {
            db.control("RELEASE write").await?;
        } else if D::BATCHES {
            db.control("RELEASE write; SAVEPOINT write").await?;
        } else {
            db.control("RELEASE write").await?;
            db.control("SAVEPOINT write").await?;
        }
        ran.outcomes.push(outcome);
    }
    ran.executed = Some(std::time::Instant::now());
    Ok(())
}

async fn commit_sqlite(
    db: &Direct,
    publish: &mut Publish,
    state: &mut State,
    wake: &Wake,
    group: Vec<Job>,
) {
    let began = std::time::Instant::now();
    let mut ran = Ran {
        outcomes: Vec::with_capacity(group.len()),
        ..Ran::default()
    };
    let committed = async {
        db.control("BEGIN IMMEDIATE")?;
        run_group(db, state, &group, &mut ran, "SAVEPOINT write").await?;
        db.control("COMMIT")
    }
    .await;
    if committed.is_err() {
        // Whatever failed, nothing of the group stays: the next group begins afresh.
        if let Err(err) = db.control("ROLLBACK") {
            tracing::debug!(error = %err, "rolling back a failed write group");
        }
    }
    answer_group(publish, state, wake, group, ran, began, committed);
}

async fn commit_postgres(
    db: &DatabaseConnection,
    publish: &mut Publish,
    state: &mut State,
    wake: &Wake,
    group: Vec<Job>,
) {
    let began = std::time::Instant::now();
    let mut ran = Ran {
        outcomes: Vec::with_capacity(group.len()),
        ..Ran::default()
    };
    // Another instance may have changed the webhooks since the last group.
    state.webhooks = None;
    let committed = match db.begin().await {
        Err(err) => Err(err),
        Ok(txn) => {
            let ran_group = async {
                run_group(&txn, state, &group, &mut ran, EVENTS_LOCK).await?;
                if ran
                    .outcomes
                    .iter()
                    .any(|o| o.as_ref().is_ok_and(|o| o.done().is_some()))
                {
                    txn.control(EVENTS_NOTIFY).await?;
                }
                Ok::<(), DbErr>(())
            }
            .await;
            match ran_group {
                Ok(()) => txn.commit().await,
                Err(err) => {
                    if let Err(rollback) = txn.rollback().await {
                        tracing::debug!(error = %rollback, "rolling back a failed write group");
                    }
                    Err(err)
                }
            }
        }
    };
    answer_group(publish, state, wake, group, ran, began, committed);
}

/// After a group's COMMIT (or its failure): counts it, publishes its events, wakes who
/// must be woken, and answers every write.
fn answer_group(
    publish: &mut Publish,
    state: &mut State,
    wake: &Wake,
    group: Vec<Job>,
    ran: Ran,
    began: std::time::Instant,
    committed: Result<(), DbErr>,
) {
    let ended = std::time::Instant::now();
    let executed = ran.executed.unwrap_or(ended);
    if committed.is_err() {
        // The webhooks read in the failed transaction may not be what is stored.
        state.webhooks = None;
    }
    // Counted before anyone is answered, so that a caller who reads the metrics after
    // its answer finds its group there.
    metrics::write_group(
        group.len(),
        committed.is_ok(),
        executed - began,
        ended - executed,
    );
    let outcomes = ran.outcomes;
    match committed {
        Ok(()) => {
            // Before any answer: whoever got one and reads next sees the new generation.
            wake.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let mut appended = false;
            for (job, outcome) in group.into_iter().zip(outcomes) {
                if let Some(done) = outcome.as_ref().ok().and_then(Outcome::done) {
                    if done.fresh {
                        appended = true;
                        if let Publish::Hub { hub, last } = publish {
                            let stored = done.written.event.clone();
                            let after = std::mem::replace(last, stored.seq);
                            // An error only means that nobody is subscribed right now.
                            let _ = hub.send(Arc::new(Live { after, stored }));
                        }
                        if done.written.event.event.kind == EventKind::Started
                            && done.written.deployment.start_deadline.is_some()
                        {
                            // The timeout task re-reads its next deadline.
                            wake.deadlines.notify_one();
                        }
                    }
                }
                job.reply.send(outcome);
            }
            if let (Publish::Tail { committed, .. }, true) = (publish, appended) {
                committed.notify_one();
            }
            if ran.outbox_work {
                wake.outbox.notify_one();
            }
        }
        Err(err) => {
            // Nothing of the group is durable: every write that would have changed
            // something fails; refusals stand, since they wrote nothing anyway.
            tracing::error!(error = %err, writes = group.len(), "a write group failed");
            let mut outcomes = outcomes.into_iter();
            for job in group {
                let answer = match outcomes.next() {
                    Some(Err(
                        refused @ (StoreError::Refused(_)
                        | StoreError::NotFound(_)
                        | StoreError::Invalid(_)
                        | StoreError::IdempotencyConflict { .. }
                        | StoreError::FreezeWindow(_)
                        | StoreError::Integration(_)),
                    )) => Err(refused),
                    _ => Err(StoreError::Database(DbErr::Custom(format!(
                        "the write group was not committed: {err}"
                    )))),
                };
                job.reply.send(answer);
            }
        }
    }
}

/// Records a new deployment and its CREATED event. With an idempotency key used before:
/// the same request gets the original deployment (as it is now) and its CREATED event,
/// and nothing is written; another request gets `IdempotencyConflict`.
///
/// The environment is registered by use if it is new; its tier decides whether the risk
/// is required, and its `required_approvals` is kept on the deployment.
async fn create(
    txn: &impl Run,
    new: &NewDeployment,
    production: &ProductionEnvironments,
) -> Result<Done, StoreError> {
    let key = new.idempotency_key().map(str::to_owned);
    if let Some(key) = key.as_deref() {
        if let Some(original) = created_with_key(txn, key).await? {
            if !original.deployment.was_requested_by(new) {
                return Err(StoreError::IdempotencyConflict {
                    key: key.to_owned(),
                });
            }
            return Ok(Done {
                written: original,
                fresh: false,
            });
        }
    }
    let environment = environments::registered(txn, new.environment(), production).await?;
    let (deployment, event) = Deployment::create_in(
        new.clone(),
        &environment,
        Uuid::now_v7(),
        Uuid::now_v7(),
        now(),
    )
    .map_err(StoreError::Invalid)?;
    rows::insert_deployment(txn, &deployment, key.as_deref()).await?;
    let event = rows::insert_event(txn, event).await?;
    Ok(Done {
        written: Written { deployment, event },
        fresh: true,
    })
}

/// The deployment created with this idempotency key, and its CREATED event.
pub(super) async fn created_with_key(
    txn: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<Written>, StoreError> {
    let Some(row) = deployment::Entity::find()
        .filter(deployment::Column::IdempotencyKey.eq(key))
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let deployment = rows::deployment(row)?;
    let created = event::Entity::find()
        .filter(event::Column::DeploymentId.eq(deployment.id.to_string()))
        .order_by_asc(event::Column::Seq)
        .one(txn)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("{} has no events", deployment.id)))?;
    Ok(Some(Written {
        deployment,
        event: rows::event(created)?,
    }))
}

/// Who has approved the deployment so far: the actors of its APPROVED events, read
/// inside the write transaction so that concurrent approvals are counted one by one.
async fn approvals_of(txn: &impl Run, id: Uuid) -> Result<Approvals, StoreError> {
    let id = id.to_string();
    let actors = txn
        .rows(&statements::APPROVERS, &[Bind::Text(&id)], None, |row| {
            row.text(0)
        })
        .await?;
    Ok(Approvals::new(actors))
}

/// Reads the deployment, lets the domain decide, compare-and-sets the status and appends
/// the event. The read is inside the write transaction, so nothing changes in between.
async fn transition(txn: &impl Run, id: Uuid, command: &ActionCommand) -> Result<Done, StoreError> {
    let current = rows::find_deployment(txn, &id.to_string())
        .await?
        .ok_or(StoreError::NotFound(id))?;
    let approvals = if current.needs_approvals(command.action()) {
        approvals_of(txn, id).await?
    } else {
        Approvals::default()
    };
    let (next, mut event) = if current.needs_start_facts(command.action()) {
        let facts = guards::start_facts(txn, &current).await?;
        current.apply_start(command, &facts, Uuid::now_v7(), now())?
    } else {
        current.apply_given(command, &approvals, Uuid::now_v7(), now())?
    };
    // FROZEN, decided after the other guards, on the windows as they are in this transaction.
    if current.needs_start_facts(command.action()) {
        let windows = freeze::in_force(txn, Some(&current.environment)).await?;
        crate::domain::freeze::guard_start(&mut event, &windows, command.override_freeze())?;
    }
    // A start keeps, as its deadline, the start timeout in force now (in this transaction).
    let next = if next.status == Status::Started && current.status != Status::Started {
        let timeout = timeouts::timeout_in_force(txn, &current.environment).await?;
        next.with_start_timeout(timeout)
    } else {
        next
    };

    let updated = rows::update_status(txn, &next, current.status).await;
    let updated = guards::one_started(txn, &current, updated).await?;
    if updated != 1 {
        return Err(Refusal::Conflict {
            status: current.status,
            action: command.action(),
        }
        .into());
    }
    let event = rows::insert_event(txn, event).await?;
    Ok(Done {
        written: Written {
            deployment: next,
            event,
        },
        fresh: true,
    })
}
