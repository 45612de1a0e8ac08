//! PostgreSQL: the live feed, read from the event table.
//!
//! Several instances write to one database, so no writer sees every event. Each
//! instance's tail reads the events after the last one it handed out (`seq > last`, in
//! order) and hands them to its hub, for every subscriber of that instance. The table is
//! the source of truth; what wakes the tail only decides when it reads:
//!
//! - this instance's writer, right after each commit that appended events;
//! - a notification on `shiplog_events`, which every write group that appends events
//!   sends inside its transaction (so it is delivered at COMMIT) on any instance;
//! - a poll every [`POLL`], so a notification lost with a dropped connection delays
//!   events, never loses them.
//!
//! Sequence numbers are in commit order (`writer::EVENTS_LOCK`), so a read that sees
//! event N sees every event below N that will ever commit: the tail never steps past an
//! event still to come. Numbers skipped by rolled-back writes stay holes, and each
//! event is handed out with the number of the one before it (`Live::after`).

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::{broadcast, oneshot, Notify};

use super::entity::event;
use super::{rows, Live, StoreError};

/// The longest an event of another instance waits for the tail when its notification
/// was lost.
const POLL: Duration = Duration::from_secs(1);
/// Events read per statement.
const BATCH: u64 = 512;
/// The notification channel.
pub(super) const CHANNEL: &str = "shiplog_events";

/// Starts the tail after event `last`. It ends when the returned sender is dropped or
/// the readers' pool is closed (`Store::close`).
pub(super) fn spawn(
    read: DatabaseConnection,
    hub: broadcast::Sender<Arc<Live>>,
    committed: Arc<Notify>,
    last: i64,
) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let notified = Arc::new(Notify::new());
    let listening = tokio::spawn(listen(read.clone(), notified.clone()));
    let pool = read.get_postgres_connection_pool().clone();
    tokio::spawn(async move {
        let mut stopped = stopped;
        let mut last = last;
        loop {
            if pool.is_closed() {
                break;
            }
            if let Err(err) = hand_out(&read, &hub, &mut last).await {
                tracing::warn!(error = %err, "live events: cannot read the event table; retrying");
            }
            tokio::select! {
                _ = committed.notified() => {}
                _ = notified.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = &mut stopped => break,
                _ = pool.close_event() => break,
            }
        }
        listening.abort();
    });
    stop
}

/// Hands out every event after `last`, in order, and moves `last` on.
async fn hand_out(
    read: &DatabaseConnection,
    hub: &broadcast::Sender<Arc<Live>>,
    last: &mut i64,
) -> Result<(), StoreError> {
    loop {
        let found = event::Entity::find()
            .filter(event::Column::Seq.gt(*last))
            .order_by_asc(event::Column::Seq)
            .limit(BATCH)
            .all(read)
            .await?;
        let full = found.len() as u64 == BATCH;
        for row in found {
            let stored = rows::event(row)?;
            let after = std::mem::replace(last, stored.seq);
            // An error only means that nobody is subscribed right now.
            let _ = hub.send(Arc::new(Live { after, stored }));
        }
        if !full {
            return Ok(());
        }
    }
}

/// Listens on the channel on a connection of its own, and wakes the tail at each
/// notification; reconnects (after a pause) when the connection is lost.
async fn listen(read: DatabaseConnection, notified: Arc<Notify>) {
    let pool = read.get_postgres_connection_pool().clone();
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            // Whatever was committed while there was no listener is read now.
            notified.notify_one();
            loop {
                listener.recv().await?;
                notified.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        let result = listening.await;
        if pool.is_closed() {
            return;
        }
        if let Err(err) = result {
            tracing::warn!(error = %err, "live events: listening for notifications failed; retrying");
        }
        tokio::time::sleep(POLL).await;
    }
}
