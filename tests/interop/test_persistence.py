"""One persistent token cache file, shared by Python azure-identity and `entra`.

Both use azure-identity's layout (~/.IdentityService/<name>.nocae, MSAL's unified cache
format, msal-extensions' lock file), unencrypted as both allow when told to and no Secret
Service is there (test_keyring.py shares the encrypted cache).
"""

from __future__ import annotations

from pathlib import Path

import msal_extensions
from azure.identity import ClientAssertionCredential, TokenCachePersistenceOptions

from interop_support import APP_SCOPE, TENANT, WORKLOAD, Emulator, entra_cached_token

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def entra_token(emu: Emulator, home: Path, assertion_file: Path, scope: str) -> str:
    return entra_cached_token(
        emu, home, assertion_file, scope, "shared", allow_unencrypted=True
    )


def python_credential(emu: Emulator, assertion: str) -> ClientAssertionCredential:
    return ClientAssertionCredential(
        TENANT,
        WORKLOAD,
        lambda: assertion,
        authority=emu.url,
        cache_persistence_options=TokenCachePersistenceOptions(
            name="shared", allow_unencrypted_storage=True
        ),
    )


def test_each_side_reads_what_the_other_wrote(emu: Emulator, tmp_path: Path, monkeypatch) -> None:
    # No Secret Service, as on a headless server: azure-identity falls back to the file it
    # is allowed, whatever keyring another test left running in this process.
    def no_secret_service(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no Secret Service in this test")

    monkeypatch.setattr(msal_extensions, "LibsecretPersistence", no_secret_service)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assertion = emu.federated_token()
    assertion_file = tmp_path / "assertion"
    assertion_file.write_text(assertion)

    # Python writes; entra finds the token in the file and asks Entra for nothing.
    written_by_python = python_credential(emu, assertion).get_token(APP_SCOPE).token
    assert (home / ".IdentityService" / "shared.nocae").is_file()
    before = len(emu.token_requests())
    assert entra_token(emu, home, assertion_file, APP_SCOPE) == written_by_python
    assert len(emu.token_requests()) == before

    # entra writes another scope; a fresh Python credential finds it.
    written_by_entra = entra_token(emu, home, assertion_file, GRAPH_SCOPE)
    after_entra = len(emu.token_requests())
    assert after_entra == before + 1
    assert python_credential(emu, assertion).get_token(GRAPH_SCOPE).token == written_by_entra
    assert len(emu.token_requests()) == after_entra
