//! Freeze windows over GraphQL: the `FreezeWindow` node, `FreezePeriod`, their inputs,
//! and the resolvers `query.rs`, `mutation.rs` and `Environment` delegate to.

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, ID};

use super::error::ApiError;
use super::store;
use super::types::{parse_id, DateTime};
use crate::domain::freeze::{
    self, FreezePeriod, FreezeRemoval, FreezeWindow, FreezeWindowRequest, NewFreezeWindow,
};
use crate::store::now;

/// A period in which starting deployments is refused: one-off (startsAt..endsAt) or recurring (cron, durationMinutes, timeZone).
#[derive(Clone)]
pub struct FreezeWindowObject(pub Arc<FreezeWindow>);

impl From<FreezeWindow> for FreezeWindowObject {
    fn from(w: FreezeWindow) -> Self {
        Self(Arc::new(w))
    }
}

/// A period in which starting deployments is refused: one-off (startsAt..endsAt) or recurring (cron, durationMinutes, timeZone).
#[Object(name = "FreezeWindow")]
impl FreezeWindowObject {
    pub async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Null: every environment.
    async fn environment(&self) -> Option<&str> {
        self.0.environment.as_deref()
    }
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    async fn starts_at(&self) -> Option<DateTime> {
        self.0.starts_at.map(DateTime)
    }
    async fn ends_at(&self) -> Option<DateTime> {
        self.0.ends_at.map(DateTime)
    }
    /// Five fields (minute hour day-of-month month day-of-week), read in timeZone: when each period starts.
    async fn cron(&self) -> Option<&str> {
        self.0.cron.as_deref()
    }
    async fn duration_minutes(&self) -> Option<i32> {
        self.0.duration_minutes
    }
    /// IANA name, e.g. Europe/Berlin. Default UTC.
    async fn time_zone(&self) -> &str {
        &self.0.time_zone
    }
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.created_at)
    }
    async fn removed_by(&self) -> Option<&str> {
        self.0.removed_by.as_deref()
    }
    async fn removed_at(&self) -> Option<DateTime> {
        self.0.removed_at.map(DateTime)
    }
    async fn removal_note(&self) -> Option<&str> {
        self.0.removal_note.as_deref()
    }
    /// The period in force at `at` (default now), else the next one; null when none is to come or the window was removed.
    async fn period(&self, ctx: &Context<'_>, at: Option<DateTime>) -> Option<FreezePeriodObject> {
        let at = match at {
            Some(at) => at.0,
            None => {
                super::volatile(ctx);
                now()
            }
        };
        self.0.period(at).map(|period| FreezePeriodObject {
            period,
            window: self.clone(),
        })
    }
}

pub struct FreezePeriodObject {
    period: FreezePeriod,
    window: FreezeWindowObject,
}

#[Object(name = "FreezePeriod")]
impl FreezePeriodObject {
    async fn starts_at(&self) -> DateTime {
        DateTime(self.period.starts_at)
    }
    async fn ends_at(&self) -> DateTime {
        DateTime(self.period.ends_at)
    }
    /// Whether it is in force at the time asked about.
    async fn active(&self) -> bool {
        self.period.active
    }
    async fn window(&self) -> &FreezeWindowObject {
        &self.window
    }
}

#[derive(InputObject)]
pub struct CreateFreezeWindowInput {
    /// Null: every environment.
    pub environment: Option<String>,
    pub reason: String,
    pub actor: String,
    pub starts_at: Option<DateTime>,
    pub ends_at: Option<DateTime>,
    pub cron: Option<String>,
    pub duration_minutes: Option<i32>,
    pub time_zone: Option<String>,
}

#[derive(InputObject)]
pub struct RemoveFreezeWindowInput {
    pub id: ID,
    pub actor: String,
    pub note: String,
}

pub async fn create(
    ctx: &Context<'_>,
    input: CreateFreezeWindowInput,
) -> Result<FreezeWindowObject, ApiError> {
    let new = NewFreezeWindow::validate(&FreezeWindowRequest {
        environment: input.environment,
        reason: input.reason,
        actor: input.actor,
        starts_at: input.starts_at.map(millis),
        ends_at: input.ends_at.map(millis),
        cron: input.cron,
        duration_minutes: input.duration_minutes,
        time_zone: input.time_zone,
    })
    .map_err(|e| ApiError::invalid("input", e))?;
    Ok(store(ctx)?.create_freeze_window(new).await?.into())
}

pub async fn remove(
    ctx: &Context<'_>,
    input: RemoveFreezeWindowInput,
) -> Result<FreezeWindowObject, ApiError> {
    let id = parse_id("input.id", &input.id);
    let removal = FreezeRemoval::validate(&input.actor, &input.note)
        .map_err(|e| ApiError::invalid("input", e));
    let (id, removal) = match (id, removal) {
        (Ok(id), Ok(removal)) => (id, removal),
        (id, removal) => {
            let problems = [id.err(), removal.err()]
                .into_iter()
                .flatten()
                .flat_map(ApiError::into_fields)
                .collect();
            return Err(ApiError::BadUserInput(problems));
        }
    };
    Ok(store(ctx)?.remove_freeze_window(id, removal).await?.into())
}

/// Not removed, oldest first; with `environment`, that environment's and the global ones.
pub async fn list(
    ctx: &Context<'_>,
    environment: Option<&str>,
) -> Result<Vec<FreezeWindowObject>, ApiError> {
    Ok(store(ctx)?
        .freeze_windows(environment)
        .await?
        .into_iter()
        .map(FreezeWindowObject::from)
        .collect())
}

/// The windows covering `environment` (its own and the global ones), not removed, oldest
/// first: through the loader, so that a list of environments reads them once.
pub async fn covering(
    ctx: &Context<'_>,
    environment: &str,
) -> Result<Arc<Vec<FreezeWindow>>, ApiError> {
    let loader = ctx
        .data::<async_graphql::dataloader::DataLoader<FreezeWindowsLoader>>()
        .map_err(|_| ApiError::Internal)?;
    Ok(loader
        .load_one(environment.to_owned())
        .await?
        .unwrap_or_default())
}

/// `Environment.freezeWindows`.
pub async fn of_environment(
    ctx: &Context<'_>,
    environment: &str,
) -> Result<Vec<FreezeWindowObject>, ApiError> {
    Ok(covering(ctx, environment)
        .await?
        .iter()
        .cloned()
        .map(FreezeWindowObject::from)
        .collect())
}

/// The period in force now in `environment` that ends last, with its window.
pub async fn active(
    ctx: &Context<'_>,
    environment: &str,
) -> Result<Option<FreezePeriodObject>, ApiError> {
    let windows = covering(ctx, environment).await?;
    super::volatile(ctx);
    Ok(
        freeze::active_period(&windows, environment, now()).map(|(w, period)| FreezePeriodObject {
            period,
            window: FreezeWindowObject::from(w.clone()),
        }),
    )
}

/// Times are stored to the millisecond: a window answers what it will read back.
fn millis(t: DateTime) -> crate::domain::Timestamp {
    crate::domain::Timestamp::from_timestamp_millis(t.0.timestamp_millis()).unwrap_or(t.0)
}

/// `Deployment.blockers`: the windows not removed, read once for a whole page (one
/// statement), each environment given those that cover it.
pub struct FreezeWindowsLoader(pub crate::store::Store);

impl async_graphql::dataloader::Loader<String> for FreezeWindowsLoader {
    type Value = Arc<Vec<FreezeWindow>>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, Self::Value>, Self::Error> {
        let all = self.0.freeze_windows(None).await?;
        Ok(keys
            .iter()
            .map(|env| {
                let covering = all.iter().filter(|w| w.covers(env)).cloned().collect();
                (env.clone(), Arc::new(covering))
            })
            .collect())
    }
}

/// The FROZEN blocker of a start in `environment` now, if a freeze is in force.
pub async fn frozen_blocker(
    ctx: &Context<'_>,
    environment: &str,
) -> Result<Option<crate::domain::Blocker>, ApiError> {
    let windows = covering(ctx, environment).await?;
    super::volatile(ctx);
    Ok(freeze::frozen_blocker(&windows, environment, now()))
}
