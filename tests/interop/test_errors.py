"""Entra errors as the clients surface them: a wrong client secret (AADSTS7000215) and an
expired user assertion (AADSTS500133)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError

from interop_support import (
    MIDDLE_TIER,
    OBO_SCOPE,
    TENANT,
    Emulator,
    confidential_client,
    obo_credential,
)

WRONG_SECRET = "emu~not-the-secret"


def assert_logged_error(emu: Emulator, status: int, code: int) -> None:
    [request] = emu.token_requests()
    assert request["status"] == status
    assert request["error_code"] == code


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.asyncio
async def test_obo_wrong_secret(emu: Emulator, is_async: bool) -> None:
    credential = obo_credential(
        emu, is_async=is_async, user_assertion=emu.user_token(), client_secret=WRONG_SECRET
    )
    with pytest.raises(ClientAuthenticationError) as raised:
        if is_async:
            async with credential:
                await credential.get_token(OBO_SCOPE)
        else:
            credential.get_token(OBO_SCOPE)
    assert "AADSTS7000215" in raised.value.message
    if is_async:
        # azure-identity's own client: "Microsoft Entra ID error '(error) description'".
        assert "(invalid_client) AADSTS7000215" in raised.value.message
        assert raised.value.response is not None and raised.value.response.status_code == 401
    else:
        # MSAL underneath: "Authentication failed: description".
        assert raised.value.message.startswith("Authentication failed: AADSTS7000215")
    assert_logged_error(emu, 401, 7000215)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.asyncio
async def test_obo_expired_user_assertion(emu: Emulator, is_async: bool) -> None:
    expired = emu.user_token(expires_in_secs=-3600)
    credential = obo_credential(
        emu, is_async=is_async, user_assertion=expired, client_secret=emu.secret(MIDDLE_TIER)
    )
    with pytest.raises(ClientAuthenticationError) as raised:
        if is_async:
            async with credential:
                await credential.get_token(OBO_SCOPE)
        else:
            credential.get_token(OBO_SCOPE)
    assert "AADSTS500133" in raised.value.message
    if is_async:
        assert "(invalid_grant) AADSTS500133" in raised.value.message
    assert_logged_error(emu, 400, 500133)


def test_msal_wrong_secret(emu: Emulator) -> None:
    app = confidential_client(emu, WRONG_SECRET)
    result = app.acquire_token_for_client([f"api://{MIDDLE_TIER}/.default"])
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215:")
    assert result["error_codes"] == [7000215]
    assert result["trace_id"] and result["correlation_id"]
    assert_logged_error(emu, 401, 7000215)


def test_msal_obo_wrong_secret(emu: Emulator) -> None:
    app = confidential_client(emu, WRONG_SECRET)
    result = app.acquire_token_on_behalf_of(emu.user_token(), [OBO_SCOPE])
    assert result["error"] == "invalid_client"
    assert "AADSTS7000215" in result["error_description"]
    assert 7000215 in result["error_codes"]


def test_msal_obo_expired_user_assertion(emu: Emulator) -> None:
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_on_behalf_of(emu.user_token(expires_in_secs=-3600), [OBO_SCOPE])
    assert "access_token" not in result
    assert result["error"] == "invalid_grant"
    assert result["error_description"].startswith("AADSTS500133:")
    assert result["error_codes"] == [500133]
    assert_logged_error(emu, 400, 500133)


def test_msal_error_correlation_id_echoes_client_request_id(emu: Emulator) -> None:
    app = confidential_client(emu, WRONG_SECRET)
    result = app.acquire_token_for_client([f"api://{MIDDLE_TIER}/.default"])
    [request] = emu.token_requests()
    assert request["headers"]["client-request-id"] == result["correlation_id"]
    assert request["path"] == f"/{TENANT}/oauth2/v2.0/token"
