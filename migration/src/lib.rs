//! The database schema of shiplog, as an ordered list of migrations.
//!
//! The server applies every pending migration when it starts; the command line
//! (`cargo run -p migration -- status|up|down`) does the same by hand.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_deployments;
mod m20261125_000002_v2_environments_and_approvals;
mod m20261125_000003_release_train;
mod m20261125_000004_start_guards;
mod m20261125_000005_freeze_windows;
mod m20261125_000006_start_timeouts;
mod m20261125_000007_integrations;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_deployments::Migration),
            Box::new(m20261125_000002_v2_environments_and_approvals::Migration),
            Box::new(m20261125_000003_release_train::Migration),
            Box::new(m20261125_000004_start_guards::Migration),
            Box::new(m20261125_000005_freeze_windows::Migration),
            Box::new(m20261125_000006_start_timeouts::Migration),
            Box::new(m20261125_000007_integrations::Migration),
        ]
    }
}
