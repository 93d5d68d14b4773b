"""Continuous access evaluation (the CP1 client capability) and get_token_info's expiry and
refresh hints."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from azure.identity import ClientAssertionCredential
from azure.identity.aio import ClientAssertionCredential as AsyncClientAssertionCredential

from interop_support import (
    APP_SCOPE,
    MIDDLE_TIER,
    OBO_SCOPE,
    TENANT,
    USER_OID,
    Emulator,
    SignedAssertion,
    obo_credential,
    verified_claims,
)

CP1_CLAIMS = {"access_token": {"xms_cc": {"values": ["CP1"]}}}


@pytest.fixture
def lifetimes(emu: Emulator) -> dict[str, int]:
    tokens = emu.patch_settings({})["tokens"]
    return {
        "plain": tokens["access_token_lifetime_secs"],
        "cae": tokens["cae_access_token_lifetime_secs"],
    }


@pytest.fixture
def refresh_hint(emu: Emulator) -> Iterator[int]:
    """Makes the emulator send refresh_in=600 for the duration of a test."""
    emu.patch_settings({"tokens": {"refresh_in_secs": 600}})
    try:
        yield 600
    finally:
        emu.patch_settings({"tokens": {"refresh_in_secs": None}})


def assertion_credential(emu: Emulator) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        TENANT, MIDDLE_TIER, SignedAssertion(emu), authority=emu.url, connection_verify=emu.ca_path
    )


def sent_claims(emu: Emulator) -> list[dict | None]:
    return [
        json.loads(r["form"]["claims"]) if "claims" in r["form"] else None
        for r in emu.token_requests()
    ]


def test_cae_client_assertion_sync(emu: Emulator, lifetimes: dict[str, int]) -> None:
    credential = assertion_credential(emu)
    cae = credential.get_token(APP_SCOPE, enable_cae=True)
    plain = credential.get_token(APP_SCOPE)
    cae_claims = verified_claims(cae.token, emu)
    plain_claims = verified_claims(plain.token, emu)
    assert cae_claims["xms_cc"] == ["CP1"]
    assert cae_claims["exp"] - cae_claims["iat"] == lifetimes["cae"]
    assert "xms_cc" not in plain_claims, "CAE and non-CAE tokens are cached apart"
    assert plain_claims["exp"] - plain_claims["iat"] == lifetimes["plain"]
    assert sent_claims(emu) == [CP1_CLAIMS, None]


@pytest.mark.asyncio
async def test_cae_client_assertion_async(emu: Emulator) -> None:
    async with AsyncClientAssertionCredential(
        TENANT, MIDDLE_TIER, SignedAssertion(emu), authority=emu.url, connection_verify=emu.ca_path
    ) as credential:
        token = await credential.get_token(APP_SCOPE, enable_cae=True)
    assert verified_claims(token.token, emu)["xms_cc"] == ["CP1"]
    assert sent_claims(emu) == [CP1_CLAIMS]


def test_cae_obo_sync(emu: Emulator, lifetimes: dict[str, int]) -> None:
    credential = obo_credential(
        emu,
        is_async=False,
        user_assertion=emu.user_token(),
        client_secret=emu.secret(MIDDLE_TIER),
    )
    token = credential.get_token(OBO_SCOPE, enable_cae=True)
    claims = verified_claims(token.token, emu)
    assert claims["xms_cc"] == ["CP1"]
    assert claims["oid"] == USER_OID
    assert claims["exp"] - claims["iat"] == lifetimes["cae"]
    assert sent_claims(emu) == [CP1_CLAIMS]


@pytest.mark.asyncio
async def test_cae_obo_async(emu: Emulator) -> None:
    async with obo_credential(
        emu,
        is_async=True,
        user_assertion=emu.user_token(),
        client_secret=emu.secret(MIDDLE_TIER),
    ) as credential:
        token = await credential.get_token(OBO_SCOPE, enable_cae=True)
    claims = verified_claims(token.token, emu)
    assert claims["xms_cc"] == ["CP1"]
    assert claims["oid"] == USER_OID
    assert sent_claims(emu) == [CP1_CLAIMS]


def test_token_info_client_assertion(emu: Emulator, lifetimes: dict[str, int]) -> None:
    credential = assertion_credential(emu)
    start = int(time.time())
    plain = credential.get_token_info(APP_SCOPE)
    cae = credential.get_token_info(APP_SCOPE, options={"enable_cae": True})
    end = int(time.time())

    assert plain.token_type == "Bearer"
    assert abs(plain.expires_on - verified_claims(plain.token, emu)["exp"]) <= 2
    assert start + lifetimes["plain"] <= plain.expires_on <= end + lifetimes["plain"]
    # No refresh_in from the server and a lifetime under two hours: no refresh hint.
    assert plain.refresh_on is None

    assert cae.token_type == "Bearer"
    assert start + lifetimes["cae"] <= cae.expires_on <= end + lifetimes["cae"]
    # azure-identity proposes refreshing a long-lived token at half its life.
    assert lifetimes["cae"] >= 7200
    assert cae.refresh_on == cae.expires_on - lifetimes["cae"] + lifetimes["cae"] // 2
    assert time.time() < cae.refresh_on < cae.expires_on


def test_token_info_obo_sync(emu: Emulator, lifetimes: dict[str, int]) -> None:
    credential = obo_credential(
        emu, is_async=False, user_assertion=emu.user_token(), client_secret=emu.secret(MIDDLE_TIER)
    )
    start = int(time.time())
    info = credential.get_token_info(OBO_SCOPE)
    end = int(time.time())
    assert info.token_type == "Bearer"
    assert start + lifetimes["plain"] <= info.expires_on <= end + lifetimes["plain"]
    assert abs(info.expires_on - verified_claims(info.token, emu)["exp"]) <= 2
    # MSAL derives refresh_on only from the server's refresh_in, which is not sent by default.
    assert info.refresh_on is None


def test_token_info_follows_refresh_in(emu: Emulator, refresh_hint: int) -> None:
    obo = obo_credential(
        emu, is_async=False, user_assertion=emu.user_token(), client_secret=emu.secret(MIDDLE_TIER)
    )
    for credential, scope in ((assertion_credential(emu), APP_SCOPE), (obo, OBO_SCOPE)):
        start = int(time.time())
        info = credential.get_token_info(scope)
        end = int(time.time())
        assert info.refresh_on is not None
        assert start + refresh_hint <= info.refresh_on <= end + refresh_hint + 1
        assert info.refresh_on < info.expires_on
