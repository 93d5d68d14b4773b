"""MSAL Python ConfidentialClientApplication: client credentials (secret and certificates) and
on-behalf-of, with the refresh token and ID token it returns."""

from __future__ import annotations

from typing import Any

import pytest

from interop_support import (
    APP_SCOPE,
    DOWNSTREAM_URI,
    MIDDLE_TIER,
    MIDDLE_TIER_ROLES,
    OBO_SCOPE,
    TENANT,
    USER_OID,
    USER_UPN,
    Emulator,
    confidential_client,
    jwt_claims,
    verified_claims,
)


def certificate_credentials(emu: Emulator) -> dict[str, tuple[dict[str, Any], str]]:
    entry = emu.certificate(MIDDLE_TIER)
    return {
        "pem+thumbprint": (
            {"private_key": entry["key_pem"], "thumbprint": entry["thumbprint"]},
            "certificate RS256 x5t",
        ),
        "pem+public_certificate": (
            {"private_key": entry["key_pem"], "public_certificate": entry["cert_pem"]},
            "certificate PS256 x5t#S256 x5c",
        ),
        "pfx": (
            {"private_key_pfx_path": entry["pkcs12_path"], "passphrase": entry["pkcs12_password"]},
            "certificate PS256 x5t#S256",
        ),
    }


def assert_client_credentials_result(emu: Emulator, result: dict[str, Any]) -> None:
    assert "error" not in result, result
    assert result["token_type"] == "Bearer"
    assert result["token_source"] == "identity_provider"
    claims = verified_claims(result["access_token"], emu)
    assert claims["aud"] == DOWNSTREAM_URI
    assert claims["tid"] == TENANT
    assert claims["appid"] == claims["azp"] == MIDDLE_TIER
    assert claims["roles"] == MIDDLE_TIER_ROLES
    assert claims["idtyp"] == "app"
    assert "scp" not in claims
    assert 0 < result["expires_in"] <= claims["exp"] - claims["iat"]


def test_client_credentials_with_secret(emu: Emulator) -> None:
    before = emu.counters()
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_for_client([APP_SCOPE])
    assert_client_credentials_result(emu, result)
    cached = app.acquire_token_for_client([APP_SCOPE])
    assert cached["token_source"] == "cache"
    assert cached["access_token"] == result["access_token"]
    [request] = emu.token_requests()
    assert request["client_auth"] == "client_secret"
    assert request["form"]["grant_type"] == "client_credentials"
    assert request["form"]["scope"] == APP_SCOPE
    assert emu.counters()["instance_discovery_requests"] == before["instance_discovery_requests"]


@pytest.mark.parametrize("kind", ["pem+thumbprint", "pem+public_certificate", "pfx"])
def test_client_credentials_with_certificate(emu: Emulator, kind: str) -> None:
    client_credential, client_auth = certificate_credentials(emu)[kind]
    app = confidential_client(emu, client_credential)
    assert_client_credentials_result(emu, app.acquire_token_for_client([APP_SCOPE]))
    [request] = emu.token_requests()
    assert request["client_auth"] == client_auth


def test_on_behalf_of(emu: Emulator) -> None:
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_on_behalf_of(emu.user_token(audience=MIDDLE_TIER), [OBO_SCOPE])
    assert "error" not in result, result
    assert result["token_type"] == "Bearer"

    claims = verified_claims(result["access_token"], emu)
    assert claims["aud"] == DOWNSTREAM_URI
    assert claims["tid"] == TENANT
    assert claims["oid"] == USER_OID
    assert claims["scp"] == "Data.Read"
    assert claims["appid"] == claims["azp"] == MIDDLE_TIER

    assert result["refresh_token"]
    id_claims = verified_claims(result["id_token"], emu)
    assert id_claims == jwt_claims(result["id_token"])
    assert result["id_token_claims"] == id_claims
    assert id_claims["aud"] == MIDDLE_TIER
    assert id_claims["oid"] == USER_OID
    assert id_claims["tid"] == TENANT
    assert id_claims["preferred_username"] == USER_UPN
    assert set(result["scope"].split()) >= {OBO_SCOPE, "openid", "profile"}

    # client_info made an account of the user; the silent path serves the cached token.
    [account] = app.get_accounts()
    assert account["home_account_id"] == f"{USER_OID}.{TENANT}"
    assert account["username"] == USER_UPN
    silent = app.acquire_token_silent([OBO_SCOPE], account=account)
    assert silent is not None
    assert silent["token_source"] == "cache"
    assert silent["access_token"] == result["access_token"]

    # The refresh token works for the same app.
    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], [OBO_SCOPE])
    assert "error" not in refreshed, refreshed
    refreshed_claims = verified_claims(refreshed["access_token"], emu)
    assert refreshed_claims["oid"] == USER_OID
    assert refreshed_claims["aud"] == DOWNSTREAM_URI

    grants = [r["form"]["grant_type"] for r in emu.token_requests()]
    assert grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer", "refresh_token"]


def test_on_behalf_of_with_certificate(emu: Emulator) -> None:
    client_credential, client_auth = certificate_credentials(emu)["pem+public_certificate"]
    app = confidential_client(emu, client_credential)
    result = app.acquire_token_on_behalf_of(emu.user_token(audience=MIDDLE_TIER), [OBO_SCOPE])
    assert "error" not in result, result
    assert verified_claims(result["access_token"], emu)["oid"] == USER_OID
    assert result["refresh_token"] and result["id_token"]
    [request] = emu.token_requests()
    assert request["client_auth"] == client_auth
