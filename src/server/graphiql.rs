//! GraphiQL, the in-browser IDE served on `GET /graphql`, with every file it loads
//! embedded in the binary: the page works on a machine without internet, and building
//! needs no network either.
//!
//! The third-party files under `assets/graphiql/` are pinned releases fetched by
//! `scripts/refresh-graphiql.sh` (versions in `assets/graphiql/VERSIONS`); `init.js` and
//! `page.css` are ours. Each asset is served at `/graphiql/<hash>/<name>`, where `<hash>`
//! is a digest of its content: the URL changes whenever the content does, so browsers may
//! cache every asset forever, and a stale URL answers 404 rather than other content.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Where the assets are served; the page and the route are both built from it.
const PREFIX: &str = "/graphiql";

/// The endpoints the page talks to, as paths on its own origin; init.js reads them from
/// the page and turns the second into a ws:// or wss:// URL.
const ENDPOINT: &str = "/graphql";
const SUBSCRIPTION_ENDPOINT: &str = "/graphql/ws";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// What the page may load and where it may connect. Scripts come only from our own
/// files (no inline script, no eval); fetch and the WebSocket go only to this origin
/// (in CSP level 3, 'self' also matches ws: and wss: on the same host and port). Styles
/// need 'unsafe-inline': GraphiQL's dialogs and menus insert <style> elements at run
/// time. Fonts and a few icons are data: URLs inside graphiql.min.css; the favicon is
/// an empty data: URL so the browser asks for no /favicon.ico.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
     font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../assets/graphiql/", $name)),
        }
    };
}

/// Stylesheets, in the order the page links them.
const STYLESHEETS: &[Asset] = &[
    asset!("graphiql.min.css", CSS),
    asset!("plugin-explorer.css", CSS),
    asset!("page.css", CSS),
];

/// Scripts, in the order the page runs them: each UMD build reads the globals the
/// previous ones set (React, ReactDOM, GraphiQL), and init.js uses them all.
const SCRIPTS: &[Asset] = &[
    asset!("react.production.min.js", JAVASCRIPT),
    asset!("react-dom.production.min.js", JAVASCRIPT),
    asset!("graphiql.min.js", JAVASCRIPT),
    asset!("plugin-explorer.umd.js", JAVASCRIPT),
    asset!("init.js", JAVASCRIPT),
];

/// An asset and the hash in its URL.
struct Served {
    asset: &'static Asset,
    hash: String,
}

impl Served {
    fn url(&self) -> String {
        format!("{PREFIX}/{}/{}", self.hash, self.asset.name)
    }
}

/// Every asset with its hash, hashed once on first use.
static SERVED: LazyLock<Vec<Served>> = LazyLock::new(|| {
    STYLESHEETS
        .iter()
        .chain(SCRIPTS)
        .map(|asset| Served {
            asset,
            hash: content_hash(asset.bytes),
        })
        .collect()
});

/// The page, built once: it only changes with the assets.
static PAGE: LazyLock<String> = LazyLock::new(render_page);

/// A 64-bit FNV-1a digest in hex. It only has to change when a file changes (cache
/// busting, not security), and it needs no crate.
fn content_hash(bytes: &[u8]) -> String {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    format!("{hash:016x}")
}

fn render_page() -> String {
    let mut links = String::new();
    let mut scripts = String::new();
    for served in SERVED.iter() {
        if served.asset.content_type == CSS {
            links.push_str(&format!(
                "    <link rel=\"stylesheet\" href=\"{}\">\n",
                served.url()
            ));
        } else {
            // `defer` keeps document order and runs after parsing, when #graphiql exists.
            scripts.push_str(&format!(
                "    <script defer src=\"{}\"></script>\n",
                served.url()
            ));
        }
    }
    format!(
        "<!doctype html>\n\
         <html lang=\"en\">\n\
         \x20 <head>\n\
         \x20   <meta charset=\"utf-8\">\n\
         \x20   <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         \x20   <meta name=\"robots\" content=\"noindex\">\n\
         \x20   <title>shiplog</title>\n\
         \x20   <link rel=\"icon\" href=\"data:,\">\n\
         {links}{scripts}\
         \x20 </head>\n\
         \x20 <body>\n\
         \x20   <div id=\"graphiql\" data-endpoint=\"{ENDPOINT}\" \
         data-subscription-endpoint=\"{SUBSCRIPTION_ENDPOINT}\">Loading GraphiQL…</div>\n\
         \x20   <noscript>GraphiQL needs JavaScript. The API itself is at POST /graphql.</noscript>\n\
         \x20 </body>\n\
         </html>\n"
    )
}

/// Routes of GraphiQL's own assets.
pub fn routes() -> Router<AppState> {
    Router::new().route(&format!("{PREFIX}/{{hash}}/{{name}}"), get(asset))
}

/// The GraphiQL page, wired to `/graphql` and `/graphql/ws`.
pub fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            // The page names the current asset hashes, so it must not outlive a restart
            // onto a new version.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        PAGE.as_str(),
    )
        .into_response()
}

async fn asset(Path((hash, name)): Path<(String, String)>) -> Response {
    let Some(served) = SERVED
        .iter()
        .find(|served| served.asset.name == name && served.hash == hash)
    else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such asset\n",
        )
            .into_response();
    };
    let mut response = Response::new(Body::from(served.asset.bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(served.asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_fnv1a_64() {
        // Reference values of FNV-1a 64.
        assert_eq!(content_hash(b""), "cbf29ce484222325");
        assert_eq!(content_hash(b"a"), "af63dc4c8601ec8c");
    }

    #[test]
    fn page_links_every_asset_once_in_order() {
        let page = render_page();
        let mut last = 0;
        for served in SERVED.iter() {
            let url = served.url();
            assert_eq!(page.matches(&url).count(), 1, "{url}");
            let at = page.find(&url).unwrap_or_default();
            assert!(at > last, "{url} out of order");
            last = at;
        }
    }
}
