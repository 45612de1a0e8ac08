//! Start timeouts, the store's part: the start timeout in force when a deployment
//! starts (read inside the start's write), the next deadline of a STARTED deployment
//! (one step down a partial index), and the timeout's write (read, let the domain decide,
//! compare-and-set from STARTED, append FAILED), which goes through the writer like any
//! action so that subscribers see it. The task that waits for deadlines is
//! `crate::timeouts`.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use tokio::sync::Notify;
use uuid::Uuid;

use super::statements::{self, Bind, Run};
use super::{now, rows, writer, Store, StoreError, Written};
use crate::domain::{Action, Refusal, Status, Timestamp};

/// The next deadlines of STARTED deployments, earliest first, at most 64 of them (the
/// timeouts due among them are submitted together, so that the writer commits them as
/// one group, after a restart that found many for instance): `deployments_start_deadlines` holds exactly these
/// rows, in deadline order, so these are its first entries. The status is a literal so
/// that SQLite can use the partial index (a bound parameter cannot prove the index's
/// condition), and the index is named: without statistics the planner would rather take
/// the status index and sort.
pub const NEXT_START_DEADLINE: &str = "SELECT id, start_deadline \
     FROM deployments INDEXED BY deployments_start_deadlines \
     WHERE status = 'STARTED' AND start_deadline IS NOT NULL \
     ORDER BY start_deadline, id LIMIT 64";

impl Store {
    /// The STARTED deployments whose deadlines come first (at most 64), and those
    /// deadlines, earliest first. One statement.
    pub async fn next_start_deadlines(&self) -> Result<Vec<(Uuid, Timestamp)>, StoreError> {
        // On the uncounted readers: the timeout task runs beside requests whose
        // statements tests count.
        let rows = self
            .quiet_read
            .query_all_raw(super::sql::plain(
                self.quiet_read.get_database_backend(),
                NEXT_START_DEADLINE,
            ))
            .await?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get("", "id")?;
                let deadline: i64 = row.try_get("", "start_deadline")?;
                let id = Uuid::parse_str(&id)
                    .map_err(|e| StoreError::Corrupt(format!("id {id:?}: {e}")))?;
                let deadline = Timestamp::from_timestamp_millis(deadline)
                    .ok_or_else(|| StoreError::Corrupt(format!("deadline {deadline} of {id}")))?;
                Ok((id, deadline))
            })
            .collect()
    }

    /// Records the start timeout of this deployment through the writer: FAILED by
    /// `shiplog`, published to subscribers like any action. Refused with a CONFLICT when
    /// the deployment is no longer STARTED (an outcome committed first) or its deadline
    /// has not come.
    #[tracing::instrument(skip(self))]
    pub async fn time_out(&self, id: Uuid) -> Result<Written, StoreError> {
        self.submit(writer::Write::TimeOut(id)).await
    }

    /// Woken (one permit kept if nobody waits) each time a start with a deadline commits.
    pub fn start_deadlines(&self) -> Arc<Notify> {
        self.deadlines.clone()
    }
}

/// The start timeout of `environment` now, read inside the start's write transaction.
pub(super) async fn timeout_in_force(
    txn: &impl Run,
    environment_name: &str,
) -> Result<Option<u32>, StoreError> {
    let seconds = txn
        .row(
            &statements::START_TIMEOUT,
            &[Bind::Text(environment_name.trim())],
            |row| row.maybe_int(0),
        )
        .await?;
    seconds
        .flatten()
        .map(|s| {
            u32::try_from(s).map_err(|_| {
                StoreError::Corrupt(format!("start timeout of environment {environment_name:?}"))
            })
        })
        .transpose()
}

/// The timeout's write, inside the writer's transaction: the domain decides on the
/// deployment as it is now, and the status is compare-and-set from STARTED, so an
/// outcome that committed first wins and the timeout is recorded at most once.
pub(super) async fn time_out(txn: &impl Run, id: Uuid) -> Result<Written, StoreError> {
    let current = rows::find_deployment(txn, &id.to_string())
        .await?
        .ok_or(StoreError::NotFound(id))?;
    let refused = || -> StoreError {
        Refusal::Conflict {
            status: current.status,
            action: Action::Fail,
        }
        .into()
    };
    let Some((next, event)) = current.time_out(Uuid::now_v7(), now()) else {
        return Err(refused());
    };
    if rows::update_status(txn, &next, Status::Started).await? != 1 {
        return Err(refused());
    }
    let event = rows::insert_event(txn, event).await?;
    Ok(Written {
        deployment: next,
        event,
    })
}
