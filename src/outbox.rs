//! The outbox dispatcher: sends the webhook deliveries and executor triggers that the
//! writer recorded with their events, after commit, and records every attempt.
//!
//! Work is split into lanes: the deliveries of one webhook, the executions of one
//! (service, environment). A lane has at most one request in flight and takes its due
//! jobs in order (earliest due first; first attempts in commit order), so a slow or dead
//! receiver holds back only its own lane, never writes or other lanes. A failed attempt
//! is rescheduled on its own (`domain::integrations::Schedule`) and the lane goes on
//! with the next due job.
//!
//! The supervisor reads which lanes have due work, starts a task for each that is not
//! running, and sleeps until the next job falls due, a commit brings new work (the
//! writer wakes it), or a lane finishes. Nothing is kept only in memory: a delivery is
//! PENDING in the database until an attempt's outcome is recorded, so after a crash or
//! a stop the next start sends it again (at least once; receivers deduplicate on
//! `webhook-id`).
//!
//! On PostgreSQL several instances share the outbox: a lane is worked only by the
//! instance that claimed it (`Store::claim_lane`, a lock its database session holds), so
//! each attempt is made by one instance, and a dead instance's lanes are taken over by
//! the others within [`CLAIM_RETRY`].

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

use crate::domain::destination::check_secret;
use crate::domain::integrations::{AttemptReport, TriggerRequest};
use crate::integrations::client::Sender;
use crate::integrations::executor::executor_for;
use crate::store::{now, Lane, LaneClaim, Store, StoreError};

/// How long to wait before trying again after the database failed.
const RETRY: Duration = Duration::from_secs(1);
/// The longest single sleep: a clock that jumps is noticed at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Deliveries a lane reads at once.
const BATCH: u32 = 64;
/// How soon to try again for a due lane that another instance works, and the longest
/// sleep when several instances share the outbox (their commits do not wake this one).
const CLAIM_RETRY: Duration = Duration::from_secs(1);
/// How long a lane works through one read before it reads again (so that a redelivery
/// asked for, or a retry that fell due, waits at most this long behind a slow receiver).
const BATCH_TIME: Duration = Duration::from_secs(2);

/// The HTTP side of the outbox, shared by the dispatcher and the API (which checks
/// webhook and target URLs with it).
#[derive(Clone)]
pub struct OutboxSender(pub Arc<Sender>);

impl OutboxSender {
    /// Builds the HTTP clients. Fails only if TLS cannot be set up.
    pub fn new(options: crate::integrations::client::SenderOptions) -> Result<Self, String> {
        Sender::new(options).map(|sender| Self(Arc::new(sender)))
    }
}

impl std::fmt::Debug for OutboxSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("OutboxSender")
            .field(self.0.options())
            .finish()
    }
}

/// Starts the dispatcher. It ends when `stop` turns true or its sender is dropped; lane
/// tasks in flight are cut off then, and their jobs stay PENDING for the next start.
pub fn spawn(store: Store, sender: Arc<Sender>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(supervise(store, sender, stop))
}

async fn supervise(store: Store, sender: Arc<Sender>, mut stop: watch::Receiver<bool>) {
    let woken = store.outbox_wake();
    let running: Arc<Mutex<HashSet<Lane>>> = Arc::default();
    let lane_done = Arc::new(Notify::new());
    let mut lanes = JoinSet::new();
    loop {
        if *stop.borrow() {
            return;
        }
        // Reap finished lane tasks so the set does not grow.
        while lanes.try_join_next().is_some() {}
        let at = now();
        let longest = if store.is_shared() {
            CLAIM_RETRY
        } else {
            MAX_SLEEP
        };
        let wait = match store.due_lanes(at).await {
            Ok((due, next)) => {
                let mut elsewhere = false;
                for lane in due {
                    let here = running
                        .lock()
                        .map(|set| set.contains(&lane))
                        .unwrap_or(true);
                    if here {
                        continue;
                    }
                    let claim = match store.claim_lane(&lane).await {
                        Ok(Some(claim)) => claim,
                        Ok(None) => {
                            // Another instance works it; look again soon, in case it dies.
                            elsewhere = true;
                            continue;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, ?lane, "outbox: cannot claim a lane; retrying");
                            elsewhere = true;
                            continue;
                        }
                    };
                    if let Ok(mut set) = running.lock() {
                        set.insert(lane.clone());
                    }
                    lanes.spawn(run_lane(
                        store.clone(),
                        sender.clone(),
                        lane,
                        claim,
                        running.clone(),
                        lane_done.clone(),
                    ));
                }
                let wait = next
                    .map(|t| (t - at).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(longest)
                    .min(longest);
                if elsewhere {
                    wait.min(CLAIM_RETRY)
                } else {
                    wait
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "outbox: cannot read due work; retrying");
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = woken.notified() => {}
            _ = lane_done.notified() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Takes the lane's due jobs one at a time until none is due, then leaves the lane and
/// wakes the supervisor (work may have come in meanwhile).
async fn run_lane(
    store: Store,
    sender: Arc<Sender>,
    lane: Lane,
    claim: LaneClaim,
    running: Arc<Mutex<HashSet<Lane>>>,
    done: Arc<Notify>,
) {
    // Leaves the lane however the task ends, a panic or an abort included.
    let leave = LeaveLane {
        lane: lane.clone(),
        running,
        done,
        store: store.clone(),
        claim: Some(claim),
    };
    loop {
        if !leave.claim.as_ref().is_some_and(|c| store.lane_held(c)) {
            tracing::warn!(?lane, "outbox: the claim on a lane was lost; leaving it");
            break;
        }
        let step = match &lane {
            Lane::Webhook(id) => deliver_next(&store, &sender, *id).await,
            Lane::Target(service, environment) => {
                trigger_next(&store, &sender, service, environment).await
            }
        };
        match step {
            Ok(true) => continue,
            Ok(false) => break,
            Err(err) => {
                tracing::error!(error = %err, ?lane, "outbox: cannot read or record; retrying");
                tokio::time::sleep(RETRY).await;
                break;
            }
        }
    }
}

/// Gives the lane's claim up, marks it as no longer running, and wakes the supervisor,
/// when dropped.
struct LeaveLane {
    lane: Lane,
    running: Arc<Mutex<HashSet<Lane>>>,
    done: Arc<Notify>,
    store: Store,
    claim: Option<LaneClaim>,
}

impl Drop for LeaveLane {
    fn drop(&mut self) {
        let (Some(claim), Ok(runtime)) = (self.claim.take(), tokio::runtime::Handle::try_current())
        else {
            // No runtime left: the process is ending, and its locks with its connections.
            self.leave();
            return;
        };
        let store = self.store.clone();
        let lane = self.lane.clone();
        let running = self.running.clone();
        let done = self.done.clone();
        // Released before the lane is marked free here, so that this instance's next
        // claim of it does not meet its own lock.
        runtime.spawn(async move {
            if let Err(err) = store.release_lane(claim).await {
                tracing::warn!(error = %err, ?lane, "outbox: cannot release a lane");
            }
            if let Ok(mut set) = running.lock() {
                set.remove(&lane);
            }
            done.notify_one();
        });
    }
}

impl LeaveLane {
    fn leave(&self) {
        if let Ok(mut set) = self.running.lock() {
            set.remove(&self.lane);
        }
        self.done.notify_one();
    }
}

/// Where in the +/- 20% band a retry falls.
fn jitter() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}

/// Makes one attempt of each of the webhook's next due deliveries (up to `BATCH`, for
/// `BATCH_TIME` at most), one request at a time, in order, then records them all in one
/// write before the lane reads again (so none is sent twice for want of its record).
/// False when nothing is due.
async fn deliver_next(
    store: &Store,
    sender: &Sender,
    webhook_id: uuid::Uuid,
) -> Result<bool, StoreError> {
    let jobs = store.next_deliveries(webhook_id, now(), BATCH).await?;
    if jobs.is_empty() {
        return Ok(false);
    }
    let started = tokio::time::Instant::now();
    let mut attempts = Vec::with_capacity(jobs.len());
    for job in jobs {
        if started.elapsed() > BATCH_TIME {
            // The rest stay due: read again, after whatever fell due meanwhile.
            break;
        }
        let report = match check_secret(&job.secret) {
            Ok(key) => {
                sender
                    .post_signed(&job.url, &key, &job.id.to_string(), job.body.as_bytes())
                    .await
            }
            // Checked when it was set; only a damaged database gets here.
            Err(_) => refused(now(), "the webhook's secret is not valid"),
        };
        crate::metrics::outbox_attempt("webhook", report.succeeded);
        if !report.succeeded {
            tracing::info!(
                delivery = %job.id,
                status = report.status_code,
                error = report.error.as_deref().unwrap_or(""),
                "webhook delivery attempt failed"
            );
        }
        attempts.push((job.seq, report, jitter()));
    }
    store.record_delivery_attempts(attempts).await?;
    Ok(true)
}

/// Makes one attempt of the place's next due execution and records it. False when
/// nothing is due.
async fn trigger_next(
    store: &Store,
    sender: &Sender,
    service: &str,
    environment: &str,
) -> Result<bool, StoreError> {
    let at = now();
    let Some(job) = store.next_execution(service, environment, at).await? else {
        return Ok(false);
    };
    let report = match &job.settings {
        Some(settings) => {
            let deployment = serde_json::from_str(&job.deployment)
                .map_err(|e| StoreError::Corrupt(format!("execution {}: {e}", job.id)))?;
            let request = TriggerRequest {
                execution_id: job.id,
                action: job.action,
                deployment_id: job.deployment_id,
                service: job.service.clone(),
                environment: job.environment.clone(),
                git_ref: job.git_ref.clone(),
                actor: job.actor.clone(),
                deployment,
                now: at,
            };
            executor_for(settings).trigger(sender, &request).await
        }
        None => AttemptReport {
            is_final: true,
            ..refused(at, "the deployment target was removed")
        },
    };
    crate::metrics::outbox_attempt("executor", report.succeeded);
    if !report.succeeded {
        tracing::warn!(
            execution = %job.id,
            deployment = %job.deployment_id,
            status = report.status_code,
            error = report.error.as_deref().unwrap_or(""),
            final_ = report.is_final,
            "executor trigger attempt failed"
        );
    }
    store
        .record_execution_attempt(job.seq, report, jitter())
        .await?;
    Ok(true)
}

/// A failed attempt that sent nothing.
fn refused(at: crate::domain::Timestamp, error: &str) -> AttemptReport {
    AttemptReport {
        at,
        status_code: None,
        error: Some(error.to_owned()),
        duration_ms: 0,
        succeeded: false,
        is_final: false,
    }
}
