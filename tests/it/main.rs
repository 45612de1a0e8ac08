//! The one integration test binary: store tests against real SQLite files, schema tests
//! through `Schema::execute`, and API tests through HTTP against a server on port 0.

mod api;
mod helpers;
mod live;
mod schema;
mod store;
