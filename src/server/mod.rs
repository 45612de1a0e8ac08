//! HTTP: the axum router (GraphQL over HTTP, GraphiQL, WebSocket subscriptions, health)
//! and a `run` that takes its listener and shutdown signal from the caller, so tests can
//! bind port 0 and stop the server when they are done.
//!
//! - `http.rs`: GraphQL over HTTP (GET and POST, content negotiation, CSRF prevention,
//!   batches, the response size bound).
//! - `ws.rs`: subscriptions over WebSocket (both subprotocols) and the limits of a
//!   connection.
//! - `feeds.rs`: one execution and one serialisation of each WebSocket operation for all
//!   the clients that send the same one.
//! - `graphiql.rs`: the GraphiQL page and its assets, embedded in the binary.

mod cache;
mod feeds;
mod graphiql;
mod http;
mod ws;

use std::future::Future;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::graphql::{ShiplogSchema, Stopping};
use crate::store::Store;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What one request or one connection may ask of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Operations one batch (a JSON array) may hold.
    pub max_batch: usize,
    /// Largest response body; a larger one is cut off with RESPONSE_TOO_LARGE.
    pub max_response_bytes: usize,
    /// Origins allowed to call the API from a browser (CORS). Empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// Limits of the WebSocket endpoint.
    pub ws: WsLimits,
    /// Sends webhook deliveries and executor triggers; None: they stay PENDING.
    pub outbox: Option<crate::outbox::OutboxSender>,
    /// Bytes of query answers kept for identical requests, with ETags (`cache.rs`);
    /// 0: no cache, no ETags.
    pub response_cache_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_batch: 10,
            max_response_bytes: 16 * 1024 * 1024,
            cors_origins: Vec::new(),
            ws: WsLimits::default(),
            outbox: crate::outbox::OutboxSender::new(Default::default()).ok(),
            response_cache_bytes: 0,
        }
    }
}

/// Limits of the WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// Subscriptions one connection may hold open at once.
    pub max_subscriptions: usize,
    /// Time a new connection has to send `connection_init`.
    pub init_timeout: Duration,
    /// Largest message a client may send.
    pub max_message_bytes: usize,
    /// Open WebSocket connections, all clients together.
    pub max_connections: usize,
    /// Responses a client may fall behind the operation it shares with others before
    /// it goes on with a stream of its own, replayed from storage. Each shared
    /// operation keeps this many slots.
    pub feed_lag: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_subscriptions: 100,
            init_timeout: Duration::from_secs(5),
            max_message_bytes: 64 * 1024,
            max_connections: 10_000,
            feed_lag: 128,
        }
    }
}

#[derive(Clone)]
struct AppState {
    schema: ShiplogSchema,
    store: Store,
    stopping: Stopping,
    options: std::sync::Arc<ServerOptions>,
    /// One permit per open WebSocket connection (`options.ws.max_connections`).
    ws_slots: std::sync::Arc<tokio::sync::Semaphore>,
    /// The WebSocket operations running, shared by the clients that send the same one.
    feeds: std::sync::Arc<feeds::Feeds>,
    /// Query answers kept for identical requests; None when off.
    cache: Option<std::sync::Arc<cache::ResponseCache>>,
}

pub fn router(
    schema: ShiplogSchema,
    store: Store,
    stopping: Stopping,
    options: ServerOptions,
) -> Router {
    let cors = cors_layer(&options.cors_origins);
    let app = Router::new()
        .route("/", get(|| async { Redirect::to("/graphql") }))
        .route(
            "/graphql",
            get(http::get_graphql)
                .post(http::post_graphql)
                .fallback(http::method_not_allowed),
        )
        .route("/graphql/ws", get(ws::subscriptions))
        .merge(graphiql::routes())
        .route("/healthz", get(health))
        .route("/metrics", get(crate::metrics::scrape))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Panics in resolvers are caught by the schema; this catches any other, so a
        // client still gets a coded error and the server goes on.
        .layer(CatchPanicLayer::custom(panic_response));
    // CORS answers preflights itself, so it sits outside the routes but inside the
    // request-id and trace layers: preflights get an id and a log line too.
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app
        // Request ids, outermost first: an unusable client id is dropped, a missing one
        // made, the span (with the id) opened, and the id copied onto every response.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::metrics::request_span)
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO),
                ),
        )
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .layer(axum::middleware::map_request(
            crate::metrics::drop_unusable_request_id,
        ))
        .with_state(AppState {
            schema,
            store,
            stopping,
            ws_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                options
                    .ws
                    .max_connections
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            feeds: std::sync::Arc::new(feeds::Feeds::new(options.ws.feed_lag)),
            cache: (options.response_cache_bytes > 0).then(|| {
                std::sync::Arc::new(cache::ResponseCache::new(options.response_cache_bytes))
            }),
            options: std::sync::Arc::new(options),
        })
}

/// CORS for the configured origins; None (no CORS headers at all, so browsers keep
/// pages of other origins out) when there are none. Origins that are not valid header
/// values are skipped with a warning.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(
            |origin| match HeaderValue::from_str(origin.trim_end_matches('/')) {
                Ok(value) => Some(value),
                Err(_) => {
                    tracing::warn!(
                        origin,
                        "ignoring a CORS origin that is not a valid header value"
                    );
                    None
                }
            },
        )
        .collect();
    if origins.is_empty() {
        return None;
    }
    let mut allowed_headers = vec![header::CONTENT_TYPE, header::ACCEPT];
    allowed_headers.extend(http::PREFLIGHT_HEADERS.map(HeaderName::from_static));
    allowed_headers.push(HeaderName::from_static("x-request-id"));
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(allowed_headers)
            .expose_headers([HeaderName::from_static("x-request-id")])
            .max_age(Duration::from_secs(600)),
    )
}

/// Serves with the default options until `shutdown` completes; see [`run_with`].
pub async fn run(
    listener: TcpListener,
    schema: ShiplogSchema,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, schema, store, ServerOptions::default(), shutdown).await
}

/// Serves until `shutdown` completes, then ends open subscriptions, finishes the
/// requests in flight, and returns.
pub async fn run_with(
    listener: TcpListener,
    schema: ShiplogSchema,
    store: Store,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let (stop, stopping) = watch::channel(false);
    // Fails STARTED deployments at their start deadline; ends when told to stop, with
    // the subscriptions.
    let timeouts = crate::timeouts::spawn(store.clone(), stopping.clone());
    // Sends what the outbox holds; ends with the timeout task.
    let outbox = options
        .outbox
        .as_ref()
        .map(|sender| crate::outbox::spawn(store.clone(), sender.0.clone(), stopping.clone()));
    let app = router(schema, store, Stopping::new(stopping), options);
    // Every message goes out when written: an event reaches a subscriber without waiting
    // for the acknowledgement of the one before (Nagle's algorithm).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Subscriptions and the timeout task see this, complete, and let go.
            let _ = stop.send(true);
        })
        .await;
    // Normally over already. If serving ended some other way, the task is cut off here;
    // a timeout write it submitted goes on in the writer regardless.
    timeouts.abort();
    let _ = timeouts.await;
    if let Some(outbox) = outbox {
        outbox.abort();
        let _ = outbox.await;
    }
    served
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    request_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "Internal server error",
    )
}

/// An error about the HTTP request itself, in the shape of a GraphQL response (no
/// `data`: nothing was executed).
fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    crate::metrics::graphql_error(code);
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok\n",
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made. Made before the
/// server says where it listens: a signal handler installed only when the shutdown future
/// is first polled leaves a window in which a SIGTERM sent right after `listening on`
/// kills the process instead of stopping it (a supervisor, or a benchmark that starts a
/// server only to migrate a file, sends exactly that).
pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Completes on the first SIGINT or SIGTERM.
    pub async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutting down");
    }
}
