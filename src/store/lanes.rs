//! Which instance works an outbox lane (`crate::outbox`): on PostgreSQL, where several
//! instances share the outbox, a lane is worked by the one instance holding its lock.
//!
//! The lock is a session advisory lock, taken with `pg_try_advisory_lock` on a connection
//! each instance keeps for its lane locks alone. One holder at a time, so a lane's jobs
//! still go out one at a time and in order; and when an instance dies its connection
//! closes and the server drops its locks at once, so the survivors take its lanes over
//! without waiting out a lease. A job whose attempt was made but not yet recorded when
//! its instance died is attempted again by the next holder: delivery is at least once,
//! as after any crash (receivers deduplicate on `webhook-id`).
//!
//! If the lock connection itself fails, every lock it held is gone: the connection is
//! replaced, the epoch moves on, and each lane that was claimed in an older epoch stops
//! before its next job (`Store::lane_held`).
//!
//! On SQLite one process serves the file (`lock.rs`), so every claim succeeds.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

use super::{Lane, Store, StoreError};

/// The lane locks of one instance on PostgreSQL.
pub(super) struct LaneLocks {
    pool: PgPool,
    /// Taken from the pool for good (detached), so that closing the pool does not wait
    /// for it.
    conn: Mutex<Option<PgConnection>>,
    epoch: AtomicU64,
}

/// A lane this instance holds.
#[derive(Debug)]
pub struct LaneClaim {
    /// The advisory lock's key; None on SQLite, where there is no lock.
    key: Option<i64>,
    epoch: u64,
}

impl LaneLocks {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            conn: Mutex::new(None),
            epoch: AtomicU64::new(0),
        }
    }

    /// Closes the lock connection: every lane this instance held is free.
    pub(super) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            if let Err(err) = conn.close().await {
                tracing::debug!(error = %err, "closing the lane locks' connection");
            }
        }
    }

    /// Runs `sql` (one bool answer, the key bound) on the lock connection, opening one
    /// if there is none. An error drops the connection, and with it every lock.
    async fn ask(&self, sql: &'static str, key: i64) -> Result<(bool, u64), StoreError> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            // Locks of an earlier connection are gone: claims made on it are void.
            let fresh = self.pool.acquire().await?.detach();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            *conn = Some(fresh);
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        let Some(open) = conn.as_mut() else {
            return Err(StoreError::Closed);
        };
        match sqlx::query_scalar::<_, bool>(sql)
            .bind(key)
            .fetch_one(&mut *open)
            .await
        {
            Ok(answer) => Ok((answer, epoch)),
            Err(err) => {
                if let Some(broken) = conn.take() {
                    // The server ends its session, and drops its locks, when it closes.
                    let _ = broken.close_hard().await;
                }
                self.epoch.fetch_add(1, Ordering::AcqRel);
                Err(err.into())
            }
        }
    }
}

/// The advisory lock key of a lane: a 64-bit FNV-1a hash of its name. Two lanes that
/// hashed alike would only be worked one after the other.
fn key_of(lane: &Lane) -> i64 {
    let name = match lane {
        Lane::Webhook(id) => format!("shiplog webhook {id}"),
        Lane::Target(service, environment) => format!("shiplog target {service}\0{environment}"),
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

impl Store {
    /// Takes `lane` for this instance, or None when another instance works it now.
    pub async fn claim_lane(&self, lane: &Lane) -> Result<Option<LaneClaim>, StoreError> {
        let Some(locks) = &self.lanes else {
            return Ok(Some(LaneClaim {
                key: None,
                epoch: 0,
            }));
        };
        let key = key_of(lane);
        let (taken, epoch) = locks.ask("SELECT pg_try_advisory_lock($1)", key).await?;
        Ok(taken.then_some(LaneClaim {
            key: Some(key),
            epoch,
        }))
    }

    /// Whether the claim still holds (its lock connection was not lost since).
    pub fn lane_held(&self, claim: &LaneClaim) -> bool {
        match (&self.lanes, claim.key) {
            (Some(locks), Some(_)) => locks.epoch.load(Ordering::Acquire) == claim.epoch,
            _ => true,
        }
    }

    /// Gives the lane up, for any instance to take.
    pub async fn release_lane(&self, claim: LaneClaim) -> Result<(), StoreError> {
        let (Some(locks), Some(key)) = (&self.lanes, claim.key) else {
            return Ok(());
        };
        if locks.epoch.load(Ordering::Acquire) != claim.epoch {
            // Its lock went with the connection that held it.
            return Ok(());
        }
        locks
            .ask("SELECT pg_advisory_unlock($1)", key)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_have_distinct_stable_keys() {
        let a = Lane::Webhook(uuid::Uuid::from_u128(1));
        let b = Lane::Webhook(uuid::Uuid::from_u128(2));
        let c = Lane::Target("billing".into(), "production".into());
        let d = Lane::Target("billing/production".into(), String::new());
        let keys = [key_of(&a), key_of(&b), key_of(&c), key_of(&d)];
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(key_of(&a), key_of(&a.clone()));
    }
}
