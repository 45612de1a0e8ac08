//! Shared feeds: one execution of a WebSocket operation for every client that sends the
//! same one, each response serialised once.
//!
//! A feed runs one operation (query text, operation name, variables, extensions) in a
//! task of its own and broadcasts each response as JSON text. Its first client is the
//! one that sent it; it receives everything, errors included. Once the resolver says the
//! stream is live-only (a subscription without `after`, see [`Tap`]), the feed is listed
//! under its operation and later clients with the same operation join it instead of
//! running their own. A joining client is owed what a stream of its own would give: the
//! events committed after it subscribed. So it reads the latest committed sequence
//! number once it listens, and skips what the feed sends up to it.
//!
//! A client that falls more than `feed_lag` responses behind leaves the feed and
//! goes on with a stream of its own, resumed after the last event it was given (the
//! store replays from there): slow clients never hold the others back, and never miss
//! an event. A feed ends when its stream ends (each client then completes) or when its
//! last client leaves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_graphql::{Data, Request, Response, Variables};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::{broadcast, oneshot, Notify};

use crate::graphql::{ShiplogSchema, Started, Tap};
use crate::store::Store;

/// One operation as a client sent it: what a feed runs, and what tells feeds apart.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Operation {
    query: String,
    operation_name: Option<String>,
    /// Variables and extensions as JSON text: the same text, the same operation.
    variables: String,
    extensions: String,
}

/// What a client's operation needs to run again on its own.
struct Spec {
    operation: Operation,
    variables: Variables,
    extensions: async_graphql::Extensions,
}

impl Spec {
    fn of(request: Request) -> Self {
        let variables = serde_json::to_string(&request.variables).unwrap_or_default();
        let extensions = serde_json::to_string(&request.extensions).unwrap_or_default();
        Self {
            operation: Operation {
                query: request.query,
                operation_name: request.operation_name,
                variables,
                extensions,
            },
            variables: request.variables,
            extensions: request.extensions,
        }
    }

    fn request(&self, tap: Arc<Tap>) -> Request {
        let mut request =
            Request::new(self.operation.query.clone()).variables(self.variables.clone());
        if let Some(name) = &self.operation.operation_name {
            request = request.operation_name(name.clone());
        }
        request.extensions = self.extensions.clone();
        request.data(tap)
    }
}

/// What a client's operation gives, as its connection writes it.
pub enum Out {
    /// A response of a shared feed, already serialised.
    Shared(Arc<str>),
    /// A response of the client's own stream.
    Own(Box<Response>),
    /// The operation is over: the connection sends `complete`.
    Done,
}

#[derive(Clone)]
enum Item {
    /// A subscription's stream began.
    Started(Arc<Started>),
    /// A response, about the event with sequence number `seq` (for a subscription).
    Next { seq: i64, text: Arc<str> },
    /// The stream ended.
    End,
}

struct Feed {
    operation: Operation,
    items: broadcast::Sender<Item>,
    clients: AtomicUsize,
    /// Told when the last client leaves.
    deserted: Notify,
    started: Mutex<Option<Arc<Started>>>,
}

/// A client's place in a feed; leaving (dropping it) may end the feed.
struct Membership(Arc<Feed>);

impl Drop for Membership {
    fn drop(&mut self) {
        if self.0.clients.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.deserted.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change under these locks is one insert, remove or assignment.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The feeds of one server, listed by operation once they are live-only.
pub struct Feeds {
    live: Mutex<HashMap<Operation, Arc<Feed>>>,
    /// Responses a client may fall behind (each feed keeps this many).
    lag: usize,
}

impl Feeds {
    pub fn new(lag: usize) -> Self {
        Self {
            live: Mutex::default(),
            lag: lag.max(1),
        }
    }

    /// The responses of `request` for one client: from the live feed running the same
    /// operation if there is one, else from a new feed.
    pub fn subscribe(
        self: &Arc<Self>,
        schema: &ShiplogSchema,
        session: &Arc<Data>,
        store: &Store,
        request: Request,
    ) -> BoxStream<'static, Out> {
        let spec = Spec::of(request);
        let joined = {
            let live = lock(&self.live);
            live.get(&spec.operation).map(|feed| {
                feed.clients.fetch_add(1, Ordering::AcqRel);
                (Membership(feed.clone()), feed.items.subscribe())
            })
        };
        let client = Client {
            spec,
            schema: schema.clone(),
            session: session.clone(),
        };
        match joined {
            Some((membership, items)) => client.joined(membership, items, store.clone()),
            None => {
                let (membership, items) = self.start(&client);
                client.follow(membership, items, None, None)
            }
        }
    }

    /// Starts a feed running `client`'s operation, with `client` as its first member.
    fn start(self: &Arc<Self>, client: &Client) -> (Membership, broadcast::Receiver<Item>) {
        let (tap, started) = Tap::new();
        let tap = Arc::new(tap);
        let request = client.spec.request(tap.clone());
        let stream = client
            .schema
            .execute_stream_with_session_data(request, client.session.clone());
        let (items, first) = broadcast::channel(self.lag);
        let feed = Arc::new(Feed {
            operation: client.spec.operation.clone(),
            items,
            clients: AtomicUsize::new(1),
            deserted: Notify::new(),
            started: Mutex::new(None),
        });
        tokio::spawn(self.clone().run(feed.clone(), tap, started, stream));
        (Membership(feed), first)
    }

    async fn run(
        self: Arc<Self>,
        feed: Arc<Feed>,
        tap: Arc<Tap>,
        mut started: oneshot::Receiver<Started>,
        mut stream: BoxStream<'static, Response>,
    ) {
        let _counted = crate::metrics::RunningFeed::start();
        let mut told = false;
        loop {
            tokio::select! {
                biased;
                () = feed.deserted.notified() => {
                    // Joining happens under the list's lock: nobody can join between
                    // this check and the removal.
                    let mut live = lock(&self.live);
                    if feed.clients.load(Ordering::Acquire) == 0 {
                        remove(&mut live, &feed);
                        return;
                    }
                }
                news = &mut started, if !told => {
                    told = true;
                    if let Ok(news) = news {
                        let news = Arc::new(news);
                        *lock(&feed.started) = Some(news.clone());
                        // Listed before its first client hears of it: once that client
                        // counts as live, a second one joins.
                        if news.shareable {
                            lock(&self.live).insert(feed.operation.clone(), feed.clone());
                        }
                        let _ = feed.items.send(Item::Started(news));
                    }
                }
                response = stream.next() => match response {
                    Some(response) => {
                        let text = match serde_json::to_string(&response) {
                            Ok(text) => Arc::from(text),
                            Err(err) => {
                                tracing::error!(error = %err, "cannot serialise a response");
                                continue;
                            }
                        };
                        let _ = feed.items.send(Item::Next { seq: tap.last(), text });
                    }
                    None => break,
                },
            }
        }
        remove(&mut lock(&self.live), &feed);
        let _ = feed.items.send(Item::End);
    }
}

/// Takes `feed` off the list, if it is the one listed for its operation.
fn remove(live: &mut HashMap<Operation, Arc<Feed>>, feed: &Arc<Feed>) {
    if live
        .get(&feed.operation)
        .is_some_and(|listed| Arc::ptr_eq(listed, feed))
    {
        live.remove(&feed.operation);
    }
}

/// One client's operation.
struct Client {
    spec: Spec,
    schema: ShiplogSchema,
    session: Arc<Data>,
}

impl Client {
    /// Joined a live feed: counted like an operation of its own, then given what
    /// commits after now.
    fn joined(
        self,
        membership: Membership,
        items: broadcast::Receiver<Item>,
        store: Store,
    ) -> BoxStream<'static, Out> {
        let started = lock(&membership.0.started).clone();
        let name = started.as_ref().and_then(|s| s.operation_name.clone());
        crate::metrics::graphql_request(
            "subscription",
            crate::metrics::operation_name_label(name.as_deref(), true),
            std::time::Duration::ZERO,
        );
        async_stream::stream! {
            // Listening already: whatever commits after this read reaches the feed
            // after this client joined it.
            let from = match store.last_seq().await {
                Ok(seq) => seq,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the latest event; the subscription ends");
                    yield Out::Done;
                    return;
                }
            };
            let mut rest = self.follow(membership, items, Some(from), started);
            while let Some(out) = rest.next().await {
                yield out;
            }
        }
        .boxed()
    }

    /// Forwards the feed's responses after `skip_to` (every one if `None`); falls back
    /// to a stream of its own when it falls behind.
    fn follow(
        self,
        membership: Membership,
        mut items: broadcast::Receiver<Item>,
        skip_to: Option<i64>,
        started: Option<Arc<Started>>,
    ) -> BoxStream<'static, Out> {
        async_stream::stream! {
            let mut membership = Some(membership);
            // Counted in the live-subscribers gauge once its subscription started.
            let mut counted = started.as_ref().map(|_| crate::metrics::LiveSubscriber::start());
            // The last event this client was given, or where it started.
            let mut given = skip_to.or(started.as_ref().map(|s| s.start));
            loop {
                match items.recv().await {
                    Ok(Item::Started(started)) => {
                        counted.get_or_insert_with(crate::metrics::LiveSubscriber::start);
                        given.get_or_insert(started.start);
                    }
                    Ok(Item::Next { seq, text }) => {
                        if skip_to.is_some_and(|skip_to| seq <= skip_to) {
                            continue;
                        }
                        given = Some(seq);
                        yield Out::Shared(text);
                    }
                    Ok(Item::End) | Err(broadcast::error::RecvError::Closed) => break,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "a subscriber fell behind its feed; resuming it on its own");
                        membership = None;
                        let tap = Arc::new(match given {
                            Some(seq) => Tap::resume_after(seq),
                            None => Tap::default(),
                        });
                        let mut own = self
                            .schema
                            .execute_stream_with_session_data(self.spec.request(tap), self.session.clone());
                        while let Some(response) = own.next().await {
                            yield Out::Own(Box::new(response));
                        }
                        break;
                    }
                }
            }
            drop(membership);
            drop(counted);
            yield Out::Done;
        }
        .boxed()
    }
}
