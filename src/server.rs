//! HTTP: the axum router (GraphQL over POST, GraphiQL, WebSocket subscriptions, health)
//! and a `run` that takes its listener and shutdown signal from the caller, so tests can
//! bind port 0 and stop the server when they are done.

use std::future::Future;

use std::time::Duration;

use async_graphql::http::{
    GraphiQLSource, WebSocket as GraphQLWebSocket, WebSocketProtocols, WsMessage,
};
use async_graphql::Data;
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::graphql::{ShiplogSchema, Stopping};
use crate::store::Store;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// After a stop is asked for, how long a WebSocket stays open so that the `complete`
/// messages of its subscriptions reach the client before the close frame.
const WS_CLOSE_GRACE: Duration = Duration::from_millis(250);

/// Read and write buffer of each WebSocket.
const WS_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Clone)]
struct AppState {
    schema: ShiplogSchema,
    store: Store,
    stopping: Stopping,
}

pub fn router(schema: ShiplogSchema, store: Store, stopping: Stopping) -> Router {
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route("/graphql/ws", get(subscriptions))
        .route("/healthz", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Panics in resolvers are caught by the schema; this catches any other, so a
        // client still gets a coded error and the server goes on.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState {
            schema,
            store,
            stopping,
        })
}

/// Serves until `shutdown` completes, then ends open subscriptions, finishes the
/// requests in flight, and returns.
pub async fn run(
    listener: TcpListener,
    schema: ShiplogSchema,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    let (stop, stopping) = watch::channel(false);
    let app = router(schema, store, Stopping::new(stopping));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Subscriptions see this, complete, and let their sockets close.
            let _ = stop.send(true);
        })
        .await
}

/// `GET /graphql/ws`: subscriptions over either WebSocket subprotocol.
async fn subscriptions(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|offered| {
            offered
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        });
    let Some(protocol) = protocol else {
        return request_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "Offer the graphql-transport-ws or graphql-ws subprotocol",
        );
    };
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        // Messages here are small (an event is well under 1 KiB); the 128 KiB defaults
        // would cost every idle subscriber more than everything else it needs.
        .read_buffer_size(WS_BUFFER_BYTES)
        .write_buffer_size(WS_BUFFER_BYTES)
        .on_upgrade(move |socket| serve_socket(socket, state, protocol))
}

/// Runs one WebSocket connection. On a stop, the subscription streams end first (each
/// sends `complete`), then the input is cut after a short grace and the socket is closed
/// with 1001 (going away), rather than dropped.
async fn serve_socket(socket: WebSocket, state: AppState, protocol: WebSocketProtocols) {
    let (mut sink, source) = socket.split();
    let stopping = state.stopping.clone();
    let input = Box::pin(
        source
            .take_while(|msg| std::future::ready(msg.is_ok()))
            .filter_map(|msg| {
                std::future::ready(match msg {
                    Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                    Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                    _ => None,
                })
            })
            .take_until(async move {
                stopping.wait().await;
                tokio::time::sleep(WS_CLOSE_GRACE).await;
            }),
    );
    let mut data = Data::default();
    data.insert(state.stopping.clone());
    let mut output = GraphQLWebSocket::new(state.schema.clone(), input, protocol)
        .connection_data(data)
        .map(|msg| match msg {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        });
    while let Some(msg) = output.next().await {
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    if state.stopping.is_stopping() {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 1001,
                reason: "server shutting down".into(),
            })))
            .await;
    }
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("shiplog")
            .finish(),
    )
}

async fn graphql(State(state): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "PAYLOAD_TOO_LARGE"
            } else {
                "BAD_REQUEST"
            };
            return request_error(status, code, &rejection.body_text());
        }
    };
    let request: async_graphql::BatchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                "GRAPHQL_PARSE_FAILED",
                &format!("The body is not a GraphQL request in JSON: {err}"),
            )
        }
    };
    GraphQLResponse::from(state.schema.execute_batch(request).await).into_response()
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    request_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_SERVER_ERROR",
        "Internal server error",
    )
}

/// An error about the HTTP request itself, in the shape of a GraphQL response.
fn request_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(err) => {
            tracing::error!(error = %err, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
