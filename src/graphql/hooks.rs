//! The schema's one extension. async-graphql runs every extension's `resolve` hook around
//! every field, even an extension that does nothing there, so the work done per request
//! (error codes, panics, limits, field order, metrics, the probe the HTTP layer reads)
//! shares one extension instead of paying that toll once for each.
//!
//! Per request, outermost first: metrics time the whole request and count the response
//! as the client gets it; a panic becomes INTERNAL_SERVER_ERROR; errors without a code
//! get one; the response's fields are put in document order.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextSubscribe, NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Request, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};

use super::limits;
use super::metrics::Recording;
use super::order::{Capture, SharedDocuments};
use super::RequestProbe;

/// Gives every error that async-graphql produces itself an `extensions.code`, as the
/// contract requires (parse errors, validation errors including the depth, complexity,
/// root-field and alias limits, and the few request errors raised between the two), turns
/// a panic into INTERNAL_SERVER_ERROR, checks the document limits, orders the response's
/// fields, records metrics, and fills a request's `RequestProbe`. Public so that tests can
/// put it on a schema of their own.
#[derive(Default)]
pub struct Hooks {
    documents: Arc<SharedDocuments>,
}

impl ExtensionFactory for Hooks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestHooks {
            documents: self.documents.clone(),
            order: Capture::default(),
            metrics: Recording::default(),
        })
    }
}

/// One request's hooks, with what they learn along the way.
struct RequestHooks {
    documents: Arc<SharedDocuments>,
    order: Capture,
    metrics: Recording,
}

#[async_trait::async_trait]
impl Extension for RequestHooks {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
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
        self.order.order(&ctx.schema_env.registry, &mut response);
        self.metrics.answered(&response, started.elapsed());
        response
    }

    /// The same for every response of a WebSocket operation, which never goes through
    /// `request`.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        self.metrics.stream_started();
        let env = ctx.schema_env.clone();
        let order = self.order.clone();
        let metrics = self.metrics.clone();
        next.run(ctx, stream)
            .map(move |mut response| {
                fill_codes(&mut response);
                order.order(&env.registry, &mut response);
                metrics.streamed(&response);
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.metrics.prepared(&request);
        self.order.operation_name(request.operation_name.clone());
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        self.metrics
            .parsing(probe(ctx).is_some_and(|probe| probe.dry_run));
        // The same text parses to the same document and meets the same limits: a text
        // seen before is not parsed again (async-graphql's checks after parsing, depth
        // and directives, passed then too).
        if let Some(doc) = self.documents.parsed(query) {
            self.metrics.parsed(&doc);
            self.order.document(doc.clone(), variables);
            return Ok(ExecutableDocument::clone(&doc));
        }
        let doc = next.run(ctx, query, variables).await.map_err(|mut err| {
            set_code_if_missing(&mut err, "GRAPHQL_PARSE_FAILED");
            err
        })?;
        self.metrics.parsed(&doc);
        limits::check(&doc).map_err(|mut err| {
            set_code_if_missing(&mut err, "GRAPHQL_VALIDATION_FAILED");
            err
        })?;
        let shared = self.documents.remember(query, doc.clone());
        self.order.document(shared, variables);
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
        });
        self.metrics.validated(result.is_ok());
        let result = result?;
        if let Some(probe) = probe(ctx) {
            probe.complexity.store(result.complexity, Ordering::Release);
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(probe) = probe(ctx) {
            if probe.dry_run {
                return Response::new(Value::Null);
            }
            probe.executed.store(true, Ordering::Release);
        }
        self.metrics.executing(operation_name);
        next.run(ctx, operation_name).await
    }
}

fn probe<'a>(ctx: &ExtensionContext<'a>) -> Option<&'a Arc<RequestProbe>> {
    ctx.data_opt::<Arc<RequestProbe>>()
}

/// Codes the errors still without one: they failed the request as a whole (an unknown
/// operation name, say) or came from input coercion while resolving.
fn fill_codes(response: &mut Response) {
    let request_failed = response.data == Value::Null;
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
