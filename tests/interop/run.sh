#!/usr/bin/env bash
# Runs the Python interop suite (azure-identity, msal) against the entra emulator.
#
#   bash tests/interop/run.sh [pytest args...]
#
# Creates or reuses tests/interop/.venv, installing requirements.txt only when it (or the
# venv's Python) changed since the last install. The venv is built on Debian's python3 (or
# $PYTHON) and sees its system packages, for the libsecret bindings (python3-gi) that
# msal-extensions encrypts the token cache with. Builds `entra` with cargo unless ENTRA_BIN
# names a binary already. Exits with pytest's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$here/.venv"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-/usr/bin/python3}"
base="$venv/.base-python"

if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1 \
    || [[ "$(cat "$base" 2>/dev/null || true)" != "$python" ]]; then
    rm -rf "$venv"
    "$python" -m venv --system-site-packages "$venv"
    printf '%s\n' "$python" >"$base"
fi

wanted="$( { sha256sum <"$requirements"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } \
    | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
    echo "run.sh: installing $requirements into $venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
        -r "$requirements"
    printf '%s\n' "$wanted" >"$stamp"
fi

if [[ -z "${ENTRA_BIN:-}" ]]; then
    (cd "$root" && cargo build --quiet -p entra-cli)
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
        | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    export ENTRA_BIN="$target_dir/debug/entra"
fi
if [[ ! -x "$ENTRA_BIN" ]]; then
    echo "run.sh: ENTRA_BIN=$ENTRA_BIN is not an executable" >&2
    exit 2
fi

cd "$root"
status=0
"$venv/bin/python" -m pytest "$here" "$@" || status=$?
exit "$status"
