"""Where the emulator answers differently from Microsoft Entra ID.

Each test states what Entra does and is marked xfail(strict=True): it fails today because of
the emulator, and once the emulator is fixed it passes, which strict xfail reports as a failure
so that the marker gets removed. Nothing here works around the emulator.
"""

from __future__ import annotations

import pytest

from interop_support import (
    MIDDLE_TIER,
    MULTI_APP,
    MULTI_SECRET,
    OBO_SCOPE,
    SECOND_TENANT,
    SECOND_USER_UPN,
    TENANT,
    Emulator,
    confidential_client,
)

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.mark.xfail(
    strict=True,
    reason="emulator accepts an OBO user assertion issued by another tenant, for a user who is "
    "not in the tenant of the request, and issues a token in the request's tenant",
)
def test_obo_rejects_user_assertion_from_another_tenant(emu: Emulator) -> None:
    # A fabrikam user's token (iss .../<fabrikam>/v2.0, tid fabrikam), exchanged at contoso's
    # token endpoint by an app registered in both tenants. Entra answers invalid_grant: the
    # exchange must happen in the tenant that issued the assertion.
    assertion = emu.user_token(audience=MULTI_APP, user=SECOND_USER_UPN, tenant=SECOND_TENANT)
    response = emu.http.post(
        emu.token_endpoint(TENANT),
        data={
            "client_id": MULTI_APP,
            "client_secret": MULTI_SECRET,
            "grant_type": JWT_BEARER_GRANT,
            "requested_token_use": "on_behalf_of",
            "assertion": assertion,
            "scope": OBO_SCOPE,
        },
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.xfail(
    strict=True,
    reason="emulator issues app-only tokens for a resource that is not registered "
    "(Entra: AADSTS500011 invalid_resource)",
)
def test_client_credentials_for_unknown_resource_fails(emu: Emulator) -> None:
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_for_client(["api://no-such-resource/.default"])
    assert result.get("error") == "invalid_resource", result
    assert 500011 in result["error_codes"]


@pytest.mark.xfail(
    strict=True,
    reason="emulator echoes offline_access in the response 'scope'; Entra never returns it "
    "there (it asks for a refresh token and is not a permission of the access token)",
)
def test_obo_response_scope_omits_offline_access(emu: Emulator) -> None:
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_on_behalf_of(emu.user_token(), [OBO_SCOPE])
    assert "error" not in result, result
    assert result["refresh_token"]
    assert "offline_access" not in result["scope"].split(), result["scope"]
