"""azure-identity OnBehalfOfCredential, sync (MSAL underneath) and async (azure-identity's own
client), with every kind of client credential."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.exceptions import ClientAuthenticationError

from interop_support import (
    CHAIN_APP,
    DOWNSTREAM_URI,
    MIDDLE_TIER,
    OBO_CREDENTIAL_KINDS,
    OBO_SCOPE,
    TENANT,
    USER_OID,
    USER_UPN,
    Emulator,
    SignedAssertion,
    jwt_claims,
    obo_client_credential,
    obo_credential,
    read_bytes,
    verified_claims,
)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def assert_obo_token(claims: dict, client_id: str = MIDDLE_TIER) -> None:
    assert claims["aud"] == DOWNSTREAM_URI
    assert claims["tid"] == TENANT
    assert claims["oid"] == USER_OID
    assert claims["upn"] == USER_UPN
    assert claims["preferred_username"] == USER_UPN
    assert claims["scp"] == "Data.Read"
    assert claims["appid"] == client_id
    assert claims["azp"] == client_id
    assert claims["idtyp"] == "user"
    assert "roles" not in claims
    assert "xms_cc" not in claims


# How the emulator records each kind of client credential, per implementation. The sync
# credential hands a certificate to MSAL with its SHA-1 thumbprint, so MSAL signs RS256 + x5t;
# the async credential signs PS256 + x5t#S256 itself.
EXPECTED_CLIENT_AUTH = {
    (False, "secret"): "client_secret",
    (False, "pem"): "certificate RS256 x5t",
    (False, "pkcs12"): "certificate RS256 x5t",
    (False, "assertion_func"): "certificate PS256 x5t#S256",
    (True, "secret"): "client_secret",
    (True, "pem"): "certificate PS256 x5t#S256",
    (True, "pkcs12"): "certificate PS256 x5t#S256",
    (True, "assertion_func"): "certificate PS256 x5t#S256",
}


@pytest.mark.parametrize("kind", OBO_CREDENTIAL_KINDS)
def test_obo_sync(emu: Emulator, kind: str) -> None:
    client_credential = obo_client_credential(emu, kind)
    user_assertion = emu.user_token(audience=MIDDLE_TIER)
    before = emu.counters()
    with obo_credential(
        emu, is_async=False, user_assertion=user_assertion, **client_credential
    ) as credential:
        token = credential.get_token(OBO_SCOPE)
    claims = verified_claims(token.token, emu)
    assert_obo_token(claims)
    assert abs(token.expires_on - claims["exp"]) <= 5

    log = emu.requests_log()
    paths = [(r["method"], r["path"]) for r in log]
    assert ("GET", f"/{TENANT}/v2.0/.well-known/openid-configuration") in paths
    assert emu.counters()["instance_discovery_requests"] == before["instance_discovery_requests"]
    [request] = [r for r in log if r["path"].endswith("/oauth2/v2.0/token")]
    assert request["status"] == 200
    assert request["client_auth"] == EXPECTED_CLIENT_AUTH[(False, kind)]
    form = request["form"]
    assert form["grant_type"] == JWT_BEARER_GRANT
    assert form["requested_token_use"] == "on_behalf_of"
    # MSAL adds the OpenID Connect scopes and sorts them.
    assert form["scope"] == f"{OBO_SCOPE} offline_access openid profile"
    assert form["assertion"] == "[redacted]"
    if kind == "assertion_func":
        assert client_credential["client_assertion_func"].calls == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", OBO_CREDENTIAL_KINDS)
async def test_obo_async(emu: Emulator, kind: str) -> None:
    client_credential = obo_client_credential(emu, kind)
    user_assertion = emu.user_token(audience=MIDDLE_TIER)
    async with obo_credential(
        emu, is_async=True, user_assertion=user_assertion, **client_credential
    ) as credential:
        token = await credential.get_token(OBO_SCOPE)
        again = await credential.get_token(OBO_SCOPE)
    assert again.token == token.token, "the second call should come from the cache"
    claims = verified_claims(token.token, emu)
    assert_obo_token(claims)
    assert abs(token.expires_on - claims["exp"]) <= 5

    [request] = emu.token_requests()
    assert request["status"] == 200
    assert request["client_auth"] == EXPECTED_CLIENT_AUTH[(True, kind)]
    form = request["form"]
    assert form["grant_type"] == JWT_BEARER_GRANT
    assert form["requested_token_use"] == "on_behalf_of"
    assert form["scope"] == OBO_SCOPE
    assert form["client_info"] == "1"


def test_obo_sync_sends_certificate_chain(emu: Emulator) -> None:
    """Subject name/issuer authentication: the app accepts only assertions with x5c."""
    pem = read_bytes(emu.certificate(CHAIN_APP)["combined_pem_path"])
    user_assertion = emu.user_token(audience=CHAIN_APP)
    credential = obo_credential(
        emu,
        is_async=False,
        client_id=CHAIN_APP,
        user_assertion=user_assertion,
        client_certificate=pem,
        send_certificate_chain=True,
    )
    token = credential.get_token(OBO_SCOPE)
    assert_obo_token(verified_claims(token.token, emu), client_id=CHAIN_APP)
    [request] = emu.token_requests()
    assert request["status"] == 200
    assert "x5c" in request["client_auth"].split()
    assert request["client_auth"] == "certificate RS256 x5t x5c"


def test_obo_sync_without_chain_is_rejected_by_chain_app(emu: Emulator) -> None:
    pem = read_bytes(emu.certificate(CHAIN_APP)["combined_pem_path"])
    credential = obo_credential(
        emu,
        is_async=False,
        client_id=CHAIN_APP,
        user_assertion=emu.user_token(audience=CHAIN_APP),
        client_certificate=pem,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        credential.get_token(OBO_SCOPE)
    [request] = emu.token_requests()
    assert request["status"] == 401
    assert request["error_code"] == 700027


@pytest.mark.asyncio
async def test_obo_async_ignores_send_certificate_chain(emu: Emulator) -> None:
    """The async credential does not implement send_certificate_chain (it swallows the
    keyword), so an app that requires x5c rejects it: an azure-identity limitation."""
    pem = read_bytes(emu.certificate(CHAIN_APP)["combined_pem_path"])
    async with obo_credential(
        emu,
        is_async=True,
        client_id=CHAIN_APP,
        user_assertion=emu.user_token(audience=CHAIN_APP),
        client_certificate=pem,
        send_certificate_chain=True,
    ) as credential:
        with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
            await credential.get_token(OBO_SCOPE)
    [request] = emu.token_requests()
    assert "x5c" not in (request["client_auth"] or "")
    assert request["error_code"] == 700027


@pytest.mark.asyncio
async def test_obo_async_chain_app_accepts_assertion_func_with_x5c(emu: Emulator) -> None:
    """The async credential can still satisfy a chain-requiring app via client_assertion_func."""
    func = SignedAssertion(emu, CHAIN_APP)
    certificate, audience = func.certificate, func.audience
    async with obo_credential(
        emu,
        is_async=True,
        client_id=CHAIN_APP,
        user_assertion=emu.user_token(audience=CHAIN_APP),
        client_assertion_func=lambda: certificate.assertion(CHAIN_APP, audience, x5c=True),
    ) as credential:
        token = await credential.get_token(OBO_SCOPE)
    assert_obo_token(verified_claims(token.token, emu), client_id=CHAIN_APP)
    [request] = emu.token_requests()
    assert request["client_auth"] == "certificate PS256 x5t#S256 x5c"


@pytest.fixture
def expiring_tokens(emu: Emulator) -> Iterator[None]:
    """Makes the emulator issue access tokens that expire at once, for the duration of a test."""
    original = emu.patch_settings({})["tokens"]["access_token_lifetime_secs"]
    emu.patch_settings({"tokens": {"access_token_lifetime_secs": 0}})
    try:
        yield
    finally:
        emu.patch_settings({"tokens": {"access_token_lifetime_secs": original}})


@pytest.mark.asyncio
@pytest.mark.parametrize("offline_access", [True, False], ids=["offline_access", "no_offline"])
async def test_obo_async_refresh(
    emu: Emulator, expiring_tokens: None, offline_access: bool
) -> None:
    """Once the access token has expired, the async credential redeems the refresh token of the
    exchange, if there is one. Entra (and the emulator) returns one only when the request asked
    for offline_access, which the async credential does not add by itself; without it, the
    credential repeats the exchange."""
    scopes = (OBO_SCOPE, "offline_access") if offline_access else (OBO_SCOPE,)
    async with obo_credential(
        emu,
        is_async=True,
        user_assertion=emu.user_token(),
        client_secret=emu.secret(MIDDLE_TIER),
    ) as credential:
        first = await credential.get_token(*scopes)
        second = await credential.get_token(*scopes)
    assert first.token != second.token
    for token in (first, second):
        claims = jwt_claims(token.token)  # already expired: decode without verifying
        assert claims["oid"] == USER_OID
        assert claims["aud"] == DOWNSTREAM_URI
        assert claims["scp"] == "Data.Read"
    requests = emu.token_requests()
    assert all(r["status"] == 200 for r in requests)
    second_grant = "refresh_token" if offline_access else JWT_BEARER_GRANT
    assert [r["form"]["grant_type"] for r in requests] == [JWT_BEARER_GRANT, second_grant]
    assert requests[1]["client_auth"] == "client_secret"
