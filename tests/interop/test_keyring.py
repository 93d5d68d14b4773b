"""One token cache encrypted by the Secret Service, shared by Python azure-identity and `entra`.

azure-identity keeps it through msal-extensions and libsecret (Debian's python3-gi), entra
through its own D-Bus client: both must find the same keyring item, and neither may leave the
tokens in a file.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from azure.identity import ClientAssertionCredential, TokenCachePersistenceOptions

from interop_support import APP_SCOPE, TENANT, WORKLOAD, Emulator, Keyring, entra_cached_token

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CACHE_NAME = "shared-keyring"


def entra_token(
    emu: Emulator, keyring: Keyring, home: Path, assertion_file: Path, scope: str
) -> str:
    return entra_cached_token(
        emu, home, assertion_file, scope, CACHE_NAME, bus_address=keyring.bus_address
    )


def python_credential(emu: Emulator, assertion: str) -> ClientAssertionCredential:
    # Encryption required: without a usable Secret Service this raises.
    return ClientAssertionCredential(
        TENANT,
        WORKLOAD,
        lambda: assertion,
        authority=emu.url,
        cache_persistence_options=TokenCachePersistenceOptions(name=CACHE_NAME),
    )


@dataclass
class Workload:
    """A home for the cache's signal file, and the workload's assertion (also in a file)."""

    home: Path
    assertion: str
    assertion_file: Path


@pytest.fixture
def workload(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workload:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assertion = emu.federated_token()
    assertion_file = tmp_path / "assertion"
    assertion_file.write_text(assertion)
    return Workload(home, assertion, assertion_file)


def test_each_side_reads_what_the_other_kept_in_the_keyring(
    emu: Emulator, keyring: Keyring, workload: Workload
) -> None:
    home, assertion, assertion_file = workload.home, workload.assertion, workload.assertion_file
    signal_file = home / ".IdentityService" / f"{CACHE_NAME}.nocae"

    # Python writes through libsecret; entra finds the token and asks Entra for nothing.
    written_by_python = python_credential(emu, assertion).get_token(APP_SCOPE).token
    stored = keyring.stored_cache(f"{CACHE_NAME}.nocae")
    assert stored is not None
    assert any(entry["secret"] == written_by_python for entry in stored["AccessToken"].values())
    before = len(emu.token_requests())
    assert entra_token(emu, keyring, home, assertion_file, APP_SCOPE) == written_by_python
    assert len(emu.token_requests()) == before

    # entra writes another scope; a fresh Python credential finds it in the same item.
    written_by_entra = entra_token(emu, keyring, home, assertion_file, GRAPH_SCOPE)
    after_entra = len(emu.token_requests())
    assert after_entra == before + 1
    assert python_credential(emu, assertion).get_token(GRAPH_SCOPE).token == written_by_entra
    assert len(emu.token_requests()) == after_entra

    # Both tokens are in the keyring, and the file on disk is only the (empty) signal.
    stored = keyring.stored_cache(f"{CACHE_NAME}.nocae")
    assert stored is not None
    secrets = {entry["secret"] for entry in stored["AccessToken"].values()}
    assert {written_by_python, written_by_entra} <= secrets
    assert signal_file.read_bytes() == b""


def test_a_running_python_credential_sees_what_entra_adds(
    emu: Emulator, keyring: Keyring, workload: Workload
) -> None:
    """msal-extensions reloads only when the signal file's time moves: entra must touch it."""
    home, assertion, assertion_file = workload.home, workload.assertion, workload.assertion_file

    long_lived = python_credential(emu, assertion)
    long_lived.get_token(APP_SCOPE)  # loads the cache and notes when
    written_by_entra = entra_token(emu, keyring, home, assertion_file, GRAPH_SCOPE)
    requests = len(emu.token_requests())
    assert long_lived.get_token(GRAPH_SCOPE).token == written_by_entra
    assert len(emu.token_requests()) == requests


def test_entra_refuses_a_missing_secret_service_as_azure_identity_does(
    emu: Emulator, tmp_path: Path
) -> None:
    assertion_file = tmp_path / "assertion"
    assertion_file.write_text(emu.federated_token())
    result = subprocess.run(
        [
            os.environ.get("ENTRA_BIN", "target/debug/entra"), "token", "client-assertion",
            "--tenant-id", TENANT, "--client-id", WORKLOAD,
            "--authority", emu.url, "--ca-file", emu.ca_path,
            "--assertion-file", str(assertion_file),
            "--scope", APP_SCOPE, "--cache-name", CACHE_NAME,
        ],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result.stderr
    assert "allow_unencrypted_storage" in result.stderr or "--allow-unencrypted-cache" in result.stderr
    assert not (tmp_path / ".IdentityService" / f"{CACHE_NAME}.nocae").exists()
