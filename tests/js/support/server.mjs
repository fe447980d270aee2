// One `remediate serve` per storage backend, as tests/sdk/conftest.py does it for the Python suite:
// the release binary on a free port with its own data directory, SQLite by default or a fresh PostgreSQL
// database (created by the server, dropped afterwards), stopped with SIGTERM and required to exit cleanly.
import { spawn, execFile } from "node:child_process";
import { copyFileSync, chmodSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { randomBytes, randomUUID } from "node:crypto";
import pg from "pg";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "..", "..", "..");

export const ROLES = ["DeviceManagementScripts.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All"];
export const GRAPH_DEFAULT = "https://graph.microsoft.com/.default";
const PG_ADMIN = { host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" };
export const IN_CI = (process.env.CI ?? "").toLowerCase() === "true";

export function serverBinary() {
  const bin = process.env.REMEDIATE_BIN ? resolve(process.env.REMEDIATE_BIN) : join(repoRoot, "target", "release", "remediate");
  if (!existsSync(bin)) throw new Error(`server binary not found: ${bin} (build it, or set REMEDIATE_BIN)`);
  return bin;
}

/** The server reads REMEDIATE_* configuration; keep the caller's (and any proxy settings) away from it. */
function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("REMEDIATE_") || /^(https?|all|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  env.NO_COLOR = "1";
  return env;
}

async function pgAdmin(sql) {
  const client = new pg.Client({ ...PG_ADMIN, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * Is PostgreSQL reachable? `null` when it is, else why not. Under CI=true an unreachable PostgreSQL is a failure
 * of the suite (the caller turns the reason into a failing test), otherwise that backend's tests are skipped.
 */
export async function postgresProblem() {
  try {
    await pgAdmin("SELECT 1");
    return null;
  } catch (err) {
    return `PostgreSQL at ${PG_ADMIN.host}:${PG_ADMIN.port} unreachable: ${err.message}`;
  }
}

export const BACKENDS = ["sqlite", "postgres"];

/** `describe` options for a backend: PostgreSQL's half is skipped when unreachable, except under CI=true. */
export async function backendOptions(backend) {
  if (backend !== "postgres") return { problem: null, skip: false };
  const problem = await postgresProblem();
  if (!problem) return { problem: null, skip: false };
  if (IN_CI) return { problem: `${problem} (CI=true: PostgreSQL is required)`, skip: false };
  return { problem, skip: problem };
}

export class Server {
  /**
   * @param {string} backend "sqlite" | "postgres"
   * @param {{tls?: boolean, proxy?: boolean, args?: string[]}} options
   */
  constructor(backend, options = {}) {
    this.backend = backend;
    this.binary = serverBinary();
    this.tls = !!options.tls;
    this.proxy = !!options.proxy;
    this.extraArgs = options.args ?? [];
    this.dataDir = mkdtempSync(join(tmpdir(), `remediate-js-${backend}-`));
    this.dbName = backend === "postgres" ? `remediate_js_${randomBytes(6).toString("hex")}` : null;
    this.databaseUrl = this.dbName ? `postgres://postgres@127.0.0.1:5432/${this.dbName}` : null;
    this.stdout = "";
    this.stderr = "";
    this.origin = "";
    this.proxyAddress = "";
    this.caPath = "";
  }

  /** Arguments that select this server's data directory and database, for `serve`, `token` and `app`. */
  storageArgs() {
    const args = ["--data-dir", this.dataDir];
    if (this.databaseUrl) args.push("--database", this.databaseUrl);
    return args;
  }

  async start(timeoutMs = 60_000) {
    if (this.tls || this.proxy) {
      // One local CA for the whole run (run.sh makes it and exports NODE_EXTRA_CA_CERTS, which Node reads only
      // at start): the server reuses a CA it finds in its data directory.
      const caDir = process.env.REMEDIATE_JS_CA_DIR;
      if (!caDir || !process.env.NODE_EXTRA_CA_CERTS) {
        throw new Error("REMEDIATE_JS_CA_DIR / NODE_EXTRA_CA_CERTS are not set: run the suite with tests/js/run.sh");
      }
      copyFileSync(join(caDir, "ca.pem"), join(this.dataDir, "ca.pem"));
      copyFileSync(join(caDir, "ca-key.pem"), join(this.dataDir, "ca-key.pem"));
      chmodSync(join(this.dataDir, "ca-key.pem"), 0o600);
    }
    const args = ["serve", "--listen", "127.0.0.1:0", ...this.storageArgs()];
    if (this.tls) args.push("--tls");
    if (this.proxy) args.push("--proxy-listen", "127.0.0.1:0");
    args.push(...this.extraArgs);
    this.command = `${this.binary} ${args.join(" ")}`;
    this.proc = spawn(this.binary, args, { cwd: this.dataDir, env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((res) => this.proc.on("exit", (code, signal) => res({ code, signal })));
    this.proc.stderr.on("data", (d) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
    await new Promise((resolveStart, rejectStart) => {
      const timer = setTimeout(() => fail(`did not announce its listeners within ${timeoutMs / 1000} s`), timeoutMs);
      const fail = (why) => {
        clearTimeout(timer);
        this.proc.kill("SIGKILL");
        rejectStart(new Error(`\`${this.command}\` ${why}\nstdout:\n${this.stdout}\nstderr:\n${this.stderr.slice(-4000)}`));
      };
      const early = (code) => fail(`exited with code ${code} before it was ready`);
      this.proc.on("exit", early);
      this.proc.stdout.on("data", (d) => {
        this.stdout += d.toString();
        const listening = /^listening on (https?:\/\/\S+)/m.exec(this.stdout);
        const proxy = /^proxy listening on http:\/\/(\S+)/m.exec(this.stdout);
        const ca = /^local CA certificate: (\S+)/m.exec(this.stdout);
        if (listening && (!this.proxy || proxy) && (!(this.tls || this.proxy) || ca)) {
          clearTimeout(timer);
          this.proc.off("exit", early);
          this.origin = listening[1].replace(/\/$/, "");
          this.proxyAddress = proxy?.[1] ?? "";
          this.caPath = ca?.[1] ?? "";
          resolveStart();
        }
      });
    });
    this.base = `${this.origin}/beta`;
  }

  /** SIGTERM, then wait; returns a problem description, or null when the server exited cleanly. */
  async stop(timeoutMs = 20_000) {
    let problem = null;
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill("SIGTERM");
      let timer;
      const timeout = new Promise((res) => { timer = setTimeout(() => res(null), timeoutMs); });
      const result = await Promise.race([this.exited, timeout]);
      clearTimeout(timer);
      if (!result) {
        this.proc.kill("SIGKILL");
        problem = `[${this.backend}] server did not exit within ${timeoutMs / 1000} s of SIGTERM`;
      } else if (result.code !== 0) {
        problem = `[${this.backend}] server exited with ${result.code ?? result.signal} after SIGTERM; stderr:\n${this.stderr.slice(-3000)}`;
      }
    }
    if (this.dbName) {
      try {
        await pgAdmin(`DROP DATABASE IF EXISTS "${this.dbName}" WITH (FORCE)`);
      } catch (err) {
        process.stderr.write(`warning: could not drop database ${this.dbName}: ${err.message}\n`);
      }
    }
    if (problem) return `${problem}\n(data directory kept: ${this.dataDir})`;
    rmSync(this.dataDir, { recursive: true, force: true });
    return null;
  }

  async cli(...args) {
    try {
      const { stdout } = await run(this.binary, args, { cwd: this.dataDir, env: childEnv(), timeout: 60_000 });
      return stdout.split("\n").map((l) => l.trim()).filter(Boolean);
    } catch (err) {
      throw new Error(`\`remediate ${args.join(" ")}\` failed: ${err.message}\n${err.stdout ?? ""}\n${err.stderr ?? ""}`);
    }
  }

  /** `remediate app create`: an app registered in the tenant; its client id and secret. */
  async registerApp(tenant, roles = ROLES) {
    const args = ["app", "create", "--tenant", tenant, "--name", "tests/js"];
    for (const role of roles) args.push("--role", role);
    const lines = await this.cli(...args, ...this.storageArgs());
    const [clientId, secret] = lines.slice(-2);
    return { clientId, secret };
  }

  /** `remediate token`: an app-only token of the data directory's key, with these roles. */
  async token(tenant, roles = ROLES) {
    const args = ["token", "--tenant", tenant, "--data-dir", this.dataDir];
    for (const role of roles) args.push("--role", role);
    const lines = await this.cli(...args);
    const token = lines.at(-1);
    if (!token || token.split(".").length !== 3) throw new Error(`remediate token printed no JWT: ${lines.join("\n")}`);
    return token;
  }
}

export function newTenant() {
  return randomUUID();
}

export function claims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}
