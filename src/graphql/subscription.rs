use async_graphql::{Context, Subscription};
use futures_util::{Stream, StreamExt};

use super::error::ApiError;
use super::inline::Inline;
use super::types::{DeploymentEventFilter, EventObject};
use super::{cursor, store, Stopping};

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Events matching the filter, each once, in commit order. With `after`: every matching event after that cursor first, then live, with no gap and no duplicate.
    async fn deployment_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeploymentEventFilter>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<Inline<EventObject>, ApiError>>, ApiError> {
        let store = store(ctx)?;
        let filter = filter.unwrap_or_default().into_store("filter")?;
        let after = match after {
            Some(c) => {
                let seq = cursor::parse_event("after", &c)?;
                if !store.event_exists(seq).await? {
                    return Err(ApiError::bad_input("after", "names no event"));
                }
                Some(seq)
            }
            None => None,
        };
        let events = store.follow(filter, after).await?;
        let stopping = ctx.data_opt::<Stopping>().cloned();
        let until_stop = async move {
            match stopping {
                Some(stopping) => stopping.wait().await,
                None => std::future::pending().await,
            }
        };
        // Ending the stream on a stop makes the transport send `complete`.
        let events = events.take_until(until_stop).map(|e| {
            e.map(|stored| Inline(EventObject::new(stored)))
                .map_err(ApiError::from)
        });
        // The guard lives inside the stream: counted from its first poll until it ends
        // or is dropped (the client unsubscribed or went away).
        Ok(async_stream::stream! {
            let _live = crate::metrics::LiveSubscriber::start();
            for await event in events {
                yield event;
            }
        })
    }
}
