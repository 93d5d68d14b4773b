// @azure/msal-node's ConfidentialClientApplication against the emulator, as a CAE-capable
// client (CP1) answering a resource's claims challenge.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { ConfidentialClientApplication } from "@azure/msal-node";

import {
  DOWNSTREAM_SCOPE,
  MIDDLE_TIER,
  TENANT,
  USER_OID,
  application,
  claims,
  clearRequests,
  tokenRequests,
  url,
  userToken,
} from "./support.mjs";

beforeEach(clearRequests);

/** The challenge a resource sends in WWW-Authenticate, decoded: a fresh token is needed. */
const CHALLENGE = JSON.stringify({
  access_token: { nbf: { essential: true, value: String(Math.floor(Date.now() / 1000)) } },
});

function app(secret = application(MIDDLE_TIER).secrets[0]) {
  return new ConfidentialClientApplication({
    auth: {
      clientId: MIDDLE_TIER,
      clientSecret: secret,
      authority: `${url}/${TENANT}`,
      // The emulator is the authority: no instance discovery, no authority validation.
      knownAuthorities: [new URL(url).host],
      clientCapabilities: ["CP1"],
    },
  });
}

/** The `claims` form field of the last token request, parsed. */
async function lastRequestClaims() {
  const requests = await tokenRequests();
  assert.ok(requests.length > 0, "no token request reached the emulator");
  return JSON.parse(requests.at(-1).form.claims);
}

test("client credentials with CP1, then a claims challenge", async () => {
  const client = app();
  const first = await client.acquireTokenByClientCredential({ scopes: [DOWNSTREAM_SCOPE] });
  assert.equal(claims(first.accessToken).appid, MIDDLE_TIER);
  assert.deepEqual((await lastRequestClaims()).access_token.xms_cc, { values: ["CP1"] });

  // The cached token serves the same request.
  await clearRequests();
  const cached = await client.acquireTokenByClientCredential({ scopes: [DOWNSTREAM_SCOPE] });
  assert.equal(cached.accessToken, first.accessToken);
  assert.equal((await tokenRequests()).length, 0);

  // A claims challenge bypasses the cache and is sent merged with the capability.
  const challenged = await client.acquireTokenByClientCredential({
    scopes: [DOWNSTREAM_SCOPE],
    claims: CHALLENGE,
  });
  assert.notEqual(challenged.accessToken, first.accessToken);
  const sent = await lastRequestClaims();
  assert.deepEqual(sent.access_token.xms_cc, { values: ["CP1"] });
  assert.equal(sent.access_token.nbf.essential, true);
});

test("on-behalf-of with CP1 and a claims challenge gets a long-lived CAE token", async () => {
  const client = app();
  const oboAssertion = await userToken(`api://${MIDDLE_TIER}`);
  const result = await client.acquireTokenOnBehalfOf({
    oboAssertion,
    scopes: [DOWNSTREAM_SCOPE],
    claims: CHALLENGE,
  });
  const tokenClaims = claims(result.accessToken);
  assert.equal(tokenClaims.oid, USER_OID);
  assert.equal(tokenClaims.aud, "api://downstream");
  assert.deepEqual(tokenClaims.xms_cc, ["CP1"]);
  // CAE tokens live about a day, where ordinary ones live an hour.
  const lifetimeSecs = (result.expiresOn.getTime() - Date.now()) / 1000;
  assert.ok(lifetimeSecs > 2 * 3600, `lifetime ${lifetimeSecs}s`);
  const sent = await lastRequestClaims();
  assert.deepEqual(sent.access_token.xms_cc, { values: ["CP1"] });
  assert.equal(sent.access_token.nbf.essential, true);
});

test("a wrong secret gets AADSTS7000215", async () => {
  await assert.rejects(
    app("not-the-secret").acquireTokenByClientCredential({ scopes: [DOWNSTREAM_SCOPE] }),
    (error) => {
      assert.equal(error.errorCode, "invalid_client");
      assert.match(error.errorMessage, /AADSTS7000215/);
      return true;
    },
  );
});

test("on-behalf-of with an expired user token gets AADSTS500133", async () => {
  const oboAssertion = await userToken(MIDDLE_TIER, -3600);
  await assert.rejects(
    app().acquireTokenOnBehalfOf({ oboAssertion, scopes: [DOWNSTREAM_SCOPE] }),
    /AADSTS500133/,
  );
});
