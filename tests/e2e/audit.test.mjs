// The GraphQL-over-HTTP audit of graphql-http (the reference implementation's own
// `serverAudits`), run against the real binary. Every MUST and SHOULD has to pass; the
// MAYs are reported, and we pass those too today, so they are held as well.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { serverAudits } from "graphql-http";

import { startServer } from "./server.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

test("every graphql-http server audit passes", async () => {
  const results = [];
  for (const audit of serverAudits({ url: `${server.url}/graphql` })) {
    results.push(await audit.fn());
  }
  const failed = results.filter((result) => result.status !== "ok");
  const lines = failed.map((r) => `${r.status} ${r.id} ${r.name}: ${r.reason}`);
  assert.ok(results.length > 50, `the audit ran (${results.length} checks)`);
  assert.deepEqual(lines, [], `failed audits:\n${lines.join("\n")}`);
  // Separately, so a failure names the level that matters.
  const must = failed.filter((r) => r.name.startsWith("MUST"));
  const should = failed.filter((r) => r.name.startsWith("SHOULD"));
  assert.equal(must.length + should.length, 0);
});
