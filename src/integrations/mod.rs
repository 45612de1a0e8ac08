//! Reaching the outside: signed HTTP requests for webhooks, and the deploy executors.
//!
//! - [`signing`]: Standard Webhooks signatures.
//! - [`client`]: [`Sender`], the one HTTP client: no redirects, a timeout, and the
//!   address rule of `domain::destination` applied after DNS resolution.
//! - [`executor`]: the deploy executors (GitHub Actions, HTTP) behind one trait.

pub mod client;
pub mod executor;
pub mod signing;

pub use client::{Sender, SenderOptions};
pub use executor::{executor_for, Executor};
