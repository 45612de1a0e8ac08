// Starts GraphiQL on the shiplog page. It lives in its own file, not in the HTML, so the
// page's Content-Security-Policy can forbid inline scripts. The scripts before it (React,
// ReactDOM, GraphiQL, the explorer plugin) are UMD builds that set window globals.
(function () {
  "use strict";

  // The server names the endpoints on the page's #graphiql element (data-endpoint,
  // data-subscription-endpoint) as paths; both are resolved against the page's own
  // origin, so the API works behind any host name, port or proxy that serves the page,
  // and the CSP's connect-src 'self' allows them.
  var container = document.getElementById("graphiql");
  var endpoint = new URL(container.dataset.endpoint || "/graphql", window.location.href);
  var subscriptionEndpoint = new URL(
    container.dataset.subscriptionEndpoint || "/graphql/ws",
    window.location.href
  );
  subscriptionEndpoint.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  var baseFetcher = GraphiQL.createFetcher({
    url: endpoint.href,
    // graphql-ws (bundled in GraphiQL) speaks graphql-transport-ws, which the
    // subscription endpoint accepts.
    subscriptionUrl: subscriptionEndpoint.href,
  });
  // The fetcher sends an operation over the WebSocket only if the document it is given
  // holds a subscription, and GraphiQL gives it the editor's last parse, which lags
  // edits by 100 ms: run right after typing and a subscription would be POSTed. Parse
  // the text actually sent instead.
  function fetcher(params, options) {
    var documentAST = options && options.documentAST;
    try {
      documentAST = GraphiQL.GraphQL.parse(params.query);
    } catch (err) {
      // Not valid: the server will say why; keep the editor's parse.
    }
    return baseFetcher(params, Object.assign({}, options, { documentAST: documentAST }));
  }

  var defaultQuery = [
    "# shiplog: the record of deployments.",
    "# The docs are on the left.",
    "# Ctrl-Enter runs the query.",
    "",
    "{",
    "  deployments(first: 10) {",
    "    totalCount",
    "    nodes { id service version status }",
    "  }",
    "}",
    "",
  ].join("\n");

  var root = ReactDOM.createRoot(container);
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      defaultEditorToolsVisibility: true,
      // Open on the documentation explorer, so a newcomer sees the schema at once.
      visiblePlugin: "Documentation Explorer",
      plugins: [GraphiQLPluginExplorer.explorerPlugin()],
    })
  );
})();
