#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into fuzz/corpus/<target>/seed-*.

Run once before the first fuzzing run (the committed corpora already hold what the seeds
contributed, minimised): `python3 fuzz/seeds/make_seeds.py`. Needs the openssl command
for the certificates; the keys it makes are throwaway keys for the corpus, used nowhere
else. msal_python_1.39.0.json is a cache document written by MSAL Python 1.39.0's
SerializableTokenCache (one app-only token; one user's access, refresh and ID tokens).
"""

import base64
import json
import pathlib
import struct
import subprocess
import tempfile

FUZZ = pathlib.Path(__file__).resolve().parent.parent
CORPUS = FUZZ / "corpus"
NOW = 1_700_000_000


def write(target, name, data):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (directory / f"seed-{name}").write_bytes(data)


def b64(value):
    if not isinstance(value, bytes):
        value = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def jwt(header, claims):
    return f"{b64(header)}.{b64(claims)}.{b64(b'signature-bytes-not-checked')}"


ACCESS_TOKEN = jwt(
    {"typ": "JWT", "alg": "RS256", "x5t": "CNv0OI3RwqlHFEVnaoMAshCH2XE", "kid": "CNv0OI3RwqlHFEVnaoMAshCH2XE"},
    {
        "aud": "https://graph.microsoft.com",
        "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "iat": NOW, "nbf": NOW, "exp": NOW + 3599,
        "aio": "E2VgYJg", "app_displayname": "middle-tier",
        "appid": "9ba1a5c7-f17a-4de9-a1f1-6178c8d51223", "appidacr": "2",
        "idp": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "idtyp": "app", "oid": "b2b1e6a1-0000-0000-0000-000000000000",
        "roles": ["User.Read.All"], "sub": "b2b1e6a1-0000-0000-0000-000000000000",
        "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "ver": "1.0", "xms_cc": ["CP1"],
    },
)


def token_responses():
    def response(name, status, body, request_time=NOW):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        write("token_response", name, struct.pack(">Hq", status, request_time) + body)

    response("client-credentials", 200, {
        "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
        "access_token": ACCESS_TOKEN,
    })
    response("on-behalf-of", 200, {
        "token_type": "Bearer", "scope": "https://storage.azure.com/user_impersonation",
        "expires_in": "4378", "ext_expires_in": 4378, "refresh_in": 2189,
        "access_token": "SECRET-" + ACCESS_TOKEN,
        "refresh_token": "0.AXEAv4j5cvGGr0GRqy180BHbR8elodr3GdlNofFheMjVEiNxAAA.AgABAAEAAAD",
    })
    response("adfs-expires-on", 200, {
        "access_token": "SECRET-adfs", "token_type": "bearer", "expires_on": NOW + 3600,
        "resource": "urn:microsoft:userinfo",
    })
    response("invalid-client", 401, {
        "error": "invalid_client",
        "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
        "being sent in the request is the client secret value, not the client secret ID.\r\n"
        "Trace ID: 0b7a5c3e-0000-0000-0000-000000000000\r\nCorrelation ID: "
        "1f2e3d4c-0000-0000-0000-000000000000\r\nTimestamp: 2023-11-14 22:13:20Z",
        "error_codes": [7000215], "timestamp": "2023-11-14 22:13:20Z",
        "trace_id": "0b7a5c3e-0000-0000-0000-000000000000",
        "correlation_id": "1f2e3d4c-0000-0000-0000-000000000000",
        "error_uri": "https://login.microsoftonline.com/error?code=7000215",
    })
    response("claims-challenge", 400, {
        "error": "invalid_grant",
        "error_description": "AADSTS50076: Due to a configuration change made by your "
        "administrator, or because you moved to a new location, you must use multi-factor "
        "authentication to access 'https://graph.microsoft.com'.",
        "error_codes": [50076], "suberror": "basic_action",
        "claims": json.dumps({"access_token": {"capolids": {"essential": True, "values": ["c1"]}}}),
    })
    response("throttled", 429, {
        "error": "temporarily_unavailable", "error_description": "AADSTS50196: The server "
        "terminated an operation because it encountered a client request loop.",
        "error_codes": [50196],
    })
    response("bad-gateway", 502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
    response("empty", 200, "")
    response("truncated", 200, '{"token_type":"Bearer","expires_in":3599,"access_token":"SECRET-cut')


def certificates(work):
    def run(*args):
        subprocess.run(["openssl", *args], cwd=work, check=True, capture_output=True)

    def read(name):
        return (work / name).read_bytes()

    def certificate(name, data, password=None):
        selector = b"\0" if password is None else bytes([len(password) + 1]) + password
        write("certificate", name, selector + data)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
        "cert.pem", "-days", "3650", "-subj", "/CN=entra-fuzz-client")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "3650", "-subj", "/CN=entra-fuzz-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr",
        "-subj", "/CN=entra-fuzz-leaf")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", "3650")
    run("rsa", "-in", "key.pem", "-traditional", "-out", "key_pkcs1.pem")
    run("pkcs8", "-topk8", "-in", "key.pem", "-v2", "aes-256-cbc", "-passout", "pass:pa55",
        "-out", "key_pbkdf2.pem")
    run("pkcs8", "-topk8", "-in", "key.pem", "-scrypt", "-passout", "pass:pa55", "-out",
        "key_scrypt.pem")
    run("pkcs12", "-export", "-inkey", "key.pem", "-in", "cert.pem", "-passout", "pass:pa55",
        "-out", "modern.p12")
    run("pkcs12", "-export", "-inkey", "key.pem", "-in", "cert.pem", "-passout", "pass:",
        "-out", "nopass.p12")
    run("pkcs12", "-export", "-legacy", "-inkey", "key.pem", "-in", "cert.pem", "-passout",
        "pass:pa55", "-out", "legacy.p12")
    run("pkcs12", "-export", "-inkey", "leaf.key", "-in", "leaf.pem", "-certfile", "ca.pem",
        "-passout", "pass:pa55", "-out", "chain.p12")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ec.key", "-out", "ec.pem", "-days", "3650", "-subj", "/CN=ec")

    certificate("pkcs8-pem", read("key.pem") + read("cert.pem"))
    certificate("pkcs1-pem", read("cert.pem") + read("key_pkcs1.pem"))
    certificate("pbkdf2-pem", read("key_pbkdf2.pem") + read("cert.pem"), b"pa55")
    certificate("scrypt-pem", read("key_scrypt.pem") + read("cert.pem"), b"pa55")
    certificate("chain-pem", read("ca.pem") + read("leaf.pem") + read("leaf.key"))
    certificate("ec-pem", read("ec.key") + read("ec.pem"))
    certificate("modern-p12", read("modern.p12"), b"pa55")
    certificate("nopass-p12", read("nopass.p12"))
    certificate("legacy-p12", read("legacy.p12"), b"pa55")
    certificate("chain-p12", read("chain.p12"), b"pa55")


def msal_caches():
    real = (FUZZ / "seeds" / "msal_python_1.39.0.json").read_text()
    write("msal_cache", "msal-python", real)
    write("msal_cache", "msal-python-compact", json.dumps(json.loads(real), separators=(",", ":")))
    assertion_hash = "a" * 64
    key = f"client:obo:{assertion_hash}:https://login.microsoftonline.com:tenant"
    write("msal_cache", "entra-identity", json.dumps({
        "AccessToken": {
            f"-login.microsoftonline.com-accesstoken-{key}-tenant-api://downstream/.default": {
                "credential_type": "AccessToken", "secret": "at-1", "home_account_id": None,
                "environment": "login.microsoftonline.com", "client_id": key,
                "target": "api://downstream/.default", "realm": "tenant",
                "token_type": "Bearer", "cached_at": str(NOW - 100),
                "expires_on": str(NOW + 3500), "extended_expires_on": str(NOW + 3500),
                "refresh_on": str(NOW + 1700),
            },
            "-127.0.0.1:8443-accesstoken-client-tenant-old": {
                "credential_type": "AccessToken", "secret": "expired", "home_account_id": None,
                "environment": "127.0.0.1:8443", "client_id": "client", "target": "old",
                "realm": "TENANT", "token_type": "Bearer", "cached_at": str(NOW - 9000),
                "expires_on": NOW - 5000, "extended_expires_on": str(NOW - 5000),
            },
        },
        "RefreshToken": {
            f"-login.microsoftonline.com-refreshtoken-{key}--api://downstream/.default": {
                "credential_type": "RefreshToken", "secret": "rt-1", "home_account_id": None,
                "environment": "login.microsoftonline.com", "client_id": key,
                "target": "api://downstream/.default",
                "last_modification_time": str(NOW - 200_000),
            },
        },
    }, indent=1))
    write("msal_cache", "empty-object", "{}")


def claims():
    write("claims", "cp1", '{"access_token":{"xms_cc":{"values":["CP1"]}}}')
    write("claims", "nbf-challenge", '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}')
    write("claims", "capolids", '{"access_token":{"capolids":{"essential":true,"values":["c1","c2"]}}}')
    write("claims", "acrs", '{"access_token":{"acrs":{"essential":true,"value":"c1"}},"id_token":{"auth_time":{"essential":true}}}')
    write("claims", "not-object", '["access_token"]')
    write("claims", "access-token-not-object", '{"access_token":"x"}')


def retry_after():
    def value(name, text, now=NOW):
        write("retry_after", name, struct.pack(">Q", now) + text.encode())

    value("seconds", "120")
    value("huge-seconds", "18446744073709551616000")
    value("imf-fixdate", "Wed, 15 Nov 2023 00:00:00 GMT")
    value("rfc850", "Sunday, 06-Nov-94 08:49:37 GMT")
    value("asctime", "Sun Nov  6 08:49:37 1994")
    value("past-date", "Thu, 01 Jan 1970 00:00:00 GMT")


def jwts():
    write("jwt_decode", "access-token", ACCESS_TOKEN)
    write("jwt_decode", "authorization-header", f"Authorization: Bearer {ACCESS_TOKEN}\n")
    write("jwt_decode", "padded", jwt({"alg": "none"}, {"exp": -62135596800, "iat": 253402300799}) + "==")
    write("jwt_decode", "dates-as-strings", jwt({"alg": "PS256", "x5t#S256": "abc"}, {"exp": "1700000000", "nbf": 1.5, "iat": None}))


def main():
    token_responses()
    with tempfile.TemporaryDirectory() as work:
        certificates(pathlib.Path(work))
    msal_caches()
    claims()
    retry_after()
    jwts()


if __name__ == "__main__":
    main()
