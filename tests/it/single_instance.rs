//! SQLite serves one shiplog process per database file: a second process on the same
//! file refuses to start, says which process holds it, and leaves the first serving; once
//! the first is gone (even by SIGKILL), the file is free again.

use serde_json::json;

use crate::helpers::{create_input, post_create, TestDb};
use crate::process::Server;

async fn count(client: &reqwest::Client, server: &Server) -> i64 {
    let body: serde_json::Value = client
        .post(server.graphql_url())
        .json(&json!({ "query": "{ deployments(first: 1) { totalCount } }" }))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    body["data"]["deployments"]["totalCount"]
        .as_i64()
        .unwrap_or_else(|| panic!("a count: {body}"))
}

#[tokio::test]
async fn a_second_process_on_the_same_file_refuses_to_start_and_the_first_keeps_serving() {
    let db = TestDb::sqlite();
    let first = Server::start(db.path());
    let client = reqwest::Client::new();
    post_create(
        &client,
        &first.graphql_url(),
        create_input("single-a", "staging"),
    )
    .await;

    // The same file, under another spelling of its path.
    let other_spelling = db.dir.path().join(".").join("shiplog.db");
    let mut second = Server::spawn(&other_spelling, &[], &[]);
    let status = second.exit();
    let said = second.output();
    assert!(!status.success(), "the second process fails: {said}");
    assert!(
        said.contains("is in use by another shiplog process")
            && said.contains(&format!("(pid {})", first.pid()))
            && said.contains("PostgreSQL"),
        "it says who holds the file and what to do instead:\n{said}"
    );
    assert!(!said.contains("listening on"), "it never listened:\n{said}");

    // The first one is untouched: it still writes and reads everything.
    post_create(
        &client,
        &first.graphql_url(),
        create_input("single-b", "staging"),
    )
    .await;
    assert_eq!(count(&client, &first).await, 2);

    // Killed without a chance to clean up, it leaves the file free for the next one.
    first.kill();
    let next = Server::start(db.path());
    assert_eq!(count(&client, &next).await, 2, "{}", next.output());
    post_create(
        &client,
        &next.graphql_url(),
        create_input("single-c", "staging"),
    )
    .await;
    assert_eq!(count(&client, &next).await, 3);
}

#[tokio::test]
async fn an_in_process_store_cannot_open_a_file_a_server_process_holds() {
    let db = TestDb::sqlite();
    let server = Server::start(db.path());
    let err = match shiplog::store::Store::open(&shiplog::store::StoreConfig::new(
        db.path().to_string_lossy(),
    ))
    .await
    {
        Ok(_) => panic!("a second store opened the file the server holds"),
        Err(err) => err.to_string(),
    };
    assert!(
        err.contains(&format!(
            "in use by another shiplog process (pid {})",
            server.pid()
        )),
        "{err}"
    );
    drop(server);
}

#[tokio::test]
async fn a_store_closed_in_this_process_lets_the_next_one_open_the_file() {
    let db = TestDb::sqlite();
    for _ in 0..3 {
        let store = db.open().await;
        drop(store);
        // No wait in between: the next open waits for the writer to let go.
        let again = db.open().await;
        drop(again);
    }
}
