//! The start-timeout task: fails each STARTED deployment whose deadline has come, through
//! the writer (so subscribers see the FAILED event like any other), within moments of the
//! deadline.
//!
//! It does not poll. It reads the earliest deadline of a STARTED deployment (one step
//! down a partial index), sleeps until then, and is woken early by the writer whenever
//! a start with a deadline commits (that deadline may come first). A deadline that passed
//! while the server was down is the earliest one when the task first reads, so it is
//! failed right after start.
//!
//! Exactly once: the timeout's write reads the deployment inside the writer's
//! transaction, lets the domain decide (`Deployment::time_out`: still STARTED, deadline
//! reached) and compare-and-sets the status from STARTED. An outcome that committed first
//! wins, and a second attempt (this task again, or the task of a second server on the
//! same database) is refused with a CONFLICT and records nothing. On SQLite one process
//! serves the file; on PostgreSQL every instance runs this task, and of two that fire
//! together one records the timeout and the other is refused.
//!
//! `server::run_with` starts it, and stops it when the server is asked to stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::{Store, StoreError};

/// How long to wait before trying again after the database failed.
const RETRY: Duration = Duration::from_secs(1);
/// The longest single sleep: a clock that jumps is noticed at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// The longest sleep on PostgreSQL, where starts committed by other instances do not
/// wake this task: a deadline whose instance died is failed by another within this.
const SHARED_MAX_SLEEP: Duration = Duration::from_secs(2);

/// Starts the task. It ends when `stop` turns true or its sender is dropped.
pub fn spawn(store: Store, stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(run(store, stop))
}

async fn run(store: Store, mut stop: watch::Receiver<bool>) {
    let woken = store.start_deadlines();
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match next_step(&store).await {
            Ok(Step::Again) => continue,
            Ok(Step::SleepFor(wait)) => wait,
            Err(err) => {
                tracing::error!(error = %err, "start timeouts: cannot read or record; retrying");
                RETRY
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(Instant::now() + wait) => {}
            // A start with a deadline committed: it may come first.
            _ = woken.notified() => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

enum Step {
    /// The deadlines that were due are handled; look at the next ones now.
    Again,
    /// Nothing is due: wait this long (or until woken).
    SleepFor(Duration),
}

async fn next_step(store: &Store) -> Result<Step, StoreError> {
    let next = store.next_start_deadlines().await?;
    let now = chrono::Utc::now();
    let due: Vec<_> = next
        .iter()
        .filter(|(_, deadline)| *deadline <= now)
        .collect();
    if due.is_empty() {
        let longest = if store.is_shared() {
            SHARED_MAX_SLEEP
        } else {
            MAX_SLEEP
        };
        return Ok(Step::SleepFor(match next.first() {
            Some((_, deadline)) => (*deadline - now).to_std().unwrap_or_default().min(longest),
            None => longest,
        }));
    }
    // Submitted together, so that the writer commits them as one group.
    let attempts = due
        .iter()
        .map(|(id, deadline)| async move { (*id, *deadline, store.time_out(*id).await) });
    let mut refused = false;
    let mut failure = None;
    for (id, deadline, outcome) in futures_util::future::join_all(attempts).await {
        match outcome {
            Ok(written) => tracing::info!(
                deployment = %id,
                deadline = %deadline,
                cursor = written.event.seq,
                "start timeout passed: recorded FAILED"
            ),
            // An outcome committed first, or another process timed it out: nothing to do.
            Err(StoreError::Refused(refusal)) => {
                tracing::debug!(deployment = %id, %refusal, "start timeout not recorded");
                refused = true;
            }
            Err(err) => failure = Some(err),
        }
    }
    match failure {
        Some(err) => Err(err),
        // Not again at once: should a deployment still be among the first due (a clock
        // that stepped back), this would spin.
        None if refused => Ok(Step::SleepFor(Duration::from_millis(50))),
        None => Ok(Step::Again),
    }
}
