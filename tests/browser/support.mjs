// Shared helpers of the browser tests: the remediate server under test (its own data directory and, for
// PostgreSQL, its own database), the environment its child processes get, the API with a token, and axe-core.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";

export const run = promisify(execFile);
const require = createRequire(import.meta.url);
export const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
export const BIN = process.env.REMEDIATE_BIN;
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const IN_CI = (process.env.CI ?? "").toLowerCase() === "true";

/** The environment of child processes: none of the test runner's REMEDIATE_* settings or proxies. */
export function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("REMEDIATE_") || /^(https?|all|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

export async function postgresReachable() {
  try {
    await run("pg_isready", ["-h", "127.0.0.1", "-p", "5432", "-q"]);
    return true;
  } catch {
    return false;
  }
}

/** One `remediate serve` on a free port with its own data directory (and PostgreSQL database). */
export class Server {
  constructor(backend, label = "browser") {
    this.dataDir = mkdtempSync(join(tmpdir(), `remediate-${label}-${backend}-`));
    this.db = backend === "postgres" ? `remediate_${label}_${randomBytes(6).toString("hex")}` : null;
  }

  storageArgs() {
    const args = ["--data-dir", this.dataDir];
    if (this.db) args.push("--database", `postgres://postgres@127.0.0.1:5432/${this.db}`);
    return args;
  }

  async start() {
    this.proc = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", ...this.storageArgs()], {
      cwd: this.dataDir,
      env: childEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    this.proc.stderr.on("data", (d) => (err = (err + d).slice(-8000)));
    this.origin = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listener within 60 s\n${err}`)), 60_000);
      this.proc.on("exit", (code) => reject(new Error(`serve exited with ${code}\n${err}`)));
      this.proc.stdout.on("data", (d) => {
        out += d;
        const m = /^listening on (http:\/\/\S+)/m.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1].replace(/\/$/, ""));
        }
      });
    });
  }

  /** Run the binary; its last line of output. */
  async cli(...args) {
    const { stdout } = await run(BIN, args, { cwd: this.dataDir, env: childEnv(), timeout: 60_000 });
    return stdout.trim().split("\n").pop().trim();
  }

  /** A one-time sign-in link of `tenant` with these delegated permissions. */
  async loginLink(tenant, scopes) {
    return this.cli("login-link", "--tenant", tenant, ...scopes.flatMap((s) => ["--scope", s]),
      "--listen", new URL(this.origin).host, ...this.storageArgs());
  }

  /** `api(method, path, body)` on `/beta/` with a token of `tenant` with these permissions. */
  async api(tenant, scopes) {
    const token = await this.cli("token", "--tenant", tenant, "--data-dir", this.dataDir,
      ...scopes.flatMap((s) => ["--scope", s]));
    return async (method, path, body) => {
      const response = await fetch(`${this.origin}/beta/${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: body && JSON.stringify(body),
      });
      const text = await response.text();
      return { status: response.status, json: text ? JSON.parse(text) : null };
    };
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.on("exit", r));
      this.proc.kill("SIGTERM");
      await exited;
    }
    if (this.db) {
      await run("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c",
        `DROP DATABASE IF EXISTS ${this.db} WITH (FORCE)`]).catch(() => {});
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * Run axe-core in the page and fail on serious or critical violations. axe is evaluated through the DevTools
 * protocol, so the page's own Content-Security-Policy (no inline script) stays in force.
 */
export async function checkA11y(page, what) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => await globalThis.axe.run(document));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `axe on ${what}`,
  );
}
