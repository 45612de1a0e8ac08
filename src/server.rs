//! HTTP: the axum router (GraphQL over POST, GraphiQL, WebSocket subscriptions, health)
//! and a `run` that takes its listener and shutdown signal from the caller, so tests can
//! bind port 0 and stop the server when they are done.

use std::future::Future;

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLResponse, GraphQLSubscription};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::graphql::ShiplogSchema;
use crate::store::Store;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Clone)]
struct AppState {
    schema: ShiplogSchema,
    store: Store,
}

pub fn router(schema: ShiplogSchema, store: Store) -> Router {
    let subscriptions = GraphQLSubscription::new(schema.clone());
    Router::new()
        .route("/graphql", get(graphiql).post(graphql))
        .route_service("/graphql/ws", subscriptions)
        .route("/healthz", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(AppState { schema, store })
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn run(
    listener: TcpListener,
    schema: ShiplogSchema,
    store: Store,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("listening on http://{addr}");
    }
    axum::serve(listener, router(schema, store))
        .with_graceful_shutdown(shutdown)
        .await
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

async fn graphql(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
