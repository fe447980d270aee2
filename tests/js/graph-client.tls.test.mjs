// @microsoft/microsoft-graph-client 3.x with @azure/msal-node against `remediate serve --tls` directly: the server's
// https origin as graph-client's `baseUrl` (with its host in `customHosts`, or graph-client sends no token there)
// and as MSAL's authority host (in `knownAuthorities`, so MSAL asks the server itself, not Microsoft's instance
// discovery). The local CA is trusted through NODE_EXTRA_CA_CERTS (set by run.sh before Node starts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { BACKENDS, Server, backendOptions, claims, newTenant } from "./support/server.mjs";
import {
  MsalAuthenticationProvider, batchWrites, confidentialClient, graphClient, graphErrors, lifecycle, pageIterator250,
} from "./support/graph-client.mjs";

for (const backend of BACKENDS) {
  const { problem, skip } = await backendOptions(backend);
  describe(`graph-client over --tls with baseUrl [${backend}]`, { skip }, () => {
    let server;
    let client;

    before(async () => {
      if (problem) throw new Error(problem);
      server = new Server(backend, { tls: true });
      await server.start();
      assert.match(server.origin, /^https:\/\/127\.0\.0\.1:\d+$/);
      const tenant = newTenant();
      const app = await server.registerApp(tenant);
      const host = new URL(server.origin).host;
      const cca = confidentialClient({ tenant, ...app, authorityHost: server.origin, knownAuthorities: [host] });
      const token = await cca.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] });
      assert.equal(claims(token.accessToken).tid, tenant);
      client = graphClient(new MsalAuthenticationProvider(cca), server.origin);
    });

    after(async () => {
      const trouble = await server?.stop();
      if (trouble) throw new Error(trouble);
    });

    test("lifecycle: script, assign, device, the seed POST, $filter/$select/$expand", async () => {
      await lifecycle(client, server.origin);
    });

    test("PageIterator over 250 run states made with $batch; nextLinks on the https origin", async () => {
      await pageIterator250(client, server.base, server.origin);
    });

    test("BatchRequestContent with writes, read through BatchResponseContent", async () => {
      await batchWrites(client, server.base, server.origin);
    });

    test("GraphError details on a 400 and a 404", async () => {
      await graphErrors(client);
    });
  });
}
