// schema.graphql checked with the ecosystem's own tools: it must build with graphql-js,
// keep every promise of the contract copy in tests/contract (graphql-js
// findBreakingChanges finds no breaking change from it), and be what the live server
// answers to the standard introspection query.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import {
  buildSchema,
  buildClientSchema,
  findBreakingChanges,
  getIntrospectionQuery,
  lexicographicSortSchema,
  printSchema,
} from "graphql";

import { startServer } from "./server.mjs";

const repo = new URL("../../", import.meta.url);
const read = (path) => readFile(new URL(path, repo), "utf8");

test("schema.graphql builds with graphql-js", async () => {
  const schema = buildSchema(await read("schema.graphql"));
  assert.ok(schema.getQueryType(), "has a Query type");
  assert.ok(schema.getMutationType(), "has a Mutation type");
  assert.ok(schema.getSubscriptionType(), "has a Subscription type");
});

test("schema.graphql has no breaking change from the contract copy", async () => {
  const contract = buildSchema(await read("tests/contract/contract.graphql"));
  const ours = buildSchema(await read("schema.graphql"));
  const breaking = findBreakingChanges(contract, ours).map((c) => `${c.type}: ${c.description}`);
  assert.deepEqual(breaking, [], breaking.join("\n"));
});

test("the live server's introspection is schema.graphql", async () => {
  const server = await startServer();
  try {
    const response = await fetch(`${server.url}/graphql`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/graphql-response+json",
      },
      body: JSON.stringify({
        query: getIntrospectionQuery({
          descriptions: true,
          specifiedByUrl: true,
          directiveIsRepeatable: true,
          schemaDescription: true,
          inputValueDeprecation: true,
        }),
      }),
    });
    assert.equal(response.status, 200);
    const body = await response.json();
    assert.equal(body.errors, undefined, JSON.stringify(body.errors));
    // async-graphql describes every schema with the spec's generic sentence about
    // schemas; the SDL export leaves it out.
    delete body.data.__schema.description;
    const live = lexicographicSortSchema(buildClientSchema(body.data));
    const file = lexicographicSortSchema(buildSchema(await read("schema.graphql")));
    assert.equal(printSchema(live), printSchema(file));
  } finally {
    await server.stop();
  }
});
