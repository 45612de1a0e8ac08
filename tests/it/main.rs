//! The one integration test binary: store tests against real SQLite files, schema tests
//! through `Schema::execute`, API and live tests through HTTP and WebSocket against a
//! server on port 0, and the reliability tests (model, fuzz, crash).

mod api;
mod approvals;
mod cache;
mod crash;
mod environments;
mod freeze;
mod fuzz;
mod graphiql;
mod guards;
mod helpers;
mod http;
mod instances;
mod integrations;
mod limits;
mod live;
mod metrics;
mod migrate;
mod model;
mod order;
mod outbox_crash;
mod process;
mod promotion;
mod release_notes;
mod schema;
mod single_instance;
mod store;
mod timeouts;
mod train;
mod walkthrough;
mod webhooks;
mod ws_limits;
