"""Multi-tenant token requests: additionally_allowed_tenants and a per-call tenant_id against a
second registered tenant (fabrikam)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientAssertionCredential
from azure.identity.aio import ClientAssertionCredential as AsyncClientAssertionCredential

from interop_support import (
    APP_SCOPE,
    DOWNSTREAM_URI,
    MULTI_APP,
    MULTI_SECRET,
    OBO_SCOPE,
    SECOND_DOMAIN,
    SECOND_TENANT,
    SECOND_USER_OID,
    SECOND_USER_UPN,
    TENANT,
    WORKLOAD,
    Emulator,
    confidential_client,
    obo_credential,
    verified_claims,
)


def token_paths(emu: Emulator) -> list[str]:
    return [r["path"] for r in emu.token_requests()]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.asyncio
async def test_obo_in_second_tenant(emu: Emulator, is_async: bool) -> None:
    """A multi-tenant middle tier exchanges a fabrikam user's token in fabrikam."""
    user_assertion = emu.user_token(audience=MULTI_APP, user=SECOND_USER_UPN)
    credential = obo_credential(
        emu,
        is_async=is_async,
        client_id=MULTI_APP,
        tenant_id=TENANT,
        user_assertion=user_assertion,
        client_secret=MULTI_SECRET,
        additionally_allowed_tenants=[SECOND_TENANT],
    )
    if is_async:
        async with credential:
            token = await credential.get_token(OBO_SCOPE, tenant_id=SECOND_TENANT)
            info = await credential.get_token_info(OBO_SCOPE, options={"tenant_id": SECOND_TENANT})
    else:
        with credential:
            token = credential.get_token(OBO_SCOPE, tenant_id=SECOND_TENANT)
            info = credential.get_token_info(OBO_SCOPE, options={"tenant_id": SECOND_TENANT})
    claims = verified_claims(token.token, emu)
    assert claims["tid"] == SECOND_TENANT
    assert claims["iss"] == emu.issuer(SECOND_TENANT)
    assert claims["oid"] == SECOND_USER_OID
    assert claims["aud"] == DOWNSTREAM_URI
    assert claims["appid"] == claims["azp"] == MULTI_APP
    assert claims["scp"] == "Data.Read"
    assert verified_claims(info.token, emu)["tid"] == SECOND_TENANT
    assert set(token_paths(emu)) == {f"/{SECOND_TENANT}/oauth2/v2.0/token"}
    if not is_async:
        # MSAL discovered the second tenant's endpoints, from the emulator.
        paths = [r["path"] for r in emu.requests_log() if r["method"] == "GET"]
        assert f"/{SECOND_TENANT}/v2.0/.well-known/openid-configuration" in paths


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.asyncio
async def test_obo_tenant_not_allowed(emu: Emulator, is_async: bool) -> None:
    credential = obo_credential(
        emu,
        is_async=is_async,
        client_id=MULTI_APP,
        user_assertion=emu.user_token(audience=MULTI_APP, user=SECOND_USER_UPN),
        client_secret=MULTI_SECRET,
    )
    with pytest.raises(ClientAuthenticationError, match="additionally_allowed_tenants"):
        if is_async:
            async with credential:
                await credential.get_token(OBO_SCOPE, tenant_id=SECOND_TENANT)
        else:
            credential.get_token(OBO_SCOPE, tenant_id=SECOND_TENANT)
    assert token_paths(emu) == [], "the tenant is refused before any request"


def test_client_assertion_any_tenant(emu: Emulator) -> None:
    """A federated workload registered in both tenants, with additionally_allowed_tenants=*."""
    federated = emu.federated_token()
    credential = ClientAssertionCredential(
        TENANT,
        WORKLOAD,
        lambda: federated,
        authority=emu.url,
        connection_verify=emu.ca_path,
        additionally_allowed_tenants=["*"],
    )
    home = credential.get_token(APP_SCOPE)
    second = credential.get_token(APP_SCOPE, tenant_id=SECOND_TENANT)
    by_domain = credential.get_token_info(APP_SCOPE, options={"tenant_id": SECOND_DOMAIN})
    home_again = credential.get_token(APP_SCOPE)

    assert verified_claims(home.token, emu)["tid"] == TENANT
    second_claims = verified_claims(second.token, emu)
    assert second_claims["tid"] == SECOND_TENANT
    assert second_claims["appid"] == WORKLOAD
    # A domain name names the same tenant; the token carries its GUID.
    assert verified_claims(by_domain.token, emu)["tid"] == SECOND_TENANT
    assert home_again.token == home.token, "tokens are cached per tenant"
    assert token_paths(emu) == [
        f"/{TENANT}/oauth2/v2.0/token",
        f"/{SECOND_TENANT}/oauth2/v2.0/token",
        f"/{SECOND_DOMAIN}/oauth2/v2.0/token",
    ]


@pytest.mark.asyncio
async def test_client_assertion_any_tenant_async(emu: Emulator) -> None:
    federated = emu.federated_token()
    async with AsyncClientAssertionCredential(
        TENANT,
        WORKLOAD,
        lambda: federated,
        authority=emu.url,
        connection_verify=emu.ca_path,
        additionally_allowed_tenants=[SECOND_TENANT],
    ) as credential:
        token = await credential.get_token(APP_SCOPE, tenant_id=SECOND_TENANT)
    assert verified_claims(token.token, emu)["tid"] == SECOND_TENANT


def test_msal_client_credentials_in_second_tenant(emu: Emulator) -> None:
    app = confidential_client(emu, MULTI_SECRET, client_id=MULTI_APP, tenant=SECOND_DOMAIN)
    result = app.acquire_token_for_client([APP_SCOPE])
    assert "error" not in result, result
    claims = verified_claims(result["access_token"], emu)
    assert claims["tid"] == SECOND_TENANT
    assert claims["appid"] == MULTI_APP
    # MSAL resolves the domain through OpenID discovery and posts to the tenant's GUID.
    assert token_paths(emu) == [f"/{SECOND_TENANT}/oauth2/v2.0/token"]
