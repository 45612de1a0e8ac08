// GraphiQL in a real browser: the page served by the binary loads with no network access
// beyond the server itself, under its Content-Security-Policy, introspects the schema,
// runs a query typed into the editor, and shows subscription events pushed over
// /graphql/ws.
//
// Needs Chromium (CHROMIUM_PATH, default /usr/bin/chromium) and the shiplog binary
// (SHIPLOG_BIN, see server.mjs). Screenshots of a failure go to artifacts/.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { startServer } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("./artifacts/", import.meta.url));

const CREATE = `mutation Create($input: CreateDeploymentInput!) {
  createDeployment(input: $input) { deployment { id } }
}`;

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // playwright-core adds --headless and its own fresh --user-data-dir. The rest keeps
    // Chromium from talking to anything but the page's server (updates, sync, QUIC
    // probes), which the request check below would otherwise have to tell apart.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** POSTs a GraphQL document from Node (not from the page) and returns `data`. */
async function graphql(query, variables) {
  const response = await fetch(`${server.url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.errors, undefined, JSON.stringify(body.errors));
  return body.data;
}

function createDeployment(service) {
  return graphql(CREATE, {
    input: {
      service,
      environment: "staging",
      version: "v1.2.3",
      requester: "e2e",
      workRefs: ["E2E-1"],
      risk: "none: test data",
      rollbackPlan: "redeploy the previous version",
    },
  });
}

/**
 * A new page that records everything the test must fail on: requests to any other
 * host, console errors, uncaught exceptions and CSP violations.
 */
async function openPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const problems = [];
  const origin = new URL(server.url).origin;
  const wsOrigin = origin.replace(/^http/, "ws");

  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.origin !== origin) {
      problems.push(`request to another origin: ${request.url()}`);
    }
  });
  page.on("websocket", (ws) => {
    if (new URL(ws.url()).origin !== wsOrigin) {
      problems.push(`WebSocket to another origin: ${ws.url()}`);
    }
  });
  page.on("console", (message) => {
    const text = message.text();
    if (message.type() === "error" || /content security policy/i.test(text)) {
      problems.push(`console ${message.type()}: ${text}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`uncaught exception: ${error.message}`));
  // The console reports violations too, but the event also catches any that a page
  // script swallows. Init scripts run through DevTools, outside the page's CSP.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__cspViolations.push(`${event.effectiveDirective} blocked ${event.blockedURI}`);
    });
  });

  const check = async () => {
    const violations = await page.evaluate(() => window.__cspViolations ?? []);
    assert.deepEqual([...problems, ...violations.map((v) => `CSP: ${v}`)], []);
  };
  return { page, check };
}

/** Runs `body`; on failure saves a screenshot under artifacts/ and rethrows. */
async function withScreenshot(name, page, body) {
  try {
    await body();
  } catch (err) {
    await mkdir(ARTIFACTS, { recursive: true });
    const path = `${ARTIFACTS}${name}.png`;
    await page
      .screenshot({ path, fullPage: true })
      .then(() => console.error(`screenshot: ${path}`))
      .catch((shotErr) => console.error(`no screenshot: ${shotErr.message}`));
    throw err;
  }
  if (process.env.SHIPLOG_E2E_SCREENSHOTS) {
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}${name}.png` });
  }
}

/** The text of a CodeMirror editor (the query editor or the result pane). */
function editorValue(page, selector) {
  return page.evaluate((sel) => {
    const editor = document.querySelector(`${sel} .CodeMirror`);
    return editor ? editor.CodeMirror.getValue() : null;
  }, selector);
}

/** Replaces the query editor's text by typing `query` into it. */
async function typeQuery(page, query) {
  await page.locator(".graphiql-query-editor .CodeMirror").click();
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Backspace");
  // insertText types the whole string as one input, as a paste or an IME would; typed key
  // by key, the editor's bracket auto-closing would add a second "}" for every "{".
  await page.keyboard.insertText(query);
  assert.equal(await editorValue(page, ".graphiql-query-editor"), query);
}

/** Waits until the result pane's text matches every one of `patterns`. */
async function waitForResult(page, patterns, what) {
  try {
    // Patterns cross into the page as sources: the page's CSP forbids eval, so no
    // function built from a string could run there.
    await page.waitForFunction(
      (sources) => {
        const editor = document.querySelector(".result-window .CodeMirror");
        const text = editor ? editor.CodeMirror.getValue() : "";
        return sources.every((source) => new RegExp(source).test(text));
      },
      patterns.map((pattern) => pattern.source),
      { timeout: 20_000 },
    );
  } catch (err) {
    const text = await editorValue(page, ".result-window");
    throw new Error(`result pane never showed ${what}; it shows:\n${text}`, { cause: err });
  }
}

test("GraphiQL loads offline, introspects, runs a query and a subscription", { timeout: 120_000 }, async () => {
  await createDeployment("e2e-query");
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const { page, check } = await openPage(context);
  try {
    await withScreenshot("graphiql", page, async () => {
      const response = await page.goto(`${server.url}/graphql`);
      assert.equal(response.status(), 200);
      assert.match(response.headers()["content-security-policy"] ?? "", /script-src 'self'/);
      assert.equal(await page.title(), "shiplog");

      // The page opens on the docs explorer. The schema is loaded once it lists the root
      // types and the Query type's fields, which only introspection can tell it.
      const docs = page.locator(".graphiql-doc-explorer");
      await docs.getByText("Root Types").waitFor();
      await docs.getByRole("link", { name: "Query", exact: true }).click();
      await docs.getByText("deployments", { exact: true }).first().waitFor();

      // The query explorer (plugin) builds on the same schema.
      await page.getByRole("button", { name: "Show GraphiQL Explorer" }).click();
      await page.locator(".graphiql-explorer-root").getByText("deployments", { exact: true }).waitFor();

      await typeQuery(page, "{ deployments { totalCount } }");
      await page.getByRole("button", { name: "Execute query (Ctrl-Enter)" }).click();
      await waitForResult(page, [/"totalCount":\s*1\b/], "totalCount 1");

      // Autocompletion comes from the schema: typing the start of a root field offers it.
      await typeQuery(page, "{ deploymentEv");
      await page.keyboard.press("Control+Space");
      await page.locator(".CodeMirror-hints .CodeMirror-hint", { hasText: "deploymentEvents" }).first().waitFor();
      await page.keyboard.press("Escape");

      // Subscribe through the editor; the first event may only be created once the
      // server has the subscription, i.e. once graphql-ws sent `subscribe`.
      const subscribed = new Promise((resolve) => {
        page.on("websocket", (ws) => {
          ws.on("framesent", (frame) => {
            if (String(frame.payload).includes('"subscribe"')) resolve(ws);
          });
        });
      });
      await typeQuery(page, "subscription { deploymentEvents { kind deployment { service } } }");
      await page.getByRole("button", { name: "Execute query (Ctrl-Enter)" }).click();
      let timer;
      const ws = await Promise.race([
        subscribed,
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error("GraphiQL never sent a subscribe message")),
            20_000,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(new URL(ws.url()).pathname, "/graphql/ws");

      await createDeployment("e2e-live");
      await waitForResult(
        page,
        [/"kind":\s*"CREATED"/, /"service":\s*"e2e-live"/],
        "the e2e-live CREATED event",
      );

      // The button turns into Stop while the subscription runs; stopping completes it.
      await page.getByRole("button", { name: "Stop query (Ctrl-Enter)" }).click();
      await page.getByRole("button", { name: "Execute query (Ctrl-Enter)" }).waitFor();

      await check();
    });
  } finally {
    await context.close();
  }
});
