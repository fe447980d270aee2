// Makes the run's local CA: starts `remediate serve --tls` once in DIR, reads where its startup output says the
// CA certificate is, stops it, and prints that path (run.sh exports it as NODE_EXTRA_CA_CERTS, which Node reads
// only when it starts; every server of the run then reuses this CA from its own data directory).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { get } from "node:https";
import { serverBinary } from "./server.mjs";

const dir = process.argv[2];
if (!dir) throw new Error("usage: node support/make-ca.mjs DIR");
mkdirSync(dir, { recursive: true });
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("REMEDIATE_")));
const proc = spawn(serverBinary(), ["serve", "--tls", "--listen", "127.0.0.1:0", "--data-dir", dir], {
  cwd: dir, env, stdio: ["ignore", "pipe", "pipe"],
});
let out = "";
let err = "";
proc.stderr.on("data", (d) => { err = (err + d.toString()).slice(-4000); });
const [path, origin] = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`no 'local CA certificate:' line within 60 s:\n${out}`)), 60_000);
  proc.on("exit", (code) => reject(new Error(`remediate serve --tls exited with ${code}:\n${out}\n${err}`)));
  proc.stdout.on("data", (d) => {
    out += d.toString();
    const m = /^local CA certificate: (\S+)/m.exec(out);
    const origin = /^listening on (https:\/\/\S+)/m.exec(out);
    if (m && origin) { clearTimeout(timer); resolve([m[1], origin[1]]); }
  });
});
proc.removeAllListeners("exit");
// The server installs its SIGTERM handler only once it serves (after printing its addresses): a SIGTERM right
// after the startup lines can kill it outright. An answered /healthz (over https, trusting the new CA) means
// it is serving.
const status = await new Promise((resolve, reject) => {
  get(`${origin}/healthz`, { ca: readFileSync(path) }, (res) => { res.resume(); resolve(res.statusCode); }).on("error", reject);
});
if (status !== 200) throw new Error(`GET ${origin}/healthz answered ${status}`);
const exited = new Promise((resolve) => proc.on("exit", resolve));
proc.kill("SIGTERM");
const code = await exited;
if (code !== 0) throw new Error(`remediate serve --tls exited with ${code} after SIGTERM`);
if (!existsSync(path) || !existsSync(`${dir}/ca-key.pem`)) throw new Error(`the CA files are not in ${dir}`);
console.log(path);
