//! Freeze windows: created and removed through the writer, read for the API and, inside
//! a start's write transaction, for the FROZEN guard. The domain (`domain::freeze`)
//! decides their periods; this module only stores them.

use sea_orm::sea_query::Expr;
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::statements::{self, Bind, Columns, Run};
use super::{environments, now, writer, Store, StoreError};
use crate::domain::freeze::{FreezeRemoval, FreezeWindow, NewFreezeWindow, MAX_FREEZE_WINDOWS};
use crate::domain::ProductionEnvironments;

pub(super) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "freeze_windows")]
    pub struct Model {
        /// UUIDv7.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Null: every environment.
        pub environment: Option<String>,
        pub reason: String,
        /// Milliseconds since the Unix epoch, like every time column.
        pub starts_at: Option<i64>,
        pub ends_at: Option<i64>,
        pub cron: Option<String>,
        pub duration_minutes: Option<i64>,
        pub time_zone: String,
        pub created_by: String,
        pub created_at: i64,
        pub removed_by: Option<String>,
        pub removed_at: Option<i64>,
        pub removal_note: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Why a freeze-window write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FreezeWindowError {
    #[error("no freeze window has id {0}")]
    NotFound(Uuid),
    #[error("freeze window {0} was already removed")]
    AlreadyRemoved(Uuid),
    #[error("at most {MAX_FREEZE_WINDOWS} freeze windows may exist at once (not removed); remove one first")]
    TooMany,
}

impl Store {
    /// Records a new freeze window (registering its environment, if it names one).
    #[tracing::instrument(skip_all)]
    pub async fn create_freeze_window(
        &self,
        new: NewFreezeWindow,
    ) -> Result<FreezeWindow, StoreError> {
        self.freeze_write(writer::Write::CreateFreezeWindow(new))
            .await
    }

    /// Marks a freeze window removed, with who, when and why.
    #[tracing::instrument(skip_all, fields(id = %id))]
    pub async fn remove_freeze_window(
        &self,
        id: Uuid,
        removal: FreezeRemoval,
    ) -> Result<FreezeWindow, StoreError> {
        self.freeze_write(writer::Write::RemoveFreezeWindow(id, removal))
            .await
    }

    async fn freeze_write(&self, write: writer::Write) -> Result<FreezeWindow, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writes
            .send(writer::Job {
                write,
                reply: writer::Reply::FreezeWindow(reply),
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome.await.map_err(|_| StoreError::Closed)?
    }

    /// The windows not removed, oldest first; with `environment`, that environment's
    /// (trimmed, exact) and the global ones.
    pub async fn freeze_windows(
        &self,
        environment: Option<&str>,
    ) -> Result<Vec<FreezeWindow>, StoreError> {
        in_force(&self.read, environment).await
    }

    /// One window, removed or not.
    pub async fn freeze_window(&self, id: Uuid) -> Result<Option<FreezeWindow>, StoreError> {
        entity::Entity::find_by_id(id.to_string())
            .one(&self.read)
            .await?
            .map(from_row)
            .transpose()
    }
}

/// The windows not removed, oldest first; with `environment`, those that cover it.
pub(super) async fn in_force(
    db: &impl Run,
    environment: Option<&str>,
) -> Result<Vec<FreezeWindow>, StoreError> {
    let rows = match environment {
        Some(environment) => {
            db.rows(
                &statements::FREEZE_WINDOWS_OF,
                &[Bind::Text(environment.trim())],
                None,
                model,
            )
            .await?
        }
        None => {
            db.rows(&statements::FREEZE_WINDOWS, &[], None, model)
                .await?
        }
    };
    rows.into_iter().map(from_row).collect()
}

/// Inside the writer: checks the limit, registers the environment, inserts.
pub(super) async fn create(
    txn: &impl Run,
    new: &NewFreezeWindow,
    production: &ProductionEnvironments,
) -> Result<FreezeWindow, StoreError> {
    let live = entity::Entity::find()
        .filter(entity::Column::RemovedAt.is_null())
        .count(txn)
        .await?;
    if live >= MAX_FREEZE_WINDOWS {
        return Err(StoreError::FreezeWindow(FreezeWindowError::TooMany));
    }
    if let Some(environment) = new.environment.as_deref() {
        environments::registered(txn, environment, production).await?;
    }
    let window = new.clone().into_window(Uuid::now_v7(), now());
    entity::Entity::insert(row(&window))
        .exec_without_returning(txn)
        .await?;
    Ok(window)
}

/// Inside the writer: reads the window, lets the domain decide, compare-and-sets.
pub(super) async fn remove(
    txn: &impl ConnectionTrait,
    id: Uuid,
    removal: &FreezeRemoval,
) -> Result<FreezeWindow, StoreError> {
    let current = entity::Entity::find_by_id(id.to_string())
        .one(txn)
        .await?
        .map(from_row)
        .transpose()?
        .ok_or(StoreError::FreezeWindow(FreezeWindowError::NotFound(id)))?;
    let next = current
        .remove(removal, now())
        .map_err(|_| StoreError::FreezeWindow(FreezeWindowError::AlreadyRemoved(id)))?;
    let updated = entity::Entity::update_many()
        .col_expr(
            entity::Column::RemovedBy,
            Expr::value(next.removed_by.clone()),
        )
        .col_expr(
            entity::Column::RemovedAt,
            Expr::value(next.removed_at.map(|t| t.timestamp_millis())),
        )
        .col_expr(
            entity::Column::RemovalNote,
            Expr::value(next.removal_note.clone()),
        )
        .filter(entity::Column::Id.eq(id.to_string()))
        .filter(entity::Column::RemovedAt.is_null())
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(StoreError::FreezeWindow(FreezeWindowError::AlreadyRemoved(
            id,
        )));
    }
    Ok(next)
}

fn row(w: &FreezeWindow) -> entity::ActiveModel {
    entity::ActiveModel {
        id: Set(w.id.to_string()),
        environment: Set(w.environment.clone()),
        reason: Set(w.reason.clone()),
        starts_at: Set(w.starts_at.map(|t| t.timestamp_millis())),
        ends_at: Set(w.ends_at.map(|t| t.timestamp_millis())),
        cron: Set(w.cron.clone()),
        duration_minutes: Set(w.duration_minutes.map(i64::from)),
        time_zone: Set(w.time_zone.clone()),
        created_by: Set(w.created_by.clone()),
        created_at: Set(w.created_at.timestamp_millis()),
        removed_by: Set(w.removed_by.clone()),
        removed_at: Set(w.removed_at.map(|t| t.timestamp_millis())),
        removal_note: Set(w.removal_note.clone()),
    }
}

/// A `freeze_windows` row, its columns in `statements::FREEZE_WINDOWS` order.
fn model(row: &dyn Columns) -> Result<entity::Model, StoreError> {
    Ok(entity::Model {
        id: row.text(0)?,
        environment: row.maybe_text(1)?,
        reason: row.text(2)?,
        starts_at: row.maybe_int(3)?,
        ends_at: row.maybe_int(4)?,
        cron: row.maybe_text(5)?,
        duration_minutes: row.maybe_int(6)?,
        time_zone: row.text(7)?,
        created_by: row.text(8)?,
        created_at: row.int(9)?,
        removed_by: row.maybe_text(10)?,
        removed_at: row.maybe_int(11)?,
        removal_note: row.maybe_text(12)?,
    })
}

fn from_row(row: entity::Model) -> Result<FreezeWindow, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("{what} of freeze window {}", row.id));
    let time = |ms: i64, what: &str| {
        chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(what))
    };
    Ok(FreezeWindow {
        id: Uuid::parse_str(&row.id).map_err(|_| corrupt("id"))?,
        starts_at: row.starts_at.map(|t| time(t, "start")).transpose()?,
        ends_at: row.ends_at.map(|t| time(t, "end")).transpose()?,
        created_at: time(row.created_at, "creation time")?,
        removed_at: row
            .removed_at
            .map(|t| time(t, "removal time"))
            .transpose()?,
        environment: row.environment,
        reason: row.reason,
        cron: row.cron,
        duration_minutes: row
            .duration_minutes
            .map(|m| {
                i32::try_from(m)
                    .map_err(|_| StoreError::Corrupt("a freeze window's duration".into()))
            })
            .transpose()?,
        time_zone: row.time_zone,
        created_by: row.created_by,
        removed_by: row.removed_by,
        removal_note: row.removal_note,
    })
}
