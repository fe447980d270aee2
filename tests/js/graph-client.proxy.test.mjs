// @microsoft/microsoft-graph-client 3.x with @azure/msal-node, through remediate's proxy mode, exactly as against
// Microsoft: the authority https://login.microsoftonline.com/{tenant}, the scope https://graph.microsoft.com/.default,
// the client's default base URL https://graph.microsoft.com/beta. What the user adds:
//   - NODE_EXTRA_CA_CERTS=<data dir>/ca.pem (run.sh; Node reads it only at start)
//   - HTTPS_PROXY=http://ADDR and, since Node 20's fetch (undici) ignores HTTPS_PROXY by itself,
//     `setGlobalDispatcher(new EnvHttpProxyAgent())` from the `undici` package. Both graph-client and msal-node 7
//     use the global fetch, so this one line sends MSAL's discovery and token requests and every Graph request
//     through the proxy.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { EnvHttpProxyAgent, setGlobalDispatcher } from "undici";
import { BACKENDS, ROLES, Server, backendOptions, claims, newTenant } from "./support/server.mjs";
import {
  MsalAuthenticationProvider, batchWrites, confidentialClient, graphClient, graphErrors, lifecycle, pageIterator250,
} from "./support/graph-client.mjs";

for (const backend of BACKENDS) {
  const { problem, skip } = await backendOptions(backend);
  describe(`graph-client through the proxy, Graph's real URLs [${backend}]`, { skip }, () => {
    let server;
    let client;
    let base;

    before(async () => {
      if (problem) throw new Error(problem);
      server = new Server(backend, { proxy: true });
      await server.start();
      for (const name of ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"]) delete process.env[name];
      process.env.HTTPS_PROXY = `http://${server.proxyAddress}`;
      setGlobalDispatcher(new EnvHttpProxyAgent());

      const tenant = newTenant();
      const app = await server.registerApp(tenant);
      const cca = confidentialClient({ tenant, ...app });
      // MSAL's real client-credentials flow, through the proxy: instance discovery, OpenID configuration, token.
      const token = await cca.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] });
      const c = claims(token.accessToken);
      assert.deepEqual([c.tid, c.appid, c.roles], [tenant, app.clientId, ROLES], JSON.stringify(c));
      client = graphClient(new MsalAuthenticationProvider(cca));
      base = "https://graph.microsoft.com/beta";
    });

    after(async () => {
      const trouble = await server?.stop();
      if (trouble) throw new Error(trouble);
    });

    test("lifecycle: script, assign, device, the seed POST, $filter/$select/$expand", async () => {
      await lifecycle(client, "https://graph.microsoft.com");
    });

    test("PageIterator over 250 run states made with $batch; nextLinks on graph.microsoft.com", async () => {
      await pageIterator250(client, base, "https://graph.microsoft.com");
    });

    test("BatchRequestContent with writes, read through BatchResponseContent", async () => {
      await batchWrites(client, base, "https://graph.microsoft.com");
    });

    test("GraphError details on a 400 and a 404", async () => {
      await graphErrors(client);
    });

    test("MSAL sees Entra's refusals (wrong secret, unknown client) through the proxy", async () => {
      const tenant = newTenant();
      const app = await server.registerApp(tenant, ["DeviceManagementScripts.Read.All"]);
      const wrong = confidentialClient({ tenant, clientId: app.clientId, secret: "rma~wrong" });
      await assert.rejects(wrong.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] }),
        (e) => e.errorCode === "invalid_client" && /AADSTS7000215/.test(e.errorMessage), "wrong secret");
      const unknown = confidentialClient({ tenant, clientId: newTenant(), secret: app.secret });
      await assert.rejects(unknown.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] }),
        (e) => /AADSTS700016/.test(e.errorMessage), "unknown client");
      // A role the app lacks: Graph's 403 through graph-client.
      const reader = graphClient(new MsalAuthenticationProvider(confidentialClient({ tenant, ...app })));
      assert.deepEqual((await reader.api("/deviceManagement/deviceHealthScripts").get()).value, []);
      await assert.rejects(reader.api("/deviceManagement/managedDevices").get(), (e) => e.statusCode === 403 && e.code === "Forbidden");
    });
  });
}
