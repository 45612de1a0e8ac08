use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::{Context, Subscription};
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

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
        let tap = ctx.data_opt::<Arc<Tap>>().cloned();
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
        let resume = tap.as_ref().and_then(|tap| tap.resume_after);
        let live_only = after.is_none() && resume.is_none();
        let (start, events) = store.follow_from(filter, resume.or(after)).await?;
        let stopping = ctx.data_opt::<Stopping>().cloned();
        let until_stop = async move {
            match stopping {
                Some(stopping) => stopping.wait().await,
                None => std::future::pending().await,
            }
        };
        // Ending the stream on a stop makes the transport send `complete`.
        let events = events.take_until(until_stop);
        // Counted in the live-subscribers gauge from its first poll until it ends or is
        // dropped (the client unsubscribed or went away). A transport that shares this
        // stream counts its own subscribers instead.
        let counted = tap.is_none();
        if let Some(tap) = &tap {
            tap.started(Started {
                start,
                shareable: live_only,
                operation_name: ctx.query_env.operation_name.clone(),
            });
        }
        Ok(async_stream::stream! {
            let _live = counted.then(crate::metrics::LiveSubscriber::start);
            for await event in events {
                match event {
                    Ok(stored) => {
                        if let Some(tap) = &tap {
                            tap.last.store(stored.seq, Ordering::Release);
                        }
                        yield Ok(Inline(EventObject::new(stored)));
                    }
                    Err(err) => yield Err(ApiError::from(err)),
                }
            }
        })
    }
}

/// What a transport that runs one subscription for many clients (the WebSocket
/// endpoint's shared feeds) asks of the resolver and learns from it. Put in a request's
/// data as an `Arc<Tap>`; a stream with a tap leaves counting its subscribers to the
/// transport.
///
/// A stream is shareable only when it is live-only (no `after`): a client that joins it
/// later is owed exactly what a stream of its own would give, the events committed from
/// then on. The resolver says whether it is, and after which event it started; it also
/// notes the sequence number of each event it yields, so that every response the
/// transport gets can be placed in commit order. A client that fell behind a shared
/// stream is resumed on a stream of its own after the last event it was given.
#[derive(Debug, Default)]
pub struct Tap {
    resume_after: Option<i64>,
    last: AtomicI64,
    started: Mutex<Option<oneshot::Sender<Started>>>,
}

/// A subscription's stream has begun: it gives every matching event after `start`.
#[derive(Debug, Clone)]
pub struct Started {
    pub start: i64,
    /// Live-only: another client subscribing now is owed the same events from here on.
    pub shareable: bool,
    /// The operation's name, as the metrics count it.
    pub operation_name: Option<String>,
}

impl Tap {
    /// A tap for a new stream, and where it tells that a subscription started (never,
    /// for a query, a mutation, or a subscription refused).
    pub fn new() -> (Self, oneshot::Receiver<Started>) {
        let (tell, told) = oneshot::channel();
        let tap = Self {
            started: Mutex::new(Some(tell)),
            ..Self::default()
        };
        (tap, told)
    }

    /// A tap for a stream that takes over from another after event `seq`: it replays
    /// from there (whatever `after` the request names), and tells nothing.
    pub fn resume_after(seq: i64) -> Self {
        Self {
            resume_after: Some(seq),
            ..Self::default()
        }
    }

    /// The sequence number of the event of the latest response (0 before the first).
    pub fn last(&self) -> i64 {
        self.last.load(Ordering::Acquire)
    }

    fn started(&self, started: Started) {
        let tell = self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(tell) = tell {
            self.last.store(started.start, Ordering::Release);
            let _ = tell.send(started);
        }
    }
}
