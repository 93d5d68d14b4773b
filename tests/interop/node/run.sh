#!/usr/bin/env bash
# Runs the Node.js interop suite (@azure/identity, @azure/msal-node) against the entra
# emulator.
#
#   bash tests/interop/node/run.sh [node --test args...]
#
# Installs the pinned packages of package-lock.json with `npm ci` only when the lock file (or
# the Node.js version) changed since the last install. Builds `entra` with cargo unless
# ENTRA_BIN names a binary already. Starts the emulator with emulator.toml on a free port and
# a temporary state directory, makes Node.js trust its CA (NODE_EXTRA_CA_CERTS, read at
# start), runs node's built-in test runner, stops the emulator. Exits with the runner's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
node="${NODE:-node}"
stamp="$here/node_modules/.entra-lock.sha256"
startup_timeout_secs=30

if ! "$node" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "run.sh: Node.js 20 or later is needed ($("$node" --version) found)" >&2
    exit 2
fi

wanted="$( { sha256sum <"$here/package-lock.json"; "$node" --version; } | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
    echo "run.sh: installing package-lock.json into $here/node_modules" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$wanted" >"$stamp"
fi

if [[ -z "${ENTRA_BIN:-}" ]]; then
    (cd "$root" && cargo build --quiet -p entra-cli)
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
        | "$node" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
    export ENTRA_BIN="$target_dir/debug/entra"
fi
if [[ ! -x "$ENTRA_BIN" ]]; then
    echo "run.sh: ENTRA_BIN=$ENTRA_BIN is not an executable" >&2
    exit 2
fi

scratch="$(mktemp -d "${TMPDIR:-/tmp}/entra-node-interop-XXXXXX")"
emulator_pid=""
cleanup() {
    if [[ -n "$emulator_pid" ]] && kill -0 "$emulator_pid" 2>/dev/null; then
        kill -TERM "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

"$ENTRA_BIN" emulator --port 0 --config "$here/emulator.toml" --state-dir "$scratch/state" \
    --info-file "$scratch/info.json" </dev/null >"$scratch/stdout.log" 2>"$scratch/stderr.log" &
emulator_pid=$!

deadline=$((SECONDS + startup_timeout_secs))
until grep -q '^entra emulator listening on ' "$scratch/stdout.log" 2>/dev/null; do
    if ! kill -0 "$emulator_pid" 2>/dev/null || ((SECONDS >= deadline)); then
        echo "run.sh: the emulator did not start:" >&2
        cat "$scratch/stdout.log" "$scratch/stderr.log" >&2
        exit 2
    fi
    sleep 0.1
done

# Only the emulator: no proxy, no environment that would send a credential elsewhere.
unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy \
    AZURE_CLIENT_ID AZURE_TENANT_ID AZURE_CLIENT_SECRET AZURE_FEDERATED_TOKEN_FILE \
    AZURE_REGIONAL_AUTHORITY_NAME AZURE_AUTHORITY_HOST
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
export EMULATOR_INFO="$scratch/info.json"
export NODE_EXTRA_CA_CERTS="$scratch/state/ca.pem"

cd "$here"
status=0
"$node" --import ./guard.mjs --test --test-concurrency=1 "$@" test/*.test.mjs || status=$?
exit "$status"
