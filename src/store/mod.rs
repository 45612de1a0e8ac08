//! Persistence: SQLite through SeaORM. Creates deployments, applies lifecycle actions
//! (each atomic), serves the reads the API needs (keyset pages, batch loads), and hands
//! committed events to live subscribers.
//!
//! Two pools over one database file: a pool of readers, and a single writer connection
//! owned by the writer task (`writer.rs`). SQLite admits one writer at a time anyway;
//! queueing writes for our own writer (rather than letting several connections race for
//! the file lock) means concurrent requests wait in order instead of failing with
//! SQLITE_BUSY, and lets the writer commit them in groups.

mod direct;
mod entity;
mod environments;
mod fast;
mod freeze;
mod guards;
mod lanes;
mod lock;
mod outbox;
mod payload;
mod promotion;
mod release_notes;
mod rows;
mod sql;
pub mod statements;
mod tail;
mod timeouts;
mod train;
mod writer;

/// The statement behind the next start deadline, for tests of its query plan.
#[doc(hidden)]
pub use timeouts::NEXT_START_DEADLINE;
/// The statement behind a train read, for tests of its query plan.
#[doc(hidden)]
pub use train::TRAIN_DEPLOYMENTS;

pub use freeze::FreezeWindowError;

pub use guards::PlaceFacts;
pub use lanes::LaneClaim;
pub use outbox::{Attempt, Delivery, DeliveryJob, ExecutionJob, IntegrationError, Lane};
pub use payload::deployment_json;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqliteTransactionMode,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionOptions,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::domain::{
    ActionCommand, Deployment, DeploymentEvent, EventKind, NewDeployment, ProductionEnvironments,
    Refusal, Status, Timestamp, ValidationErrors,
};
use entity::{deployment, event};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A `sqlite:` URL or a plain file path. The file is created if missing.
    pub database_url: String,
    /// Size of the reader pool.
    pub readers: u32,
    /// How long a writer waits for another process's lock before giving up.
    pub busy_timeout: Duration,
    /// Committed events kept for subscribers that are behind. One shared buffer: a
    /// subscriber that falls further behind catches up from the database instead (see
    /// `follow`), so this bounds memory, not correctness.
    pub live_buffer: usize,
    /// The production set of the naming rule: environments registered by use whose
    /// names are in it get tier PRODUCTION.
    pub production: ProductionEnvironments,
    /// How webhook deliveries and executor triggers are retried.
    pub retry: crate::domain::integrations::RetryPolicy,
}

impl StoreConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            live_buffer: 1024,
            production: ProductionEnvironments::default(),
            retry: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no deployment has id {0}")]
    NotFound(Uuid),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("cannot open the database: {0}")]
    Open(#[from] sqlx::Error),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("idempotency key {key:?} was first used with other input")]
    IdempotencyConflict { key: String },
    #[error("the store is closed")]
    Closed,
    /// Another shiplog process serves this SQLite file (`pid`, when it said so).
    #[error(
        "{database} is in use by another shiplog process{}: on SQLite one process serves a database; stop the other, or run several instances on PostgreSQL",
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    InUse { database: String, pid: Option<u32> },
    /// The file that claims the database for one process cannot be used.
    #[error("cannot claim the database for this process: {0}")]
    Lock(String),
    /// The input breaks a rule that depends on what is stored (a risk the environment's
    /// tier requires), found inside the write transaction.
    #[error(transparent)]
    Invalid(ValidationErrors),
    /// A freeze window that is unknown, already removed, or one too many.
    #[error(transparent)]
    FreezeWindow(FreezeWindowError),
    /// A webhook, delivery or deploy target that is unknown, or one webhook too many.
    #[error(transparent)]
    Integration(IntegrationError),
}

/// An event with its place in the global commit order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub event: DeploymentEvent,
}

/// A committed event as the store's live feed hands it out, with the sequence number of
/// the event handed out before it. Sequence numbers are in commit order but may have
/// holes (on PostgreSQL a write rolled back leaves its number unused), so a follower
/// knows it missed nothing by `after`, not by `seq - 1`.
#[derive(Debug)]
pub(crate) struct Live {
    pub after: i64,
    pub stored: StoredEvent,
}

/// What an action wrote: the deployment as it now is, and the one event appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub deployment: Deployment,
    pub event: StoredEvent,
}

/// A deployment's position in the newest-first order: (creation time, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentKey {
    pub created_at_ms: i64,
    pub id: Uuid,
}

impl DeploymentKey {
    pub fn of(d: &Deployment) -> Self {
        Self {
            created_at_ms: d.created_at.timestamp_millis(),
            id: d.id,
        }
    }
}

/// Filters of the deployment list; `None` means any. All given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentFilter {
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Any of these; an empty list matches nothing.
    pub statuses: Option<Vec<Status>>,
}

/// Filters of the event feed; `None` means any. All given filters must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub deployment_id: Option<Uuid>,
    pub service: Option<String>,
    pub environment: Option<String>,
    /// Any of these; an empty list matches nothing.
    pub kinds: Option<Vec<EventKind>>,
}

impl EventFilter {
    /// The same test as the SQL the store runs, for events that arrive live.
    pub fn matches(&self, e: &DeploymentEvent) -> bool {
        self.deployment_id.is_none_or(|id| id == e.deployment_id)
            && self
                .service
                .as_deref()
                .is_none_or(|s| s.trim() == e.service)
            && self
                .environment
                .as_deref()
                .is_none_or(|s| s.trim() == e.environment)
            && self.kinds.as_deref().is_none_or(|k| k.contains(&e.kind))
    }
}

/// One page of a list, and whether more items follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

/// How much of the database file each connection maps into memory for reads.
const MMAP_BYTES: i64 = 1 << 30;

/// Events per statement when a subscriber replays history.
const REPLAY_PAGE: u64 = 256;

#[derive(Clone)]
pub struct Store {
    read: DatabaseConnection,
    /// The queue of the writer task, which owns every write (see `writer.rs`).
    writes: mpsc::Sender<writer::Job>,
    /// Every committed event, once, in commit order.
    hub: broadcast::Sender<Arc<Live>>,
    read_statements: Arc<AtomicU64>,
    /// The readers, for the timeout task's reads: not in `read_statements`.
    quiet_read: DatabaseConnection,
    /// Notified by the writer after a start with a deadline commits (`timeouts.rs`).
    deadlines: Arc<tokio::sync::Notify>,
    /// Notified by the writer after deliveries or executions commit (`crate::outbox`).
    outbox: Arc<tokio::sync::Notify>,
    /// Plain connections for the hottest reads (`fast.rs`); SQLite only.
    fast: Option<fast::FastReads>,
    /// The environments read so far, as they are stored (`environments::Known`).
    known: Arc<environments::Known>,
    /// Moved on by the writer after every commit (`generation`).
    generation: Arc<AtomicU64>,
    /// Which outbox lanes this instance works (`lanes.rs`); PostgreSQL only.
    lanes: Option<Arc<lanes::LaneLocks>>,
}

impl Store {
    /// Opens (creating if needed) the database and applies every pending migration.
    /// A `postgres://` (or `postgresql://`) URL opens PostgreSQL; anything else names a
    /// SQLite file (`sqlite:` URL or a plain path).
    #[tracing::instrument(skip_all)]
    pub async fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        match connect_options(config)? {
            Connect::Sqlite(options) => Self::open_sqlite(config, *options).await,
            Connect::Postgres(options) => Self::open_postgres(config, *options).await,
        }
    }

    async fn open_sqlite(
        config: &StoreConfig,
        options: SqliteConnectOptions,
    ) -> Result<Self, StoreError> {
        let file = options.get_filename().to_path_buf();
        let url = config.database_url.trim();
        if file.as_os_str().is_empty() || url.contains(":memory:") || url.contains("mode=memory") {
            // The writer and the readers are separate connections: each would see a
            // database of its own.
            return Err(StoreError::Open(sqlx::Error::Configuration(
                "an in-memory database is not supported; give a file".into(),
            )));
        }
        // Before anything else touches the file: one process per SQLite database.
        let claim = lock::claim(&file).await?;
        let last_seq = {
            let write_pool = SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let write = SqlxSqliteConnector::from_sqlx_sqlite_pool(write_pool);
            Migrator::up(&write, None).await?;
            environments::register_existing(&write, &config.production).await?;
            let last_seq = last_seq_in(&write).await?;
            write.close().await?;
            last_seq
        };
        let direct = direct::Direct::open(&file, config.busy_timeout)?;

        let read_pool = SqlitePoolOptions::new()
            .max_connections(Ord::max(config.readers, 1))
            .connect_with(options.read_only(true))
            .await?;
        let read = SqlxSqliteConnector::from_sqlx_sqlite_pool(read_pool);
        let fast = |statements| fast::FastReads::new(file, config.busy_timeout, statements);
        Self::start(
            config,
            read,
            Some(fast),
            writer::Engine::Sqlite { db: direct, claim },
            last_seq,
        )
    }

    /// PostgreSQL: several instances may serve one database. Migrations run under a
    /// session advisory lock (instances starting together migrate one after the other);
    /// the writer is one connection whose every group takes the events lock
    /// (`writer::EVENTS_LOCK`); live events come from the event table (`tail.rs`).
    async fn open_postgres(
        config: &StoreConfig,
        options: PgConnectOptions,
    ) -> Result<Self, StoreError> {
        {
            let pool = PgPoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let db = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
            db.execute_unprepared(MIGRATION_LOCK).await?;
            let migrated = async {
                Migrator::up(&db, None).await?;
                environments::register_existing(&db, &config.production).await
            }
            .await;
            let unlocked = db.execute_unprepared(MIGRATION_UNLOCK).await;
            migrated?;
            unlocked?;
            db.close().await?;
        }
        let write_pool = PgPoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let read_pool = PgPoolOptions::new()
            // The readers, the tail's listener and the lane locks' connection.
            .max_connections(Ord::max(config.readers, 1) + 2)
            .connect_with(options)
            .await?;
        let read = SqlxPostgresConnector::from_sqlx_postgres_pool(read_pool);
        let last_seq = last_seq_in(&read).await?;
        Self::start(
            config,
            read,
            None::<fn(Arc<AtomicU64>) -> fast::FastReads>,
            writer::Engine::Postgres(SqlxPostgresConnector::from_sqlx_postgres_pool(write_pool)),
            last_seq,
        )
    }

    /// Starts the writer (and on PostgreSQL the tail) over a migrated database.
    fn start(
        config: &StoreConfig,
        mut read: DatabaseConnection,
        fast: Option<impl FnOnce(Arc<AtomicU64>) -> fast::FastReads>,
        engine: writer::Engine,
        last_seq: i64,
    ) -> Result<Self, StoreError> {
        // Cloned before the callback is set, so that its statements are not counted.
        let quiet_read = read.clone();
        let read_statements = Arc::new(AtomicU64::new(0));
        let counter = read_statements.clone();
        read.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let fast = fast.map(|open| open(read_statements.clone()));
        let hub = broadcast::channel(config.live_buffer.max(1)).0;
        let deadlines = Arc::new(tokio::sync::Notify::new());
        let outbox = Arc::new(tokio::sync::Notify::new());
        let generation = Arc::new(AtomicU64::new(0));
        let publish = match &engine {
            writer::Engine::Sqlite { .. } => writer::Publish::Hub {
                hub: hub.clone(),
                last: last_seq,
            },
            writer::Engine::Postgres(_) => {
                let committed = Arc::new(tokio::sync::Notify::new());
                let stop =
                    tail::spawn(quiet_read.clone(), hub.clone(), committed.clone(), last_seq);
                writer::Publish::Tail {
                    committed,
                    _stop: stop,
                }
            }
        };
        let writes = writer::spawn(
            engine,
            publish,
            Arc::new(config.production.clone()),
            writer::Wake {
                deadlines: deadlines.clone(),
                outbox: outbox.clone(),
                generation: generation.clone(),
            },
            config.retry,
        )
        .map_err(|err| StoreError::Corrupt(format!("cannot start the writer: {err}")))?;
        let lanes = (read.get_database_backend() == DbBackend::Postgres).then(|| {
            Arc::new(lanes::LaneLocks::new(
                read.get_postgres_connection_pool().clone(),
            ))
        });
        Ok(Self {
            read,
            writes,
            hub,
            read_statements,
            quiet_read,
            deadlines,
            outbox,
            fast,
            known: Arc::default(),
            generation,
            lanes,
        })
    }

    /// Whether this store is on PostgreSQL, where other instances may write too.
    pub fn is_shared(&self) -> bool {
        self.read.get_database_backend() == DbBackend::Postgres
    }

    /// How many write groups this store has committed since it was opened. Every write
    /// goes through this store's writer, so while the number stays the same, so does
    /// everything stored; it moves on before the writes of a group are answered.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many SQL statements the readers have run since the store was opened.
    pub fn read_statements(&self) -> u64 {
        self.read_statements.load(Ordering::Relaxed)
    }

    /// Answers once the database does.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read.execute_unprepared("SELECT 1").await?;
        Ok(())
    }

    /// Closes the readers' pool, waiting for connections in use to come back. The writer
    /// finishes the writes queued and closes its connection when the last `Store` clone
    /// is dropped.
    pub async fn close(self) -> Result<(), StoreError> {
        if let Some(lanes) = &self.lanes {
            lanes.close().await;
        }
        self.read.close().await?;
        Ok(())
    }

    /// Records a new deployment and its CREATED event in one transaction.
    ///
    /// With an idempotency key that was used before: the same request gets the original
    /// deployment (as it is now) and its CREATED event, and nothing is written; another
    /// request gets `IdempotencyConflict`. The check runs inside the write transaction,
    /// so racing retries cannot both create.
    #[tracing::instrument(skip_all, fields(service = new.service(), environment = new.environment()))]
    pub async fn create(&self, new: NewDeployment) -> Result<Written, StoreError> {
        self.submit(writer::Write::Create(new)).await
    }

    /// Applies a lifecycle action: in one transaction, reads the deployment, lets the domain
    /// decide, compare-and-sets the status and appends the event. Any failure rolls back both.
    #[tracing::instrument(skip_all, fields(%id, action = %command.action()))]
    pub async fn transition(
        &self,
        id: Uuid,
        command: &ActionCommand,
    ) -> Result<Written, StoreError> {
        self.submit(writer::Write::Transition(id, command.clone()))
            .await
    }

    /// Queues a write for the writer task and waits for its outcome. The write goes on
    /// even if this future is dropped: a caller that leaves cannot cut a write between
    /// its commit and its publication.
    async fn submit(&self, write: writer::Write) -> Result<Written, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writes
            .send(writer::Job {
                write,
                reply: reply.into(),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// The sequence number of the latest committed event (0 before the first).
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        last_seq_in(&self.read).await
    }

    /// Matching events as they commit, each once, in commit order. With `after`, first
    /// every matching event after that sequence number from the database, then live ones.
    ///
    /// The receiver is subscribed before anything is read, so an event committed during
    /// the replay is seen either by the replay or live, and `cursor` (the highest sequence
    /// number accounted for) drops the copy. A subscriber that falls more than
    /// `live_buffer` events behind is caught up from the database the same way: never
    /// skipped, and never holding more than the shared buffer in memory.
    pub async fn follow(
        &self,
        filter: EventFilter,
        after: Option<i64>,
    ) -> Result<impl Stream<Item = Result<StoredEvent, StoreError>> + Send + 'static, StoreError>
    {
        Ok(self.follow_from(filter, after).await?.1)
    }

    /// [`follow`](Self::follow), also telling the sequence number it starts after: `after`
    /// itself, or without it the latest event committed when it began.
    pub async fn follow_from(
        &self,
        filter: EventFilter,
        after: Option<i64>,
    ) -> Result<
        (
            i64,
            impl Stream<Item = Result<StoredEvent, StoreError>> + Send + 'static,
        ),
        StoreError,
    > {
        let mut live = self.hub.subscribe();
        let mut cursor = match after {
            Some(seq) => seq,
            // Without `after`, the subscription starts after the latest committed event.
            None => self.last_seq().await?,
        };
        let start = cursor;
        let store = self.clone();
        let mut replay = after.is_some();
        let events = async_stream::try_stream! {
            loop {
                if replay {
                    // Everything up to the high-water mark is in the database now; what
                    // commits later is in the live buffer, which was subscribed first.
                    let high_water = store.last_seq().await?;
                    loop {
                        let page = store.event_page(&filter, REPLAY_PAGE, Some(cursor)).await?;
                        for stored in page.items {
                            cursor = stored.seq;
                            yield stored;
                        }
                        if !page.has_next {
                            break;
                        }
                    }
                    cursor = Ord::max(cursor, high_water);
                    replay = false;
                }
                match live.recv().await {
                    Ok(live) if live.stored.seq <= cursor => {}
                    Ok(live) if live.after > cursor => {
                        // An event was committed after the cursor without coming live
                        // here. Take it, and this one, from the database.
                        tracing::warn!(
                            cursor,
                            after = live.after,
                            seq = live.stored.seq,
                            "gap in live events; replaying"
                        );
                        replay = true;
                    }
                    Ok(live) => {
                        cursor = live.stored.seq;
                        if filter.matches(&live.stored.event) {
                            yield live.stored.clone();
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, cursor, "subscriber fell behind; replaying");
                        replay = true;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        };
        Ok((start, events))
    }

    pub async fn deployment(&self, id: Uuid) -> Result<Option<Deployment>, StoreError> {
        deployment::Entity::find_by_id(id.to_string())
            .one(&self.read)
            .await?
            .map(rows::deployment)
            .transpose()
    }

    /// The deployments with these ids, in one statement. Unknown ids are absent.
    pub async fn deployments_by_ids(
        &self,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Deployment>, StoreError> {
        deployment::Entity::find()
            .filter(deployment::Column::Id.is_in(ids.iter().map(Uuid::to_string)))
            .all(&self.read)
            .await?
            .into_iter()
            .map(|row| rows::deployment(row).map(|d| (d.id, d)))
            .collect()
    }

    /// Newest first: up to `first` deployments after `after`, in one statement.
    #[tracing::instrument(skip(self))]
    pub async fn deployment_page(
        &self,
        filter: &DeploymentFilter,
        first: u64,
        after: Option<DeploymentKey>,
    ) -> Result<Page<Deployment>, StoreError> {
        let (sql, params) = page_sql(filter, first, after);
        let found = match &self.fast {
            Some(fast) => fast.deployments(sql, params).await?,
            None => self
                .read
                .query_all_raw(sql::statement(self.backend(), &sql, params))
                .await?
                .iter()
                .map(|row| rows::deployment(deployment::Model::from_query_result(row, "")?))
                .collect::<Result<_, _>>()?,
        };
        page(found, first, Ok)
    }

    /// How many deployments match the filter, all pages together.
    pub async fn count_deployments(&self, filter: &DeploymentFilter) -> Result<u64, StoreError> {
        let (sql, params) = filter_sql("SELECT COUNT(*) AS n FROM deployments".into(), filter);
        match &self.fast {
            Some(fast) => fast.count(sql, params).await,
            None => {
                let row = self
                    .read
                    .query_one_raw(sql::statement(self.backend(), &sql, params))
                    .await?;
                let n: i64 = match row {
                    Some(row) => row.try_get("", "n")?,
                    None => 0,
                };
                u64::try_from(n).map_err(|_| StoreError::Corrupt("a negative count".into()))
            }
        }
    }

    /// Every event of these deployments, oldest first, in one statement.
    pub async fn events_of(
        &self,
        deployment_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<StoredEvent>>, StoreError> {
        let ids: Vec<String> = deployment_ids.iter().map(Uuid::to_string).collect();
        let events = match &self.fast {
            Some(fast) => fast.events_of(ids).await?,
            None if ids.is_empty() => Vec::new(),
            None => event::Entity::find()
                .filter(event::Column::DeploymentId.is_in(ids))
                .order_by_asc(event::Column::Seq)
                .all(&self.read)
                .await?
                .into_iter()
                .map(rows::event)
                .collect::<Result<_, _>>()?,
        };
        let mut by_deployment: HashMap<Uuid, Vec<StoredEvent>> = HashMap::new();
        for stored in events {
            by_deployment
                .entry(stored.event.deployment_id)
                .or_default()
                .push(stored);
        }
        Ok(by_deployment)
    }

    fn backend(&self) -> DbBackend {
        self.read.get_database_backend()
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        event::Entity::find()
            .filter(event::Column::Id.eq(id.to_string()))
            .one(&self.read)
            .await?
            .map(rows::event)
            .transpose()
    }

    /// The events with these sequence numbers, in one statement.
    pub async fn events_by_seqs(&self, seqs: &[i64]) -> Result<Vec<StoredEvent>, StoreError> {
        event::Entity::find()
            .filter(event::Column::Seq.is_in(seqs.iter().copied()))
            .all(&self.read)
            .await?
            .into_iter()
            .map(rows::event)
            .collect()
    }

    /// Whether an event with this sequence number exists.
    pub async fn event_exists(&self, seq: i64) -> Result<bool, StoreError> {
        Ok(event::Entity::find_by_id(seq).count(&self.read).await? > 0)
    }

    /// Oldest first: up to `first` events after sequence number `after`, in one statement.
    #[tracing::instrument(skip(self))]
    pub async fn event_page(
        &self,
        filter: &EventFilter,
        first: u64,
        after: Option<i64>,
    ) -> Result<Page<StoredEvent>, StoreError> {
        let mut query = event::Entity::find().filter(event_condition(filter));
        if let Some(seq) = after {
            query = query.filter(event::Column::Seq.gt(seq));
        }
        let rows = query
            .order_by_asc(event::Column::Seq)
            .limit(first + 1)
            .all(&self.read)
            .await?;
        page(rows, first, rows::event)
    }
}

/// Taken (a session advisory lock) while an instance migrates a PostgreSQL database.
const MIGRATION_LOCK: &str = "SELECT pg_advisory_lock(7285561927120155421)";
const MIGRATION_UNLOCK: &str = "SELECT pg_advisory_unlock(7285561927120155421)";

/// How to connect, by the URL's scheme.
enum Connect {
    Sqlite(Box<SqliteConnectOptions>),
    Postgres(Box<PgConnectOptions>),
}

fn connect_options(config: &StoreConfig) -> Result<Connect, StoreError> {
    let url = config.database_url.trim();
    if let Some((scheme, _)) = url.split_once("://") {
        match scheme {
            "sqlite" => {}
            "postgres" | "postgresql" => {
                return Ok(Connect::Postgres(Box::new(PgConnectOptions::from_str(url)?)))
            }
            // Only the scheme: the rest of a URL may hold a password.
            _ => {
                return Err(StoreError::Open(sqlx::Error::Configuration(
                    format!(
                        "{scheme}:// databases are not supported; give a postgres:// URL, a sqlite: URL or a file path"
                    )
                    .into(),
                )))
            }
        }
    }
    let options = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url)?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    // Pragmas are per connection; sqlx applies these to every connection it opens.
    // synchronous=FULL in WAL mode: a commit is on disk before it is acknowledged.
    Ok(Connect::Sqlite(Box::new(
        options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(config.busy_timeout)
            // Reads map the file instead of copying each page out of the OS cache with a
            // system call; writes still go through the WAL, fsynced (synchronous=FULL).
            .pragma("mmap_size", MMAP_BYTES.to_string())
            // 16 MiB of page cache per connection (the default is 2 MiB).
            .pragma("cache_size", "-16384"),
    )))
}

/// The sequence number of the latest committed event in `conn` (0 before the first).
async fn last_seq_in(conn: &impl ConnectionTrait) -> Result<i64, StoreError> {
    let last = event::Entity::find()
        .select_only()
        .column_as(event::Column::Seq.max(), "last")
        .into_tuple::<Option<i64>>()
        .one(conn)
        .await?;
    Ok(last.flatten().unwrap_or(0))
}

pub(crate) fn immediate() -> TransactionOptions {
    TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    }
}

/// Server time, truncated to what is stored (milliseconds).
pub(crate) fn now() -> Timestamp {
    let ms = chrono::Utc::now().timestamp_millis();
    Timestamp::from_timestamp_millis(ms).unwrap_or_default()
}

/// The statement of `deployment_page`, in SQL both engines read (`sql.rs`).
fn page_sql(
    filter: &DeploymentFilter,
    first: u64,
    after: Option<DeploymentKey>,
) -> (String, Vec<sea_orm::Value>) {
    let (mut sql, mut params) = filter_sql(
        format!("SELECT {} FROM deployments", statements::DEPLOYMENT_COLUMNS),
        filter,
    );
    if let Some(key) = after {
        sql.push_str(" AND (created_at, id) < (?, ?)");
        params.push(key.created_at_ms.into());
        params.push(key.id.to_string().into());
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    params.push(i64::try_from(first + 1).unwrap_or(i64::MAX).into());
    (sql, params)
}

/// `select` over the deployments, with the filter's conditions (all must hold) as its
/// WHERE clause and their values as parameters.
fn filter_sql(select: String, filter: &DeploymentFilter) -> (String, Vec<sea_orm::Value>) {
    let mut sql = select + " WHERE TRUE";
    let mut params: Vec<sea_orm::Value> = Vec::new();
    if let Some(service) = &filter.service {
        sql.push_str(" AND service = ?");
        params.push(service.trim().into());
    }
    if let Some(environment) = &filter.environment {
        sql.push_str(" AND environment = ?");
        params.push(environment.trim().into());
    }
    if let Some(statuses) = &filter.statuses {
        if statuses.is_empty() {
            sql.push_str(" AND FALSE");
        } else {
            sql.push_str(&format!(
                " AND status IN ({})",
                vec!["?"; statuses.len()].join(", ")
            ));
            params.extend(statuses.iter().map(|s| s.as_str().into()));
        }
    }
    (sql, params)
}

fn event_condition(filter: &EventFilter) -> Condition {
    let mut cond = Condition::all();
    if let Some(id) = filter.deployment_id {
        cond = cond.add(event::Column::DeploymentId.eq(id.to_string()));
    }
    if let Some(service) = &filter.service {
        cond = cond.add(event::Column::Service.eq(service.trim()));
    }
    if let Some(environment) = &filter.environment {
        cond = cond.add(event::Column::Environment.eq(environment.trim()));
    }
    if let Some(kinds) = &filter.kinds {
        cond = cond.add(any_of(
            event::Column::Kind,
            kinds.iter().map(|k| k.as_str()),
        ));
    }
    cond
}

/// `column IN (names)`; with no names, a condition that holds for no row.
fn any_of<'a>(column: impl ColumnTrait, names: impl Iterator<Item = &'a str>) -> Condition {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        Expr::value(false).into_condition()
    } else {
        column.is_in(names).into_condition()
    }
}

/// Converts the rows of a `first + 1` query into a page.
fn page<R, T>(
    mut rows: Vec<R>,
    first: u64,
    convert: impl Fn(R) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let has_next = rows.len() as u64 > first;
    rows.truncate(first as usize);
    Ok(Page {
        items: rows.into_iter().map(convert).collect::<Result<_, _>>()?,
        has_next,
    })
}
