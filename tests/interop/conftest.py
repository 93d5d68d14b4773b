"""Starts the entra emulator once per session and makes every client trust it.

The emulator runs from ENTRA_BIN (run.sh sets it; otherwise target/debug/entra of this
workspace) on a free port, with a temporary state directory and a configuration written here
(see interop_support.config_toml). A socket guard refuses any connection or name lookup that
is not loopback, and the session fails if any was attempted.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interop_support import Emulator, Keyring, config_toml  # noqa: E402

WORKSPACE = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECS = 30

# ---------------------------------------------------------------------------------------------
# Loopback-only guard
# ---------------------------------------------------------------------------------------------

BLOCKED: list[str] = []
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    name = str(host).strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _is_loopback(host):
        BLOCKED.append(f"getaddrinfo({host!r})")
        raise socket.gaierror(socket.EAI_NONAME, f"interop guard: {host!r} is not loopback")
    return _real_getaddrinfo(host, *args, **kwargs)


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        if not _is_loopback(address[0]):
            BLOCKED.append(f"connect({address!r})")
            raise ConnectionRefusedError(f"interop guard: {address!r} is not loopback")


def _guarded_connect(self, address):  # type: ignore[no-untyped-def]
    _check_address(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):  # type: ignore[no-untyped-def]
    _check_address(self, address)
    return _real_connect_ex(self, address)


def pytest_configure(config: pytest.Config) -> None:
    socket.getaddrinfo = _guarded_getaddrinfo
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if BLOCKED:
        sys.stderr.write(
            "\ninterop guard: non-loopback network access was attempted:\n  "
            + "\n  ".join(BLOCKED)
            + "\n"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------


def _entra_binary() -> Path:
    configured = os.environ.get("ENTRA_BIN")
    binary = Path(configured) if configured else WORKSPACE / "target" / "debug" / "entra"
    if not binary.is_file():
        pytest.exit(f"no entra binary at {binary}: run `cargo build -p entra-cli` or set ENTRA_BIN")
    return binary


def _wait_until_listening(process: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
    while time.monotonic() < deadline:
        for line in stdout.read_text(errors="replace").splitlines():
            if line.startswith("entra emulator listening on "):
                return line.rsplit(" ", 1)[1]
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(
        f"the emulator did not start (exit status {process.poll()}):\n"
        f"stdout:\n{stdout.read_text(errors='replace')}\n"
        f"stderr:\n{stderr.read_text(errors='replace')}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# Variables that would send clients elsewhere or change what the tests expect.
_CLEARED_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "AZURE_IDENTITY_DISABLE_MULTITENANTAUTH",
    "AZURE_REGIONAL_AUTHORITY_NAME",
    "MSAL_FORCE_REGION",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    # A desktop's own keyring stays out of the tests; the keyring fixture brings one.
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_RUNTIME_DIR",
)


@pytest.fixture(scope="session", autouse=True)
def emulator() -> Iterator[Emulator]:
    """The running emulator. Also points the process environment at its CA and authority."""
    binary = _entra_binary()
    with tempfile.TemporaryDirectory(prefix="entra-interop-") as temp:
        temp_dir = Path(temp)
        state_dir = temp_dir / "state"
        info_file = temp_dir / "info.json"
        config_file = temp_dir / "emulator.toml"
        config_file.write_text(config_toml())
        stdout, stderr = temp_dir / "stdout.log", temp_dir / "stderr.log"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [
                    str(binary),
                    "emulator",
                    "--port",
                    "0",
                    "--config",
                    str(config_file),
                    "--state-dir",
                    str(state_dir),
                    "--info-file",
                    str(info_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        saved_env = dict(os.environ)
        try:
            url = _wait_until_listening(process, stdout, stderr)
            info = json.loads(info_file.read_text())
            assert info["url"] == url, (info["url"], url)
            ca_path = info["ca_pem_path"]

            for name in _CLEARED_ENV:
                os.environ.pop(name, None)
            os.environ["REQUESTS_CA_BUNDLE"] = ca_path
            os.environ["SSL_CERT_FILE"] = ca_path
            os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
            # Credentials built without authority= still talk to the emulator.
            os.environ["AZURE_AUTHORITY_HOST"] = url

            yield Emulator(info=info, ca_path=ca_path)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            _stop(process)
            if process.returncode not in (0, None):
                sys.stderr.write(
                    f"\nthe emulator exited with status {process.returncode}:\n"
                    f"{stderr.read_text(errors='replace')}\n"
                )


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    """The emulator, with its request log cleared for this test."""
    emulator.clear_requests()
    return emulator


# ---------------------------------------------------------------------------------------------
# The Secret Service
# ---------------------------------------------------------------------------------------------

_BUS_CONFIG = WORKSPACE / "tests" / "keyring" / "session-bus.conf"


@pytest.fixture(scope="session")
def keyring() -> Iterator[Keyring]:
    """A private session bus with gnome-keyring's Secret Service on it, its login keyring
    unlocked, for this whole session: libsecret binds a process to the first bus it uses.

    The bus has no service files, so nothing else can be started on it.
    """
    with tempfile.TemporaryDirectory(prefix="entra-keyring-") as temp:
        temp_dir = Path(temp)
        (temp_dir / "home").mkdir()
        (temp_dir / "run").mkdir(mode=0o700)
        bus = subprocess.Popen(
            [
                "dbus-daemon",
                f"--config-file={_BUS_CONFIG}",
                f"--address=unix:path={temp_dir / 'run' / 'bus'}",
                "--nofork",
                "--nopidfile",
                "--print-address=1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        daemon = None
        saved = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        try:
            assert bus.stdout is not None
            address = bus.stdout.readline().decode().strip()
            keyring = Keyring(
                bus_address=address,
                environment={
                    "HOME": str(temp_dir / "home"),
                    "XDG_RUNTIME_DIR": str(temp_dir / "run"),
                    "DBUS_SESSION_BUS_ADDRESS": address,
                    "PATH": os.environ.get("PATH", ""),
                },
            )
            daemon = subprocess.Popen(
                ["gnome-keyring-daemon", "--foreground", "--components=secrets", "--unlock"],
                env=keyring.environment,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert daemon.stdin is not None
            daemon.stdin.write(b"keyring-password")
            daemon.stdin.close()
            deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
            while not keyring.is_up():
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise RuntimeError("gnome-keyring-daemon did not start")
                time.sleep(0.05)
            os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
            yield keyring
        finally:
            if saved is None:
                os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SESSION_BUS_ADDRESS"] = saved
            if daemon is not None:
                _stop(daemon)
            _stop(bus)
