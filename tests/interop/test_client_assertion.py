"""azure-identity ClientAssertionCredential: a certificate-signed assertion built here, and a
federated (workload identity) token minted by the emulator."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential
from azure.identity.aio import ClientAssertionCredential as AsyncClientAssertionCredential

from interop_support import (
    APP_SCOPE,
    DOWNSTREAM_URI,
    MIDDLE_TIER,
    MIDDLE_TIER_ROLES,
    TENANT,
    WORKLOAD,
    Certificate,
    Emulator,
    SignedAssertion,
    verified_claims,
)


def assert_app_token(claims: dict, client_id: str, roles: list[str] | None) -> None:
    assert claims["aud"] == DOWNSTREAM_URI
    assert claims["tid"] == TENANT
    assert claims["appid"] == client_id
    assert claims["azp"] == client_id
    assert claims["idtyp"] == "app"
    assert claims["oid"] and claims["sub"] == claims["oid"]
    assert "scp" not in claims
    if roles is None:
        assert "roles" not in claims
    else:
        assert claims["roles"] == roles
    assert "xms_cc" not in claims


def test_certificate_thumbprints_match_the_info_file(emu: Emulator) -> None:
    entry = emu.certificate(MIDDLE_TIER)
    certificate = Certificate.of(entry)
    assert certificate.x5t_s256 == entry["x5t_s256"]
    assert certificate.x5t == entry["x5t"]


def test_certificate_assertion_sync(emu: Emulator) -> None:
    func = SignedAssertion(emu)
    with ClientAssertionCredential(
        TENANT, MIDDLE_TIER, func, authority=emu.url, connection_verify=emu.ca_path
    ) as credential:
        token = credential.get_token(APP_SCOPE)
        again = credential.get_token(APP_SCOPE)
    assert again.token == token.token, "the second call should come from the cache"
    assert func.calls == 1
    claims = verified_claims(token.token, emu)
    assert_app_token(claims, MIDDLE_TIER, MIDDLE_TIER_ROLES)
    assert abs(token.expires_on - claims["exp"]) <= 5

    [request] = emu.token_requests()
    assert request["status"] == 200
    assert request["path"] == f"/{TENANT}/oauth2/v2.0/token"
    assert request["client_auth"] == "certificate PS256 x5t#S256"
    assert request["form"]["grant_type"] == "client_credentials"
    assert request["form"]["scope"] == APP_SCOPE
    assert request["form"]["client_assertion"] == "[redacted]"


@pytest.mark.asyncio
async def test_certificate_assertion_async(emu: Emulator) -> None:
    func = SignedAssertion(emu)
    async with AsyncClientAssertionCredential(
        TENANT, MIDDLE_TIER, func, authority=emu.url, connection_verify=emu.ca_path
    ) as credential:
        token = await credential.get_token(APP_SCOPE)
        again = await credential.get_token(APP_SCOPE)
    assert again.token == token.token
    assert func.calls == 1
    assert_app_token(verified_claims(token.token, emu), MIDDLE_TIER, MIDDLE_TIER_ROLES)
    [request] = emu.token_requests()
    assert request["client_auth"] == "certificate PS256 x5t#S256"


def test_certificate_assertion_rs256_x5t(emu: Emulator) -> None:
    certificate = Certificate.of(emu.certificate(MIDDLE_TIER))
    audience = emu.token_endpoint()
    credential = ClientAssertionCredential(
        TENANT,
        MIDDLE_TIER,
        lambda: certificate.assertion(MIDDLE_TIER, audience, algorithm="RS256"),
        authority=emu.url,
        connection_verify=emu.ca_path,
    )
    token = credential.get_token(APP_SCOPE)
    assert_app_token(verified_claims(token.token, emu), MIDDLE_TIER, MIDDLE_TIER_ROLES)
    [request] = emu.token_requests()
    assert request["client_auth"] == "certificate RS256 x5t"


def test_certificate_assertion_with_wrong_audience_is_rejected(emu: Emulator) -> None:
    certificate = Certificate.of(emu.certificate(MIDDLE_TIER))
    credential = ClientAssertionCredential(
        TENANT,
        MIDDLE_TIER,
        lambda: certificate.assertion(MIDDLE_TIER, "https://example.invalid/token"),
        authority=emu.url,
        connection_verify=emu.ca_path,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700023"):
        credential.get_token(APP_SCOPE)


def test_federated_token_sync(emu: Emulator) -> None:
    federated = emu.federated_token()
    credential = ClientAssertionCredential(
        TENANT, WORKLOAD, lambda: federated, authority=emu.url, connection_verify=emu.ca_path
    )
    token = credential.get_token(APP_SCOPE)
    assert_app_token(verified_claims(token.token, emu), WORKLOAD, None)
    [request] = emu.token_requests()
    assert request["client_auth"] == "federated"


@pytest.mark.asyncio
async def test_federated_token_async(emu: Emulator) -> None:
    federated = emu.federated_token()
    async with AsyncClientAssertionCredential(
        TENANT, WORKLOAD, lambda: federated, authority=emu.url, connection_verify=emu.ca_path
    ) as credential:
        token = await credential.get_token(APP_SCOPE)
    assert_app_token(verified_claims(token.token, emu), WORKLOAD, None)


def test_federated_token_with_unknown_subject_is_rejected(emu: Emulator) -> None:
    federated = emu.federated_token(subject="system:serviceaccount:default:intruder")
    credential = ClientAssertionCredential(
        TENANT, WORKLOAD, lambda: federated, authority=emu.url, connection_verify=emu.ca_path
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700213"):
        credential.get_token(APP_SCOPE)
