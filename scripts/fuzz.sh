#!/usr/bin/env bash
# Fuzzes the running service through its own OpenAPI document (issue 13, "Fuzzing in CI"):
#
#   1. a Python venv under $HOME/.cache/hissaback/fuzz-venv with a pinned schemathesis
#      (created once, reused afterwards);
#   2. the debug `hissaback` binary (what scripts/test.sh builds), started with `serve` on a
#      free port, embedded backends and a fresh temporary data directory;
#   3. seeds an affiliate, a secret key holding every scope and a publishable key through
#      the admin API;
#   4. validates /openapi.json with openapi-spec-validator (scripts/openapi-check.sh, its own
#      venv under $HOME/.cache/hissaback/venv-openapi), then
#      `schemathesis run /openapi.json` with the checks not_a_server_error,
#      status_code_conformance, content_type_conformance and response_schema_conformance
#      (the documented bodies), a fixed seed and a time budget:
#      first every non-admin operation with the secret key, then the admin API with the
#      admin token (the admin pass can revoke or rotate the key, so it runs second);
#   5. stops the service and deletes its data, whatever happened.
#
# Exits non-zero on any failure, after schemathesis's report (and the service's log tail).
# Knobs: FUZZ_SEED (default 13), FUZZ_MAX_TIME seconds per pass (default 60),
# FUZZ_MAX_EXAMPLES per operation (default 25), FUZZ_CHECKS (schemathesis --checks),
# FUZZ_KEEP=1 keeps the data dir and log.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hissaback/target}"
VENV="${HISSABACK_FUZZ_VENV:-$HOME/.cache/hissaback/fuzz-venv}"
SEED="${FUZZ_SEED:-13}"
MAX_TIME="${FUZZ_MAX_TIME:-60}"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-25}"
ADMIN_TOKEN="hb_admin_fuzz_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"

echo "== fuzz: schemathesis $SCHEMATHESIS_VERSION in $VENV"
if [ ! -x "$VENV/bin/schemathesis" ] || [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$SCHEMATHESIS_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== fuzz: building hissaback (debug, as scripts/test.sh)"
cargo build --locked --bin hissaback
BIN="$CARGO_TARGET_DIR/debug/hissaback"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/hissaback-fuzz.XXXXXX")"
PID=""
cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ "${FUZZ_KEEP:-0}" = "1" ]; then
        echo "== fuzz: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE="http://127.0.0.1:$PORT"

echo "== fuzz: serving on $BASE (data in $WORK/data)"
# No inherited HISSABACK_* setting (a developer's real backends must not be fuzzed), and no
# hissaback.toml: run from the temp dir.
(
    cd "$WORK"
    for v in $(env | grep -o '^HISSABACK_[A-Za-z0-9_]*' || true); do unset "$v"; done
    export HISSABACK_LISTEN="127.0.0.1:$PORT"
    export HISSABACK_DATA_DIR="$WORK/data"
    export HISSABACK_ADMIN_TOKEN="$ADMIN_TOKEN"
    export HISSABACK_STORE_BACKEND=embedded
    export HISSABACK_EVENTS_BACKEND=embedded
    # Fuzzing sends many requests from one address, some with bad credentials.
    export HISSABACK_AUTH_FAILURES_PER_MINUTE=1000000
    # Webhook URLs the fuzzer invents must not be called: https only, nothing allowed.
    export HISSABACK_WEBHOOK_HTTPS_ONLY=true
    export RUST_LOG="${RUST_LOG:-warn}"
    exec "$BIN" serve
) >"$WORK/service.log" 2>&1 &
PID=$!

for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; then break; fi
    if ! kill -0 "$PID" 2>/dev/null; then echo "hissaback exited before serving:"; cat "$WORK/service.log"; exit 1; fi
    sleep 0.1
done
curl -fsS -o /dev/null "$BASE/healthz" || { echo "hissaback not healthy after 30s:"; tail -50 "$WORK/service.log"; exit 1; }

# The document schemathesis reads must be a valid OpenAPI document first (unique
# operationIds, resolvable references, ...): scripts/openapi-check.sh (openapi-spec-validator).
echo "== fuzz: validating $BASE/openapi.json"
curl -fsS -o "$WORK/openapi.json" "$BASE/openapi.json"
bash scripts/openapi-check.sh "$WORK/openapi.json"

admin() { # METHOD PATH [JSON]
    curl -fsS -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} "$BASE$2"
}
echo "== fuzz: seeding an affiliate and its keys"
AFFILIATE_ID="$(admin POST /admin/v1/affiliates \
    '{"name":"Fuzz Affiliate","email":"fuzz@example.com","active":true,"blog_approved":true}' | jq -er '.data.affiliate.id')"
SECRET_KEY="$(admin POST "/admin/v1/affiliates/$AFFILIATE_ID/keys" \
    '{"kind":"secret","rate_limit":{"per_minute":1000000,"burst":1000000}}' | jq -er '.data.key.key')"
admin POST "/admin/v1/affiliates/$AFFILIATE_ID/keys" \
    '{"kind":"publishable","rate_limit":{"per_minute":1000000,"burst":1000000}}' | jq -e '.data.key.key' >/dev/null
# A network, whose postback token every generated postback carries (else all are 401s).
POSTBACK_TOKEN="$(admin POST /admin/v1/networks '{"name":"Fuzz Network"}' | jq -er '.data.network.postback_token')"
cat >"$WORK/schemathesis.toml" <<TOML
[parameters]
"query.token" = "$POSTBACK_TOKEN"
TOML

ST="$VENV/bin/schemathesis"
# One worker: Hypothesis describes its strategies with `ast.parse`, which CPython 3.11 before
# 3.11.8 can break on from concurrent threads ("AST constructor recursion depth mismatch").
COMMON=(
    --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}"
    --seed "$SEED" --max-time "$MAX_TIME" --max-examples "$MAX_EXAMPLES"
    --workers 1 --max-redirects 0 --request-timeout 10
    --suppress-health-check all --generation-database none
    --generation-with-security-parameters false
)
status=0
echo "== fuzz: affiliate, partner and operations API (secret key)"
"$ST" --no-color --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" "${COMMON[@]}" --exclude-path-regex '^/admin/' \
    -H "Authorization: Bearer $SECRET_KEY" || status=1
echo "== fuzz: admin API (admin token)"
"$ST" --no-color --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" "${COMMON[@]}" --include-path-regex '^/admin/' \
    -H "Authorization: Bearer $ADMIN_TOKEN" || status=1

if ! kill -0 "$PID" 2>/dev/null; then
    echo "== fuzz: hissaback died during the run"
    status=1
fi
if [ "$status" != 0 ]; then
    echo "== fuzz: FAILED; last lines of the service log:"
    tail -40 "$WORK/service.log"
fi
exit "$status"
