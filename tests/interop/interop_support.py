"""Shared constants and helpers of the interop suite: the registrations the emulator is started
with, a handle on the running emulator, JWT decoding and certificate-signed client assertions."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import msal
import requests
from azure.identity import OnBehalfOfCredential
from azure.identity.aio import OnBehalfOfCredential as AsyncOnBehalfOfCredential
from cryptography import x509
from cryptography.hazmat.primitives import serialization

# The sample tenant, applications and user (the same as `entra emulator` without --config).
TENANT = "7a9c6e2b-3f4d-4b8a-9c1e-5d6f7a8b9c0d"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
MIDDLE_TIER = "11111111-2222-3333-4444-555555555555"
WORKLOAD = "22222222-3333-4444-5555-666666666666"
DOWNSTREAM = "33333333-4444-5555-6666-777777777777"
DOWNSTREAM_URI = "api://downstream"
USER_OID = "00000000-0000-0000-0000-0000000000aa"
USER_UPN = "adele@contoso.onmicrosoft.com"
WORKLOAD_SUBJECT = "system:serviceaccount:default:workload"
MIDDLE_TIER_ROLES = ["Data.Read.All"]

# What the suite adds.
CHAIN_APP = "55555555-6666-7777-8888-999999999999"  # subject name/issuer auth: x5c required
MULTI_APP = "66666666-7777-8888-9999-aaaaaaaaaaaa"  # registered in both tenants
MULTI_SECRET = "multi-tenant~secret~0123456789"
SECOND_TENANT = "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
SECOND_DOMAIN = "fabrikam.onmicrosoft.com"
SECOND_USER_OID = "00000000-0000-0000-0000-0000000000bb"
SECOND_USER_UPN = "megan@fabrikam.onmicrosoft.com"

# Scopes used throughout.
APP_SCOPE = f"{DOWNSTREAM_URI}/.default"
OBO_SCOPE = f"{DOWNSTREAM_URI}/Data.Read"


def config_toml(tokens: dict[str, int] | None = None) -> str:
    """The emulator configuration: the documented sample plus what the suite needs."""
    federated = f'federated_credentials = [{{ subject = "{WORKLOAD_SUBJECT}" }}]'
    lines = [
        "[[tenants]]",
        f'id = "{TENANT}"',
        f'domains = ["{TENANT_DOMAIN}"]',
        "",
        "[[tenants.applications]]",
        'name = "middle-tier-api"',
        f'client_id = "{MIDDLE_TIER}"',
        f'app_id_uri = "api://{MIDDLE_TIER}"',
        "generate_secret = true",
        "certificates = [{}]",
        'roles = ["Data.Read.All"]',
        "",
        "[[tenants.applications]]",
        'name = "workload"',
        f'client_id = "{WORKLOAD}"',
        federated,
        "",
        "[[tenants.applications]]",
        'name = "downstream-api"',
        f'client_id = "{DOWNSTREAM}"',
        f'app_id_uri = "{DOWNSTREAM_URI}"',
        "",
        "[[tenants.applications]]",
        'name = "chain-api"',
        f'client_id = "{CHAIN_APP}"',
        f'app_id_uri = "api://{CHAIN_APP}"',
        "certificates = [{}]",
        "require_certificate_chain = true",
        "",
        "[[tenants.applications]]",
        'name = "multi-tenant-api"',
        f'client_id = "{MULTI_APP}"',
        f'app_id_uri = "api://{MULTI_APP}"',
        f'secrets = ["{MULTI_SECRET}"]',
        "",
        "[[tenants.users]]",
        f'object_id = "{USER_OID}"',
        f'upn = "{USER_UPN}"',
        'name = "Adele Vance"',
        "",
        "[[tenants]]",
        f'id = "{SECOND_TENANT}"',
        f'domains = ["{SECOND_DOMAIN}"]',
        "",
        "[[tenants.applications]]",
        'name = "multi-tenant-api"',
        f'client_id = "{MULTI_APP}"',
        f'app_id_uri = "api://{MULTI_APP}"',
        f'secrets = ["{MULTI_SECRET}"]',
        "",
        "[[tenants.applications]]",
        'name = "workload"',
        f'client_id = "{WORKLOAD}"',
        federated,
        "",
        "[[tenants.applications]]",
        'name = "downstream-api"',
        f'client_id = "{DOWNSTREAM}"',
        f'app_id_uri = "{DOWNSTREAM_URI}"',
        "",
        "[[tenants.users]]",
        f'object_id = "{SECOND_USER_OID}"',
        f'upn = "{SECOND_USER_UPN}"',
        'name = "Megan Bowen"',
        "",
    ]
    if tokens:
        lines.append("[tokens]")
        lines.extend(f"{key} = {value}" for key, value in tokens.items())
    return "\n".join(lines) + "\n"


@dataclass
class Emulator:
    """The running emulator, as its info file describes it, plus admin helpers."""

    info: dict[str, Any]
    ca_path: str
    http: requests.Session = field(init=False)

    def __post_init__(self) -> None:
        self.http = requests.Session()
        self.http.verify = self.ca_path
        self.http.trust_env = False

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def admin_url(self) -> str:
        return self.info["admin_url"]

    def token_endpoint(self, tenant: str = TENANT) -> str:
        return f"{self.url}/{tenant}/oauth2/v2.0/token"

    def issuer(self, tenant: str = TENANT) -> str:
        return f"{self.url}/{tenant}/v2.0"

    def app(self, client_id: str, tenant: str = TENANT) -> dict[str, Any]:
        for t in self.info["tenants"]:
            if t["id"] == tenant:
                for app in t["applications"]:
                    if app["client_id"] == client_id:
                        return app
        raise KeyError(f"no application {client_id} in tenant {tenant}")

    def secret(self, client_id: str, tenant: str = TENANT) -> str:
        return self.app(client_id, tenant)["secrets"][0]

    def certificate(self, client_id: str, tenant: str = TENANT) -> dict[str, Any]:
        return self.app(client_id, tenant)["certificates"][0]

    # Admin API.
    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"{self.admin_url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def user_token(
        self,
        audience: str = MIDDLE_TIER,
        user: str = USER_UPN,
        *,
        tenant: str | None = None,
        scopes: list[str] | None = None,
        expires_in_secs: int | None = None,
    ) -> str:
        body: dict[str, Any] = {"user": user, "audience": audience}
        if tenant is not None:
            body["tenant"] = tenant
        if scopes is not None:
            body["scopes"] = scopes
        if expires_in_secs is not None:
            body["expires_in_secs"] = expires_in_secs
        return self._admin("POST", "/tokens/user", body)["access_token"]

    def federated_token(self, subject: str = WORKLOAD_SUBJECT, audience: str | None = None) -> str:
        body: dict[str, Any] = {"subject": subject}
        if audience is not None:
            body["audience"] = audience
        return self._admin("POST", "/tokens/federated", body)["token"]

    def requests_log(self) -> list[dict[str, Any]]:
        return self._admin("GET", "/requests")

    def clear_requests(self) -> None:
        self._admin("DELETE", "/requests")

    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests_log() if r["path"].endswith("/oauth2/v2.0/token")]

    def counters(self) -> dict[str, int]:
        return self._admin("GET", "/counters")

    def patch_settings(self, update: dict[str, Any]) -> dict[str, Any]:
        return self._admin("PATCH", "/settings", update)

    def jwks(self) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/{TENANT}/discovery/v2.0/keys", timeout=10)
        response.raise_for_status()
        return response.json()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt_header(token: str) -> dict[str, Any]:
    return json.loads(_b64decode(token.split(".")[0]))


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, without verifying it."""
    return json.loads(_b64decode(token.split(".")[1]))


def verified_claims(token: str, emulator: Emulator) -> dict[str, Any]:
    """The payload of a token the emulator issued, after checking its signature against the
    emulator's JWKS, its issuer and its lifetime."""
    keys = jwt.PyJWKSet.from_dict(emulator.jwks())
    kid = jwt_header(token).get("kid")
    key = next((k for k in keys.keys if kid is None or k.key_id == kid), None)
    assert key is not None, f"no JWKS key with kid {kid!r}"
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        options={"verify_aud": False, "verify_iss": False},
    )
    assert claims["iss"] == emulator.issuer(claims["tid"]), claims
    assert claims["nbf"] <= claims["iat"] <= time.time() + 5 < claims["exp"], claims
    return claims


@dataclass
class Certificate:
    """An application certificate from the info file."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Certificate:
        return cls(entry["cert_pem"].encode(), entry["key_pem"].encode())

    @property
    def der(self) -> bytes:
        cert = x509.load_pem_x509_certificate(self.cert_pem)
        return cert.public_bytes(serialization.Encoding.DER)

    @property
    def x5t_s256(self) -> str:
        return b64url(hashlib.sha256(self.der).digest())

    @property
    def x5t(self) -> str:
        return b64url(hashlib.sha1(self.der).digest())  # noqa: S324 - a thumbprint, not security

    def assertion(
        self,
        client_id: str,
        audience: str,
        *,
        algorithm: str = "PS256",
        lifetime: int = 600,
        x5c: bool = False,
    ) -> str:
        """A client assertion (RFC 7523) signed with this certificate's key."""
        now = int(time.time())
        headers: dict[str, Any] = {"typ": "JWT"}
        if algorithm == "PS256":
            headers["x5t#S256"] = self.x5t_s256
        else:
            headers["x5t"] = self.x5t
        if x5c:
            headers["x5c"] = [base64.b64encode(self.der).decode()]
        payload = {
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        return jwt.encode(payload, self.key_pem, algorithm=algorithm, headers=headers)


def read_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


class SignedAssertion:
    """A client_assertion callable that signs a fresh PS256 assertion on every call."""

    def __init__(self, emu: Emulator, client_id: str = MIDDLE_TIER, tenant: str = TENANT) -> None:
        self.certificate = Certificate.of(emu.certificate(client_id, tenant))
        self.client_id = client_id
        self.audience = emu.token_endpoint(tenant)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.certificate.assertion(self.client_id, self.audience)


# The client credential kinds OnBehalfOfCredential takes.
OBO_CREDENTIAL_KINDS = ("secret", "pem", "pkcs12", "assertion_func")


def obo_client_credential(emu: Emulator, kind: str, client_id: str = MIDDLE_TIER) -> dict[str, Any]:
    """OnBehalfOfCredential keyword arguments for one kind of client credential."""
    if kind == "secret":
        return {"client_secret": emu.secret(client_id)}
    if kind == "pem":
        return {"client_certificate": read_bytes(emu.certificate(client_id)["combined_pem_path"])}
    if kind == "pkcs12":
        entry = emu.certificate(client_id)
        return {
            "client_certificate": read_bytes(entry["pkcs12_path"]),
            "password": entry["pkcs12_password"],
        }
    if kind == "assertion_func":
        return {"client_assertion_func": SignedAssertion(emu, client_id)}
    raise ValueError(kind)


def obo_credential(
    emu: Emulator,
    *,
    is_async: bool,
    user_assertion: str,
    client_id: str = MIDDLE_TIER,
    tenant_id: str = TENANT,
    **kwargs: Any,
) -> Any:
    """An OnBehalfOfCredential (sync: MSAL underneath; async: azure-identity's own client)
    that talks only to the emulator."""
    cls = AsyncOnBehalfOfCredential if is_async else OnBehalfOfCredential
    if not is_async:
        kwargs.setdefault("disable_instance_discovery", True)
    return cls(
        tenant_id,
        client_id,
        user_assertion=user_assertion,
        authority=emu.url,
        connection_verify=emu.ca_path,
        **kwargs,
    )


def confidential_client(
    emu: Emulator, client_credential: Any, client_id: str = MIDDLE_TIER, tenant: str = TENANT
) -> msal.ConfidentialClientApplication:
    """An MSAL confidential client for the emulator: no instance discovery, and an HTTP
    client that trusts the emulator CA."""
    session = requests.Session()
    session.verify = emu.ca_path
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=client_credential,
        authority=f"{emu.url}/{tenant}",
        instance_discovery=False,
        http_client=session,
    )


@dataclass
class Keyring:
    """A running Secret Service (gnome-keyring) on a private session bus."""

    bus_address: str
    environment: dict[str, str]

    def is_up(self) -> bool:
        """Whether the Secret Service's name is owned on the bus."""
        reply = subprocess.run(
            [
                "dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ],
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return "true" in reply.stdout

    def stored_cache(self, schema: str) -> dict[str, Any] | None:
        """The token cache item azure-identity keeps for `schema` (`<name>.nocae|.cae`),
        read with libsecret's own command-line client."""
        found = subprocess.run(
            [
                "secret-tool", "lookup", "xdg:schema", schema,
                "MsalClientID", "Microsoft.Developer.IdentityService",
            ],
            env=self.environment,
            capture_output=True,
            timeout=10,
            check=False,
        )
        if found.returncode != 0 or not found.stdout:
            return None
        return json.loads(found.stdout)


def entra_cached_token(
    emu: Emulator,
    home: Path,
    assertion_file: Path,
    scope: str,
    cache_name: str,
    *,
    allow_unencrypted: bool = False,
    bus_address: str | None = None,
) -> str:
    """Runs `entra token client-assertion` with a persistent cache under `home` (kept by the
    Secret Service on `bus_address` when given) and returns the token."""
    binary = os.environ.get("ENTRA_BIN", "target/debug/entra")
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    if bus_address is not None:
        environment["DBUS_SESSION_BUS_ADDRESS"] = bus_address
    result = subprocess.run(
        [
            binary, "token", "client-assertion",
            "--tenant-id", TENANT, "--client-id", WORKLOAD,
            "--authority", emu.url, "--ca-file", emu.ca_path,
            "--assertion-file", str(assertion_file),
            "--scope", scope,
            "--cache-name", cache_name,
            *(["--allow-unencrypted-cache"] if allow_unencrypted else []),
            "--output", "token",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
