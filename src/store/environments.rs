//! Environments: registered the first time a deployment or a configuration names them
//! (inside that write's transaction), configured through the writer, and read in
//! release-train order.

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use uuid::Uuid;

use super::entity::environment;
use super::statements::{self, Bind, Columns, Run};
use super::{immediate, now, writer, Store, StoreError};
use crate::domain::{Environment, EnvironmentConfig, ProductionEnvironments};

impl Store {
    /// Every known environment, in release-train order: position, then name.
    pub async fn environments(&self) -> Result<Vec<Environment>, StoreError> {
        all_in(&self.read).await
    }

    /// The environment with this name (trimmed), if it is known.
    /// Every create reads it (its tier decides whether a risk is required), so known
    /// environments are answered from memory (`Known`).
    pub async fn environment(&self, name: &str) -> Result<Option<Environment>, StoreError> {
        let name = name.trim();
        // On PostgreSQL another instance may change an environment: read it every time.
        let shared = self.is_shared();
        let (cached, generation) = if shared {
            (None, 0)
        } else {
            self.known.get(name)
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let found = match &self.fast {
            Some(fast) => fast.environment(name.to_owned()).await?,
            None => {
                environment::Entity::find_by_id(name.to_owned())
                    .one(&self.read)
                    .await?
            }
        }
        .map(from_row)
        .transpose()?;
        if let (Some(environment), false) = (&found, shared) {
            self.known.put(environment, generation);
        }
        Ok(found)
    }

    pub async fn environment_by_id(&self, id: Uuid) -> Result<Option<Environment>, StoreError> {
        environment::Entity::find()
            .filter(environment::Column::Id.eq(id.to_string()))
            .one(&self.read)
            .await?
            .map(from_row)
            .transpose()
    }

    /// Registers the environment if it is new, then applies the configuration, in one
    /// transaction through the writer. Answers the environment as it now is.
    #[tracing::instrument(skip_all, fields(environment = config.name()))]
    pub async fn configure_environment(
        &self,
        config: EnvironmentConfig,
    ) -> Result<Environment, StoreError> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.writes
            .send(writer::Job {
                write: writer::Write::ConfigureEnvironment(config),
                reply: writer::Reply::Environment(reply),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        let configured = outcome.await.map_err(|_| StoreError::Closed)??;
        self.known.changed(&configured);
        Ok(configured)
    }
}

/// The environments this process has read, as they are stored.
///
/// An environment is registered once and then changes only through
/// `configure_environment`, which records the change here before it answers: whoever
/// configures, and whoever asks after that, reads the new settings. A read that began
/// before a change cannot put the old settings back (the generation moved on). What is
/// not known is read from the database and remembered. (This holds while one process
/// serves the database; see README, "Run it".)
#[derive(Default)]
pub(super) struct Known {
    inner: std::sync::Mutex<(u64, std::collections::HashMap<String, Environment>)>,
}

impl Known {
    /// The environment if known, and the generation to `put` a read under.
    fn get(&self, name: &str) -> (Option<Environment>, u64) {
        let inner = self.lock();
        (inner.1.get(name).cloned(), inner.0)
    }

    /// Remembers what was read, unless an environment changed since `generation`.
    fn put(&self, environment: &Environment, generation: u64) {
        let mut inner = self.lock();
        if inner.0 == generation {
            inner
                .1
                .insert(environment.name.clone(), environment.clone());
        }
    }

    /// An environment was configured: this is how it now is.
    fn changed(&self, environment: &Environment) {
        let mut inner = self.lock();
        inner.0 += 1;
        inner
            .1
            .insert(environment.name.clone(), environment.clone());
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, (u64, std::collections::HashMap<String, Environment>)> {
        // What the lock guards is consistent after any panic: each change is one insert.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The environment named `name` (trimmed), registered by use first if it is new. Runs
/// inside the caller's write transaction.
pub(super) async fn registered(
    txn: &impl Run,
    name: &str,
    production: &ProductionEnvironments,
) -> Result<Environment, StoreError> {
    let name = name.trim();
    let found = txn
        .row(&statements::ENVIRONMENT, &[Bind::Text(name)], |row| {
            model(row)
        })
        .await?;
    if let Some(row) = found {
        return from_row(row);
    }
    let environment = Environment::register(name, production, Uuid::now_v7(), now());
    environment::Entity::insert(row(&environment))
        .exec_without_returning(txn)
        .await?;
    Ok(environment)
}

/// Registers the environment if it is new, then applies the configuration.
pub(super) async fn configure(
    txn: &impl Run,
    config: &EnvironmentConfig,
    production: &ProductionEnvironments,
) -> Result<Environment, StoreError> {
    let current = registered(txn, config.name(), production).await?;
    let next = current.configure(config, now());
    environment::Entity::update(row(&next)).exec(txn).await?;
    Ok(next)
}

/// Registers, by the naming rule, every environment an existing deployment names and
/// that is not registered yet (a database from before environments existed). Idempotent.
pub(super) async fn register_existing(
    db: &DatabaseConnection,
    production: &ProductionEnvironments,
) -> Result<(), StoreError> {
    let txn = db.begin_with_options(immediate()).await?;
    // The distinct names, each found by one step down the environment index rather than
    // by a scan of every deployment: opening stays quick at millions of deployments.
    let named = txn
        .query_all_raw(super::sql::plain(
            txn.get_database_backend(),
            "WITH RECURSIVE named(name) AS ( \
               SELECT MIN(environment) FROM deployments \
               UNION ALL \
               SELECT (SELECT MIN(environment) FROM deployments WHERE environment > named.name) \
               FROM named WHERE named.name IS NOT NULL) \
             SELECT name FROM named WHERE name IS NOT NULL",
        ))
        .await?;
    for row in named {
        let name: String = row.try_get("", "name")?;
        registered(&txn, &name, production).await?;
    }
    txn.commit().await?;
    Ok(())
}

fn row(e: &Environment) -> environment::ActiveModel {
    environment::ActiveModel {
        name: Set(e.name.clone()),
        id: Set(e.id.to_string()),
        position: Set(i64::from(e.position)),
        tier: Set(e.tier.as_str().to_owned()),
        required_approvals: Set(i64::from(e.required_approvals)),
        start_timeout_seconds: Set(e.start_timeout_seconds.map(i64::from)),
        updated_by: Set(e.updated_by.clone()),
        updated_at: Set(e.updated_at.timestamp_millis()),
    }
}

/// An `environments` row, its columns in `statements::ENVIRONMENT` order.
pub(super) fn model(row: &(impl Columns + ?Sized)) -> Result<environment::Model, StoreError> {
    Ok(environment::Model {
        name: row.text(0)?,
        id: row.text(1)?,
        position: row.int(2)?,
        tier: row.text(3)?,
        required_approvals: row.int(4)?,
        start_timeout_seconds: row.maybe_int(5)?,
        updated_by: row.maybe_text(6)?,
        updated_at: row.int(7)?,
    })
}

fn from_row(row: environment::Model) -> Result<Environment, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of environment {:?}", row.name));
    Ok(Environment {
        id: Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?,
        tier: row.tier.parse().map_err(|_| corrupt("tier"))?,
        required_approvals: u8::try_from(row.required_approvals)
            .ok()
            .filter(|n| (1..=10).contains(n))
            .ok_or_else(|| corrupt("required approvals"))?,
        start_timeout_seconds: row
            .start_timeout_seconds
            .map(|s| u32::try_from(s).map_err(|_| corrupt("start timeout")))
            .transpose()?,
        updated_at: chrono::DateTime::from_timestamp_millis(row.updated_at)
            .ok_or_else(|| corrupt("update time"))?,
        position: i32::try_from(row.position).map_err(|_| corrupt("position"))?,
        updated_by: row.updated_by,
        name: row.name,
    })
}

/// Every known environment, in train order, as `conn` (a reader, or a write
/// transaction) sees them.
pub(super) async fn all_in(conn: &impl ConnectionTrait) -> Result<Vec<Environment>, StoreError> {
    environment::Entity::find()
        .order_by_asc(environment::Column::Position)
        .order_by_asc(environment::Column::Name)
        .all(conn)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}
