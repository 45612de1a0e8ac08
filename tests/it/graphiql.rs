//! The GraphiQL page over HTTP: it loads nothing from another host, every asset it names
//! is served from the binary with a long-lived cache header, and its CSP forbids inline
//! and foreign scripts. (tests/e2e/browser.test.mjs opens it in a real browser.)

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};

use crate::helpers::{TestApp, TestDb};

/// The values of every `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let marker = format!(" {attribute}=\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

async fn get_page(app: &TestApp) -> (reqwest::header::HeaderMap, String) {
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("GET /graphql");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    (headers, response.text().await.expect("the page"))
}

#[tokio::test]
async fn page_has_a_strict_csp_and_only_same_origin_assets() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let (headers, html) = get_page(&app).await;

    assert!(headers[CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    let csp = headers
        .get(CONTENT_SECURITY_POLICY)
        .expect("a Content-Security-Policy header")
        .to_str()
        .expect("ascii");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive:?}: {csp}");
    }
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .expect("a script-src directive");
    assert_eq!(script_src, "script-src 'self'", "no inline or eval scripts");

    assert!(html.contains("<title>shiplog</title>"), "{html}");
    // Nothing from another host: no absolute or protocol-relative URL at all.
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    // No inline script: every <script> has a src and an empty body.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("></script>").count(),
        "{html}"
    );
    assert_eq!(
        html.matches("<script").count(),
        attribute_values(&html, "src").len(),
        "{html}"
    );

    let mut urls: Vec<&str> = attribute_values(&html, "src");
    urls.extend(
        attribute_values(&html, "href")
            .into_iter()
            .filter(|href| !href.starts_with("data:")),
    );
    assert!(urls.len() >= 4, "the page names its assets: {html}");
    let scripts = attribute_values(&html, "src").len();
    for (i, url) in urls.iter().enumerate() {
        assert!(
            url.starts_with("/graphiql/") && !url.starts_with("//"),
            "same-origin path: {url}"
        );
        let response = app.client.get(app.url(url)).send().await.expect("GET");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()[CACHE_CONTROL],
            "public, max-age=31536000, immutable",
            "{url}"
        );
        let content_type = response.headers()[CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        let expected = if i < scripts {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(
            content_type.starts_with(expected),
            "{url}: {content_type}, expected {expected}"
        );
        assert!(url.ends_with(if i < scripts { ".js" } else { ".css" }));
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.bytes().await.expect("the asset");
        assert!(!body.is_empty(), "{url}");
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_or_stale_assets_are_404() {
    let db = TestDb::new();
    let app = TestApp::start(&db, &["production"]).await;
    let (_, html) = get_page(&app).await;
    let script = attribute_values(&html, "src")
        .into_iter()
        .find(|src| src.ends_with("/graphiql.min.js"))
        .expect("the page loads graphiql.min.js")
        .to_owned();
    let (base, _) = script
        .rsplit_once('/')
        .expect("a path of the form /graphiql/<hash>/<name>");

    let missing = [
        // An unknown name under a valid hash.
        format!("{base}/nope.js"),
        // A known name under another hash: an old URL must not get new content.
        "/graphiql/0000000000000000/graphiql.min.js".to_owned(),
        format!("{base}/VERSIONS"),
        "/graphiql/graphiql.min.js".to_owned(),
        format!("{base}/..%2F..%2FCargo.toml"),
    ];
    for path in missing {
        let response = app.client.get(app.url(&path)).send().await.expect("GET");
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response.headers().get(CACHE_CONTROL).is_none(),
            "a 404 must not be cached forever: {path}"
        );
    }
    app.stop().await;
}
