"""Places where the emulator once answered differently from Microsoft Entra ID.

Each test states what Entra does; they keep the emulator from drifting back.
"""

from __future__ import annotations


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


def test_client_credentials_for_unknown_resource_fails(emu: Emulator) -> None:
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_for_client(["api://no-such-resource/.default"])
    assert result.get("error") == "invalid_resource", result
    assert 500011 in result["error_codes"]


def test_obo_response_scope_omits_offline_access(emu: Emulator) -> None:
    app = confidential_client(emu, emu.secret(MIDDLE_TIER))
    result = app.acquire_token_on_behalf_of(emu.user_token(), [OBO_SCOPE])
    assert "error" not in result, result
    assert result["refresh_token"]
    assert "offline_access" not in result["scope"].split(), result["scope"]
