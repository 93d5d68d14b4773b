// @azure/identity's confidential credentials against the emulator.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import {
  ClientAssertionCredential,
  ClientCertificateCredential,
  ClientSecretCredential,
  OnBehalfOfCredential,
} from "@azure/identity";

import {
  CHAIN_APP,
  DOWNSTREAM_SCOPE,
  MIDDLE_TIER,
  TENANT,
  TENANT_DOMAIN,
  USER_OID,
  WORKLOAD,
  WORKLOAD_SUBJECT,
  application,
  claims,
  clearRequests,
  federatedToken,
  identityOptions,
  tokenRequests,
  userToken,
} from "./support.mjs";

beforeEach(clearRequests);

const middleTier = application(MIDDLE_TIER);
const secret = middleTier.secrets[0];

test("ClientSecretCredential gets an app token", async () => {
  const credential = new ClientSecretCredential(TENANT_DOMAIN, MIDDLE_TIER, secret, identityOptions);
  const token = await credential.getToken(DOWNSTREAM_SCOPE);
  const tokenClaims = claims(token.token);
  assert.equal(tokenClaims.aud, "api://downstream");
  assert.equal(tokenClaims.appid, MIDDLE_TIER);
  assert.equal(tokenClaims.tid, TENANT);
  assert.equal(tokenClaims.idtyp, "app");
  assert.ok(token.expiresOnTimestamp > Date.now());
  const [request] = await tokenRequests();
  assert.equal(request.client_auth, "client_secret");
});

test("ClientSecretCredential with a wrong secret gets AADSTS7000215", async () => {
  const credential = new ClientSecretCredential(TENANT, MIDDLE_TIER, "not-the-secret", identityOptions);
  await assert.rejects(credential.getToken(DOWNSTREAM_SCOPE), (error) => {
    assert.match(error.message, /AADSTS7000215/);
    return true;
  });
});

test("ClientCertificateCredential signs an assertion without the chain", async () => {
  const certificate = middleTier.certificates[0];
  const credential = new ClientCertificateCredential(
    TENANT,
    MIDDLE_TIER,
    { certificatePath: certificate.combined_pem_path },
    identityOptions,
  );
  const token = await credential.getToken(DOWNSTREAM_SCOPE);
  assert.equal(claims(token.token).appid, MIDDLE_TIER);
  const [request] = await tokenRequests();
  assert.match(request.client_auth, /^certificate (PS256|RS256) x5t/);
  assert.doesNotMatch(request.client_auth, /x5c/);
});

test("ClientCertificateCredential with sendCertificateChain passes subject name/issuer", async () => {
  const certificate = application(CHAIN_APP).certificates[0];
  const withoutChain = new ClientCertificateCredential(
    TENANT,
    CHAIN_APP,
    { certificatePath: certificate.combined_pem_path },
    identityOptions,
  );
  await assert.rejects(withoutChain.getToken(DOWNSTREAM_SCOPE), /AADSTS700027/);

  const withChain = new ClientCertificateCredential(
    TENANT,
    CHAIN_APP,
    { certificatePath: certificate.combined_pem_path },
    { ...identityOptions, sendCertificateChain: true },
  );
  const token = await withChain.getToken(DOWNSTREAM_SCOPE);
  assert.equal(claims(token.token).appid, CHAIN_APP);
  const requests = await tokenRequests();
  assert.match(requests.at(-1).client_auth, /x5c$/);
});

test("ClientAssertionCredential presents a federated token", async () => {
  let calls = 0;
  const credential = new ClientAssertionCredential(
    TENANT,
    WORKLOAD,
    async () => {
      calls += 1;
      return federatedToken(WORKLOAD_SUBJECT);
    },
    identityOptions,
  );
  const token = await credential.getToken(DOWNSTREAM_SCOPE);
  assert.equal(claims(token.token).appid, WORKLOAD);
  assert.ok(calls >= 1);
  const [request] = await tokenRequests();
  assert.equal(request.client_auth, "federated");
});

test("OnBehalfOfCredential exchanges a user's token", async () => {
  const credential = new OnBehalfOfCredential({
    tenantId: TENANT,
    clientId: MIDDLE_TIER,
    clientSecret: secret,
    userAssertionToken: await userToken(`api://${MIDDLE_TIER}`),
    ...identityOptions,
  });
  const token = await credential.getToken(DOWNSTREAM_SCOPE);
  const tokenClaims = claims(token.token);
  assert.equal(tokenClaims.aud, "api://downstream");
  assert.equal(tokenClaims.oid, USER_OID);
  assert.equal(tokenClaims.azp, MIDDLE_TIER);
  const [request] = await tokenRequests();
  assert.equal(request.form.requested_token_use, "on_behalf_of");
});

test("OnBehalfOfCredential with an expired user token gets AADSTS500133", async () => {
  const credential = new OnBehalfOfCredential({
    tenantId: TENANT,
    clientId: MIDDLE_TIER,
    clientSecret: secret,
    userAssertionToken: await userToken(MIDDLE_TIER, -3600),
    ...identityOptions,
  });
  await assert.rejects(credential.getToken(DOWNSTREAM_SCOPE), /AADSTS500133/);
});
