use sea_orm_migration::prelude::*;

/// Where the server keeps its data unless told otherwise: `shiplog.db` in the working directory.
const DEFAULT_DATABASE_URL: &str = "sqlite://shiplog.db?mode=rwc";

fn main() {
    // Set before the runtime starts any thread, so nothing reads the environment concurrently.
    if std::env::var_os("DATABASE_URL").is_none() {
        std::env::set_var("DATABASE_URL", DEFAULT_DATABASE_URL);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the tokio runtime");
    runtime.block_on(cli::run_cli(migration::Migrator));
}
