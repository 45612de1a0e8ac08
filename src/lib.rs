//! shiplog: the durable, reviewable record of software deployments, served over GraphQL.
//!
//! Read in this order:
//! - [`domain`]: the lifecycle. Statuses, actions, the transition table, validation.
//!   Pure; every rule lives here once.
//! - [`store`]: SQLite through SeaORM. One transaction per action, keyset pages, batch
//!   loads, and the hub that hands committed events to subscribers.
//! - [`graphql`]: the schema. Translates the contract to domain and store calls and maps
//!   errors to `extensions.code`.
//! - [`server`]: axum. GraphQL over HTTP, WebSocket subscriptions and their limits,
//!   GraphiQL (embedded), health, graceful shutdown.
//! - [`metrics`]: Prometheus metrics and request ids.
//! - [`timeouts`]: the task that fails a start nobody reported on by its deadline.
//! - [`config`]: the command line.

pub mod config;
pub mod domain;
pub mod graphql;
pub mod integrations;
/// The language-model client that drafts release notes (Anthropic Messages API).
pub mod llm;
/// Operations: Prometheus metrics (`GET /metrics`) and request ids.
pub mod metrics;
/// Sends webhook deliveries and executor triggers after their events commit.
pub mod outbox;
pub mod server;
pub mod store;
/// The server task that fails STARTED deployments at their start deadline.
pub mod timeouts;
