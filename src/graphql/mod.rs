//! The GraphQL API: schema, resolvers, output types, error mapping and loaders.
//! Only this module knows about GraphQL; it translates between the contract and the
//! domain and store.

mod cursor;
mod error;
mod freeze;
mod guards;
mod hooks;
mod inline;
mod integrations;
mod limits;
mod loaders;
mod metrics;
mod mutation;
mod order;
mod query;
mod release_notes;
mod subscription;
mod train;
mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, Schema};

pub use error::ApiError;
pub use hooks::Hooks;
pub use limits::{MAX_ALIASES, MAX_DEPTH, MAX_INTROSPECTION_DEPTH, MAX_ROOT_FIELDS};
pub use mutation::Mutation;
pub use query::{Query, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use subscription::{Started, Subscription, Tap};

use crate::domain::ProductionEnvironments;
use crate::store::Store;
use loaders::{DeploymentLoader, EventsLoader, PlaceFactsLoader};

pub type ShiplogSchema = Schema<Query, Mutation, Subscription>;

/// Most expensive document accepted. A full page of 100 deployments with every field and
/// their events costs about 3,000.
pub const MAX_COMPLEXITY: usize = 10_000;

/// The schema, ready to serve requests against `store`.
pub fn schema(store: Store, production: ProductionEnvironments) -> ShiplogSchema {
    schema_with_llm(store, production, None)
}

/// The schema, with `llm` (when given) drafting release notes.
pub fn schema_with_llm(
    store: Store,
    production: ProductionEnvironments,
    llm: Option<std::sync::Arc<crate::llm::Client>>,
) -> ShiplogSchema {
    let outbox = crate::outbox::OutboxSender::new(Default::default()).ok();
    schema_for(store, production, llm, outbox)
}

/// The schema, with `llm` (when given) drafting release notes, and `outbox` checking
/// the addresses of webhooks and HTTP targets as the dispatcher will (None: URLs are
/// only checked for their form).
pub fn schema_for(
    store: Store,
    production: ProductionEnvironments,
    llm: Option<std::sync::Arc<crate::llm::Client>>,
    outbox: Option<crate::outbox::OutboxSender>,
) -> ShiplogSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(outbox)
        .data(DataLoader::new(
            integrations::EventBySeqLoader(store.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            integrations::ExecutionLoader(store.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(EventsLoader(store.clone()), tokio::spawn))
        .data(DataLoader::new(
            DeploymentLoader(store.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            PlaceFactsLoader(store.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            freeze::FreezeWindowsLoader(store.clone()),
            tokio::spawn,
        ))
        .data(store)
        .data(production)
        .data(release_notes::Drafter(llm))
        .extension(Hooks::default())
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The opaque cursor of the event with this sequence number, as the API gives it (for
/// the payloads of webhooks, which carry the same fields as the GraphQL types).
pub fn event_cursor(seq: i64) -> String {
    cursor::event(seq)
}

/// The SDL of the schema, as `shiplog export-schema` prints it.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}

/// Tells subscriptions that the server is stopping. Connection data of every WebSocket;
/// absent when a schema runs without a server (then nothing stops subscriptions).
#[derive(Clone)]
pub struct Stopping(tokio::sync::watch::Receiver<bool>);

impl Stopping {
    pub fn new(receiver: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(receiver)
    }

    /// Completes once the server is stopping (at once if it already is).
    pub async fn wait(mut self) {
        // An error means the sender is gone: the server has stopped.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// What the HTTP layer learns about one request as the schema runs it: whether it got
/// as far as execution (the GraphQL-over-HTTP status code depends on it) and the
/// complexity validation found. Put in a request's data as an `Arc`.
#[derive(Debug, Default)]
pub struct RequestProbe {
    dry_run: bool,
    executed: std::sync::atomic::AtomicBool,
    complexity: std::sync::atomic::AtomicUsize,
    volatile: std::sync::atomic::AtomicBool,
}

impl RequestProbe {
    /// A probe for a request that is only parsed and validated, never executed (so a
    /// batch's total complexity can be known before any of it runs).
    pub fn dry_run() -> Self {
        Self {
            dry_run: true,
            ..Self::default()
        }
    }

    /// Whether the request passed parsing and validation and was executed.
    pub fn executed(&self) -> bool {
        self.executed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The complexity validation found; 0 when validation did not pass.
    pub fn complexity(&self) -> usize {
        self.complexity.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the answer depends on more than what is stored (the clock, a language
    /// model): the same request on the same data may answer otherwise.
    pub fn volatile(&self) -> bool {
        self.volatile.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Says that this request's answer depends on more than what is stored: every resolver
/// that reads the clock or asks outside calls it, so that the answer is never kept for
/// another request (the HTTP response cache).
fn volatile(ctx: &Context<'_>) {
    if let Some(probe) = ctx.data_opt::<std::sync::Arc<RequestProbe>>() {
        probe
            .volatile
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The operation a request runs, chosen the way async-graphql chooses it, with its name;
/// `None` when the document has no such operation (the request then fails). The one
/// place the hooks (metrics, response order) and the HTTP layer pick an operation.
pub fn select_operation<'d>(
    doc: &'d async_graphql::parser::types::ExecutableDocument,
    requested: Option<&str>,
) -> Option<(
    Option<&'d async_graphql::Name>,
    &'d async_graphql::parser::types::OperationDefinition,
)> {
    use async_graphql::parser::types::DocumentOperations;
    match (&doc.operations, requested) {
        (DocumentOperations::Single(op), None) => Some((None, &op.node)),
        (DocumentOperations::Single(_), Some(_)) => None,
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get_key_value(name)
            .map(|(name, op)| (Some(name), &op.node)),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.iter().next().map(|(name, op)| (Some(name), &op.node))
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Answers a nullable field with null and records `err` for it. (Returning `Err` from a
/// resolver would drop the field from `data` altogether.)
fn null_with_error<T>(ctx: &Context<'_>, err: ApiError) -> Option<T> {
    let err = async_graphql::Error::from(err).into_server_error(ctx.item.pos);
    ctx.add_error(ctx.set_error_path(err));
    None
}

fn store<'a>(ctx: &Context<'a>) -> Result<&'a Store, ApiError> {
    ctx.data::<Store>().map_err(|_| {
        tracing::error!("the schema was built without a store");
        ApiError::Internal
    })
}

fn production<'a>(ctx: &Context<'a>) -> Result<&'a ProductionEnvironments, ApiError> {
    ctx.data::<ProductionEnvironments>().map_err(|_| {
        tracing::error!("the schema was built without production environments");
        ApiError::Internal
    })
}
