// The dashboard's OIDC sign-in in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
// a small OIDC provider started by the test (discovery, JWKS, an authorization endpoint that approves at once, a
// token endpoint that checks the PKCE verifier and signs an ES256 ID token) on http://localhost, the server on
// http://127.0.0.1 — another site, so the browser's SameSite rules apply as with a real issuer. Sign in → the
// overview of the token's tenant; axe on the sign-in page. SQLite (the Rust tests cover both databases).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createHash, generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BIN = process.env.REMEDIATE_BIN;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const CLIENT = "remediate-dashboard";

const b64url = (data) => Buffer.from(data).toString("base64url");

/** The provider: (its issuer URL, what its token endpoint saw). */
async function startProvider() {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: "k1", alg: "ES256", use: "sig" };
  const codes = new Map();
  const seen = { verified: 0, refused: [] };
  const server = createServer((req, res) => {
    const url = new URL(req.url, issuer);
    const json = (status, body) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === "/.well-known/openid-configuration") {
      return json(200, { issuer, authorization_endpoint: `${issuer}/authorize`, token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/keys` });
    }
    if (url.pathname === "/keys") return json(200, { keys: [jwk] });
    if (url.pathname === "/authorize") {
      const q = url.searchParams;
      const code = randomUUID();
      codes.set(code, { challenge: q.get("code_challenge"), method: q.get("code_challenge_method"),
        nonce: q.get("nonce"), redirect: q.get("redirect_uri") });
      const back = new URL(q.get("redirect_uri"));
      back.searchParams.set("code", code);
      back.searchParams.set("state", q.get("state"));
      res.writeHead(302, { location: back.toString() });
      return res.end();
    }
    if (url.pathname === "/token" && req.method === "POST") {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        const form = new URLSearchParams(body);
        const grant = codes.get(form.get("code"));
        codes.delete(form.get("code"));
        const challenge = createHash("sha256").update(form.get("code_verifier") ?? "").digest("base64url");
        if (!grant || grant.method !== "S256" || grant.challenge !== challenge || form.get("client_id") !== CLIENT
          || form.get("redirect_uri") !== grant.redirect) {
          seen.refused.push(form.toString());
          return json(400, { error: "invalid_grant" });
        }
        seen.verified += 1;
        const now = Math.floor(Date.now() / 1000);
        const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT", kid: "k1" }));
        const claims = b64url(JSON.stringify({ iss: issuer, aud: CLIENT, sub: "alice", tid: "contoso-oidc",
          nonce: grant.nonce, iat: now, exp: now + 600, roles: ["DeviceManagementScripts.Read.All"] }));
        const signature = sign("sha256", Buffer.from(`${header}.${claims}`), { key: privateKey, dsaEncoding: "ieee-p1363" });
        return json(200, { token_type: "Bearer", access_token: "opaque", id_token: `${header}.${claims}.${b64url(signature)}` });
      });
      return undefined;
    }
    return json(404, {});
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  // "localhost", not 127.0.0.1: another site than the server's.
  const issuer = `http://localhost:${server.address().port}`;
  return { issuer, seen, server };
}

async function freePort() {
  const probe = createServer();
  await new Promise((r) => probe.listen(0, "127.0.0.1", r));
  const { port } = probe.address();
  await new Promise((r) => probe.close(r));
  return port;
}

let provider;
let proc;
let dataDir;
let origin;
let browser;

before(async () => {
  provider = await startProvider();
  dataDir = mkdtempSync(join(tmpdir(), "remediate-oidc-"));
  origin = `http://127.0.0.1:${await freePort()}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("REMEDIATE_")));
  proc = spawn(BIN, ["serve", "--listen", origin.slice("http://".length), "--data-dir", dataDir,
    "--dashboard-oidc-issuer", provider.issuer, "--dashboard-oidc-client-id", CLIENT,
    "--dashboard-oidc-redirect", `${origin}/oidc/callback`], { cwd: dataDir, env, stdio: ["ignore", "pipe", "pipe"] });
  await new Promise((resolve, reject) => {
    let out = "";
    proc.on("exit", (code) => reject(new Error(`serve exited with ${code}`)));
    proc.stdout.on("data", (d) => {
      out += d;
      if (/^listening on /m.test(out)) resolve();
    });
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc.on("exit", r));
    proc.kill("SIGTERM");
    await exited;
  }
  provider?.server.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

test("Sign in with OIDC: authorization code with PKCE, then the overview of the token's tenant", async () => {
  const context = await browser.newContext({ bypassCSP: true });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  assert.equal(new URL(page.url()).pathname, "/login");
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () => await globalThis.axe.run(document));
  assert.deepEqual(result.violations.filter((v) => v.impact === "serious" || v.impact === "critical").map((v) => v.id), []);

  await page.getByRole("link", { name: "Sign in" }).click();
  // Through the provider and back; the page of this origin moves on to the overview.
  await page.waitForURL(`${origin}/`);
  assert.equal(await page.locator("h1").textContent(), "Remediations");
  assert.match(await page.locator(".who").textContent(), /contoso-oidc/);
  assert.equal(provider.seen.verified, 1, "the PKCE verifier was sent and matched");
  assert.deepEqual(provider.seen.refused, []);
  const cookies = await context.cookies();
  assert.ok(cookies.find((c) => c.name === "remediate_session")?.httpOnly);
  assert.ok(!cookies.some((c) => c.name === "remediate_oidc"), "the pending cookie is cleared");

  // Signed out and in again works the same.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/\/login$/);
  await page.getByRole("link", { name: "Sign in" }).click();
  await page.waitForURL(`${origin}/`);
  assert.equal(provider.seen.verified, 2);
  await context.close();
});
