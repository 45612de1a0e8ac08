//! Test harness: each test gets its own SQLite file in its own temp dir and, for API
//! tests, its own server on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{json, Value};
use shiplog::domain::ProductionEnvironments;
use shiplog::graphql::{self, ShiplogSchema};
use shiplog::server;
use shiplog::store::{Store, StoreConfig};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The engine the suites run on: `SHIPLOG_TEST_ENGINE` is `sqlite` (the default) or
/// `postgres` (a database of its own per test, on the cluster the `testpg` crate starts
/// for this test process). Anything else is a mistake, and fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub fn engine() -> Engine {
    match std::env::var("SHIPLOG_TEST_ENGINE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Engine::Sqlite,
        Ok("postgres") => Engine::Postgres,
        Ok(other) => panic!("SHIPLOG_TEST_ENGINE is sqlite or postgres, not {other:?}"),
    }
}

/// A database of the test's own, on the engine the suite runs on, that lives as long as
/// this value (a SQLite file in a temporary directory, or a fresh PostgreSQL database).
pub struct TestDb {
    pub dir: TempDir,
    engine: Engine,
    url: String,
}

impl TestDb {
    pub fn new() -> Self {
        Self::on(engine())
    }

    /// A SQLite file whatever the suite's engine: for what only SQLite has (its file,
    /// its single-process claim, databases written by earlier versions).
    pub fn sqlite() -> Self {
        Self::on(Engine::Sqlite)
    }

    /// A PostgreSQL database whatever the suite's engine: for what only PostgreSQL has
    /// (several instances on one database).
    pub fn postgres() -> Self {
        Self::on(Engine::Postgres)
    }

    fn on(engine: Engine) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let url = match engine {
            Engine::Sqlite => dir.path().join("shiplog.db").to_string_lossy().into_owned(),
            Engine::Postgres => testpg::cluster().fresh_database(),
        };
        Self { dir, engine, url }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// What `--database-url` (or `StoreConfig::new`) takes for this database.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The SQLite file. Only for a SQLite database (`TestDb::sqlite()`).
    pub fn path(&self) -> PathBuf {
        assert_eq!(
            self.engine,
            Engine::Sqlite,
            "this test reads the SQLite file: give it TestDb::sqlite()"
        );
        self.dir.path().join("shiplog.db")
    }

    /// A SeaORM connection of the test's own to this database, on either engine.
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        let url = match self.engine {
            Engine::Sqlite => format!("sqlite://{}?mode=rwc", self.url),
            Engine::Postgres => self.url.clone(),
        };
        sea_orm::Database::connect(&url)
            .await
            .expect("a connection of the test's own")
    }

    /// Runs one statement on this database, behind the store's back, with `?` for each
    /// value (numbered for PostgreSQL): the rows it changed, or the database's error.
    pub async fn execute(
        &self,
        sql: &str,
        values: Vec<sea_orm::Value>,
    ) -> Result<u64, sea_orm::DbErr> {
        use sea_orm::ConnectionTrait;
        let conn = self.connect().await;
        let backend = conn.get_database_backend();
        let sql = match self.engine {
            Engine::Sqlite => sql.to_owned(),
            Engine::Postgres => {
                let mut n = 0;
                sql.split('?')
                    .enumerate()
                    .map(|(i, part)| {
                        if i == 0 {
                            part.to_owned()
                        } else {
                            n += 1;
                            format!("${n}{part}")
                        }
                    })
                    .collect()
            }
        };
        let result = conn
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend, sql, values,
            ))
            .await
            .map(|done| done.rows_affected());
        conn.close().await.expect("close the test's connection");
        result
    }

    /// The one integer `sql` (no bound values) answers, read behind the store's back.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sea_orm::ConnectionTrait;
        let conn = self.connect().await;
        let backend = conn.get_database_backend();
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(backend, sql.to_owned()))
            .await
            .expect("the query runs")
            .expect("one row");
        let value: i64 = row.try_get_by_index(0).expect("an integer");
        conn.close().await.expect("close the test's connection");
        value
    }

    pub async fn open(&self) -> Store {
        Store::open(&StoreConfig::new(self.url()))
            .await
            .expect("open the store")
    }

    /// The store, with `production` as the production set of the naming rule.
    pub async fn open_with(&self, production: &[&str]) -> Store {
        let config = StoreConfig {
            production: ProductionEnvironments::new(production),
            ..StoreConfig::new(self.url())
        };
        Store::open(&config).await.expect("open the store")
    }

    /// A schema over this database, to run documents without HTTP.
    pub async fn schema(&self) -> (ShiplogSchema, Store) {
        let store = self.open().await;
        let schema = graphql::schema(store.clone(), ProductionEnvironments::default());
        (schema, store)
    }
}

/// A shiplog server on a free port of 127.0.0.1, over its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Starts a server over `db`, with `production` as the production environments.
    pub async fn start(db: &TestDb, production: &[&str]) -> Self {
        Self::start_with(db, production, server::ServerOptions::default()).await
    }

    /// Starts a server over `db` with the given request and connection limits.
    pub async fn start_with(
        db: &TestDb,
        production: &[&str],
        options: server::ServerOptions,
    ) -> Self {
        Self::start_with_llm(db, production, options, None).await
    }

    /// Starts a server over `db` whose release notes `llm` drafts (none: templates).
    pub async fn start_with_llm(
        db: &TestDb,
        production: &[&str],
        options: server::ServerOptions,
        llm: Option<std::sync::Arc<shiplog::llm::Client>>,
    ) -> Self {
        let store = db.open_with(production).await;
        Self::serve(store, production, options, llm).await
    }

    /// Starts a server over `db` whose webhooks and executors are retried by `retry`.
    pub async fn start_with_retry(
        db: &TestDb,
        options: server::ServerOptions,
        retry: shiplog::domain::integrations::RetryPolicy,
    ) -> Self {
        let config = StoreConfig {
            retry,
            ..StoreConfig::new(db.url())
        };
        let store = Store::open(&config).await.expect("open the store");
        Self::serve(store, &["production"], options, None).await
    }

    async fn serve(
        store: Store,
        production: &[&str],
        options: server::ServerOptions,
        llm: Option<std::sync::Arc<shiplog::llm::Client>>,
    ) -> Self {
        let schema = graphql::schema_for(
            store.clone(),
            ProductionEnvironments::new(production),
            llm,
            options.outbox.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = oneshot::channel::<()>();
        let serving = tokio::spawn(server::run_with(
            listener,
            schema,
            store.clone(),
            options,
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            client: reqwest::Client::new(),
            store,
            shutdown: Some(tx),
            serving: Some(serving),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a document and returns the whole JSON response; fails the test on a non-200.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        let response = self
            .client
            .post(self.url("/graphql"))
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send the request");
        assert_eq!(response.status(), 200, "HTTP status");
        response.json().await.expect("a JSON body")
    }

    /// Like `graphql`, and fails the test if the response has errors.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let body = self.graphql(query, variables).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    /// Stops the server gracefully and waits for it, then closes the store.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        self.store.clone().close().await.expect("close the store");
    }
}

/// The one error of a response: its code and the whole error object.
pub fn single_error(body: &Value) -> (&str, &Value) {
    let errors = body["errors"].as_array().expect("errors in the response");
    assert_eq!(errors.len(), 1, "exactly one error: {body:#}");
    let code = errors[0]["extensions"]["code"]
        .as_str()
        .expect("every error has extensions.code");
    (code, &errors[0])
}

pub const CREATE: &str = r#"
mutation Create($input: CreateDeploymentInput!) {
  createDeployment(input: $input) {
    deployment { id service environment version requester workRefs risk rollbackPlan status
                 reviewedBy reviewedAt createdAt updatedAt }
    event { id cursor deploymentId kind actor note fromStatus toStatus occurredAt }
  }
}"#;

/// A valid creation input; tweak fields with `input["x"] = ...`.
pub fn create_input(service: &str, environment: &str) -> Value {
    json!({
        "service": service,
        "environment": environment,
        "version": "v1.0.0",
        "requester": "alice",
        "workRefs": ["JIRA-1"],
        "risk": "low: config only",
        "rollbackPlan": "redeploy the previous version",
    })
}

/// The mutation document for a lifecycle action, e.g. `action("approveDeployment")`.
pub fn action(mutation: &str) -> String {
    let input = format!("{}{}Input", &mutation[..1].to_uppercase(), &mutation[1..]);
    format!(
        r#"mutation Act($input: {input}!) {{
  {mutation}(input: $input) {{
    deployment {{ id status reviewedBy reviewedAt updatedAt }}
    event {{ id cursor kind actor note fromStatus toStatus occurredAt }}
  }}
}}"#
    )
}

impl TestApp {
    /// Creates a deployment and returns its id.
    pub async fn create(&self, service: &str, environment: &str) -> String {
        let data = self
            .ok(
                CREATE,
                json!({ "input": create_input(service, environment) }),
            )
            .await;
        data["createDeployment"]["deployment"]["id"]
            .as_str()
            .expect("an id")
            .to_owned()
    }

    /// Runs a lifecycle mutation that must succeed; returns its payload.
    pub async fn act(&self, mutation: &str, id: &str, actor: &str, note: Option<&str>) -> Value {
        let data = self
            .ok(
                &action(mutation),
                json!({ "input": { "id": id, "actor": actor, "note": note } }),
            )
            .await;
        data[mutation].clone()
    }
}

/// Creates a deployment with `client` (from a task of its own, or a server the test
/// runs as a process): the whole response, which must have no errors.
pub async fn post_create(client: &reqwest::Client, url: &str, input: Value) -> Value {
    let body: Value = client
        .post(url)
        .json(&json!({ "query": CREATE, "variables": { "input": input } }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(body.get("errors").is_none(), "{body}");
    body
}

/// A port on 127.0.0.1 that refuses every connection for as long as this value lives:
/// its socket is bound (so the system hands the port to nobody else, a receiver of a
/// test running beside this one included) but never listens.
pub struct RefusingPort {
    _socket: tokio::net::TcpSocket,
    pub addr: SocketAddr,
}

impl RefusingPort {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind port 0");
        let addr = socket.local_addr().expect("the bound address");
        Self {
            _socket: socket,
            addr,
        }
    }
}

/// SQLite's plan of one of the store's own statements (its values unbound), a step per
/// line. The statement is a constant of the store's, with nothing interpolated into it.
pub async fn query_plan(conn: &mut sqlx::SqliteConnection, sql: &str) -> String {
    use sqlx::Row;
    sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
        .fetch_all(conn)
        .await
        .expect("a plan")
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect::<Vec<_>>()
        .join("\n")
}
