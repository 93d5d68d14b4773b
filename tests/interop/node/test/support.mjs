// What every Node.js interop test needs: the running emulator (started by ../run.sh, which
// points EMULATOR_INFO at its info file and NODE_EXTRA_CA_CERTS at its CA), the registered
// IDs, and a few admin calls.
import { readFileSync } from "node:fs";

export const TENANT = "7a9c6e2b-3f4d-4b8a-9c1e-5d6f7a8b9c0d";
export const TENANT_DOMAIN = "contoso.onmicrosoft.com";
export const MIDDLE_TIER = "11111111-2222-3333-4444-555555555555";
export const CHAIN_APP = "44444444-5555-6666-7777-888888888888";
export const WORKLOAD = "22222222-3333-4444-5555-666666666666";
export const WORKLOAD_SUBJECT = "system:serviceaccount:default:workload";
export const DOWNSTREAM_SCOPE = "api://downstream/.default";
export const USER_OID = "00000000-0000-0000-0000-0000000000aa";

const infoPath = process.env.EMULATOR_INFO;
if (!infoPath) {
  throw new Error("EMULATOR_INFO is not set: run the suite with tests/interop/node/run.sh");
}
export const info = JSON.parse(readFileSync(infoPath, "utf8"));
export const url = info.url;

/** A registered application, by client ID. */
export function application(clientId) {
  const app = info.tenants.flatMap((tenant) => tenant.applications).find((a) => a.client_id === clientId);
  if (!app) throw new Error(`no application ${clientId} in the info file`);
  return app;
}

/** Options every @azure/identity credential gets: the emulator as authority, no discovery. */
export const identityOptions = Object.freeze({
  authorityHost: url,
  disableInstanceDiscovery: true,
});

/** The claims of a JWT, unverified. */
export function claims(token) {
  const payload = token.split(".")[1];
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
}

async function admin(method, path, body) {
  const response = await fetch(`${info.admin_url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  }
  return response.status === 204 ? null : response.json();
}

/** A user's access token for `audience`, minted by the emulator. */
export async function userToken(audience, expiresInSecs = 3600) {
  const answer = await admin("POST", "/tokens/user", {
    user: USER_OID,
    audience,
    expires_in_secs: expiresInSecs,
  });
  return answer.access_token;
}

/** A federated token for `subject` from the emulator's own issuer. */
export async function federatedToken(subject = WORKLOAD_SUBJECT) {
  const answer = await admin("POST", "/tokens/federated", { subject });
  return answer.token;
}

/** The token requests the emulator logged (secrets redacted), oldest first. */
export async function tokenRequests() {
  const records = await admin("GET", "/requests");
  return records.filter((record) => record.path.endsWith("/oauth2/v2.0/token"));
}

export async function clearRequests() {
  await admin("DELETE", "/requests");
}
