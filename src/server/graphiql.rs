//! GraphiQL, the in-browser IDE served on `GET /graphql`.

use async_graphql::http::GraphiQLSource;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;

use super::AppState;

/// Routes of GraphiQL's own assets.
pub fn routes() -> Router<AppState> {
    Router::new()
}

/// The GraphiQL page, wired to `/graphql` and `/graphql/ws`.
pub fn page() -> Response {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("shiplog")
            .finish(),
    )
    .into_response()
}
