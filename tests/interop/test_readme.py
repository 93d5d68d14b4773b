"""The README's promise: a Python azure-identity user needs only the emulator's info file."""

from __future__ import annotations

from azure.identity import ClientSecretCredential

from interop_support import Emulator, verified_claims


def test_client_secret_credential_from_the_info_file_alone(emu: Emulator) -> None:
    # Exactly what the README shows, reading nothing but the info file's fields.
    info = emu.info
    tenant = info["tenants"][0]
    app = tenant["applications"][0]
    credential = ClientSecretCredential(
        tenant["id"],
        app["client_id"],
        app["secrets"][0],
        authority=info["authority_host"],
        disable_instance_discovery=True,
    )
    token = credential.get_token("api://downstream/.default").token
    claims = verified_claims(token, emu)
    assert claims["appid"] == app["client_id"]
    assert claims["tid"] == tenant["id"]
    assert claims["aud"] == "api://downstream"
