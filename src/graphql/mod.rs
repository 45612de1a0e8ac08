//! The GraphQL API: schema, resolvers, output types, error mapping and loaders.
//! Only this module knows about GraphQL; it translates between the contract and the
//! domain and store.

mod cursor;
mod error;
mod limits;
mod loaders;
mod metrics;
mod mutation;
mod order;
mod query;
mod subscription;
mod types;

use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use async_graphql::dataloader::DataLoader;
use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
    NextSubscribe, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Context, Response, Schema, ServerError, ServerResult, ValidationResult, Variables,
};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};

pub use error::ApiError;
pub use limits::{MAX_ALIASES, MAX_DEPTH, MAX_INTROSPECTION_DEPTH, MAX_ROOT_FIELDS};
pub use mutation::Mutation;
pub use query::{Query, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use subscription::Subscription;

use crate::domain::ProductionEnvironments;
use crate::store::Store;
use loaders::{DeploymentLoader, EventsLoader};

pub type ShiplogSchema = Schema<Query, Mutation, Subscription>;

/// Most expensive document accepted. A full page of 100 deployments with every field and
/// their events costs about 3,000.
pub const MAX_COMPLEXITY: usize = 10_000;

/// The schema, ready to serve requests against `store`.
pub fn schema(store: Store, production: ProductionEnvironments) -> ShiplogSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(DataLoader::new(EventsLoader(store.clone()), tokio::spawn))
        .data(DataLoader::new(
            DeploymentLoader(store.clone()),
            tokio::spawn,
        ))
        .data(store)
        .data(production)
        .extension(metrics::RequestMetrics)
        .extension(ErrorCodes)
        .extension(order::ResponseOrder)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
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

/// Gives every error that async-graphql produces itself an `extensions.code`, as the
/// contract requires: parse errors, validation errors (including the depth, complexity,
/// root-field and alias limits), and the few request errors raised between the two.
/// Also turns a panic into an INTERNAL_SERVER_ERROR. Public so that tests can put it on
/// a schema of their own.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        // A panicking resolver fails its request with INTERNAL_SERVER_ERROR; the panic is
        // logged and the server goes on serving. Caught here, once per request, rather
        // than around every field.
        let mut response = match AssertUnwindSafe(next.run(ctx)).catch_unwind().await {
            Ok(response) => response,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "a request panicked");
                let mut err = ServerError::new("Internal server error", None);
                set_code_if_missing(&mut err, "INTERNAL_SERVER_ERROR");
                Response::from_errors(vec![err])
            }
        };
        fill_codes(&mut response);
        response
    }

    /// The same for every response of a subscription stream (the WebSocket path never
    /// goes through `request`).
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                fill_codes(&mut response);
                response
            })
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await.map_err(|mut err| {
            set_code_if_missing(&mut err, "GRAPHQL_PARSE_FAILED");
            err
        })?;
        limits::check(&doc).map_err(|mut err| {
            set_code_if_missing(&mut err, "GRAPHQL_VALIDATION_FAILED");
            err
        })?;
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await.map_err(|mut errors| {
            for err in &mut errors {
                set_code_if_missing(err, "GRAPHQL_VALIDATION_FAILED");
            }
            errors
        })?;
        if let Some(probe) = ctx.data_opt::<Arc<RequestProbe>>() {
            probe
                .complexity
                .store(result.complexity, std::sync::atomic::Ordering::Release);
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(probe) = ctx.data_opt::<Arc<RequestProbe>>() {
            if probe.dry_run {
                return Response::new(async_graphql::Value::Null);
            }
            probe
                .executed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        next.run(ctx, operation_name).await
    }
}

/// Codes the errors still without one: they failed the request as a whole (an unknown
/// operation name, say) or came from input coercion while resolving.
fn fill_codes(response: &mut Response) {
    let request_failed = response.data == async_graphql::Value::Null;
    for err in &mut response.errors {
        let code = if request_failed && err.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else {
            "BAD_USER_INPUT"
        };
        set_code_if_missing(err, code);
    }
}

fn set_code_if_missing(err: &mut ServerError, code: &str) {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
}
