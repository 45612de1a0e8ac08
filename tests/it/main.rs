//! The one integration test binary: store tests against real SQLite files, schema tests
//! through `Schema::execute`, API and live tests through HTTP and WebSocket against a
//! server on port 0, and the reliability tests (model, fuzz, crash).

mod api;
mod crash;
mod fuzz;
mod helpers;
mod limits;
mod live;
mod model;
mod schema;
mod store;
