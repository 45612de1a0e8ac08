// Starts the real shiplog binary on a free port with its own database, for end-to-end
// tests. The binary is SHIPLOG_BIN, or target/debug/shiplog of this repository (build it
// first: `cargo build`).

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const DEFAULT_BIN = fileURLToPath(new URL("../../target/debug/shiplog", import.meta.url));

// Colour codes, in case a log format ever adds them: the address must parse regardless.
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const LISTENING = /listening on (http:\/\/[^\s"]+)/;

/**
 * Spawns shiplog on 127.0.0.1:0 over a fresh database in a temp dir and waits until it
 * logs its address.
 *
 * @param {object} [opts]
 * @param {string[]} [opts.args] extra command-line arguments
 * @param {Record<string, string>} [opts.env] extra environment variables
 * @param {number} [opts.startTimeoutMs] how long to wait for "listening on"
 * @returns {Promise<{ url: string, dir: string, logs: () => string, stop: () => Promise<void> }>}
 *   `url` is the base URL without a trailing slash; `logs()` is all output so far;
 *   `stop()` sends SIGTERM, waits for the exit and removes the temp dir.
 */
export async function startServer(opts = {}) {
  // Resolved now: the child runs in the temp dir, where a relative path means nothing.
  const bin = process.env.SHIPLOG_BIN ? resolve(process.env.SHIPLOG_BIN) : DEFAULT_BIN;
  const dir = await mkdtemp(join(tmpdir(), "shiplog-e2e-"));
  const args = [
    "--listen",
    "127.0.0.1:0",
    "--database-url",
    join(dir, "shiplog.db"),
    ...(opts.args ?? []),
  ];
  const child = spawn(bin, args, {
    cwd: dir,
    env: { RUST_LOG: "info", ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });

  let output = "";
  // Settles when the process is gone, or was never there (then "exit" never comes).
  const exited = new Promise((settle) => {
    child.once("exit", (code, signal) => settle({ code, signal }));
    child.once("error", (error) => settle({ error }));
  });

  let url;
  try {
    url = await new Promise((found, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`shiplog did not log its address in time:\n${output}`)),
        opts.startTimeoutMs ?? 30_000,
      );
      const onData = (chunk) => {
        output += chunk.toString("utf8");
        const match = output.replace(ANSI, "").match(LISTENING);
        if (match) {
          clearTimeout(timer);
          found(match[1]);
        }
      };
      // tracing logs to stdout; read stderr too so a panic or clap error shows up.
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      exited.then(({ code, signal, error }) => {
        clearTimeout(timer);
        reject(
          error
            ? new Error(`cannot start ${bin}: ${error.message}`)
            : new Error(`shiplog exited (${code ?? signal}) before listening:\n${output}`),
        );
      });
    });
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true });
    throw err;
  }

  let stopped;
  const stop = () => {
    // Idempotent: a test's `finally` and an `after` hook may both call it.
    stopped ??= (async () => {
      try {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          // Graceful shutdown ends subscriptions and drains requests; a server that
          // hangs on it is a bug, but the test run must still end.
          const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
          const { code, signal } = await exited;
          clearTimeout(timer);
          if (signal === "SIGKILL") {
            throw new Error(`shiplog did not stop on SIGTERM:\n${output}`);
          }
          if (code !== 0 && signal !== "SIGTERM") {
            throw new Error(`shiplog exited with ${code ?? signal} on SIGTERM:\n${output}`);
          }
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    })();
    return stopped;
  };

  return { url: url.replace(/\/$/, ""), dir, logs: () => output, stop };
}
