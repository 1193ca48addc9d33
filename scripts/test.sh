#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#
#   0. fetch the GeoIP country database the currency tests use (scripts/fetch-geoip.sh);
#   1. start real Apache Kafka (127.0.0.1:9092) and Apache Cassandra (127.0.0.1:9042) from
#      Maven Central jars (scripts/services.sh; no Docker needed) with fresh data;
#   2. run every test of the workspace: unit tests, the store and bus suites (each against
#      every backend, the real servers included) and the black-box API tests on the
#      embedded backends;
#   3. run the black-box API tests again on ScyllaDB/Cassandra + Kafka
#      (HISSABACK_TEST_BACKENDS=real);
#   3b. restart Kafka, then Cassandra, under a postback stream (tests/outages.rs, behind the
#      `outage-tests` feature because it stops the shared servers);
#   4. stop the servers and delete their data, whatever happened.
#
# Cargo's target directory lives outside the clone (override with CARGO_TARGET_DIR) so a
# machine that ran the suite before rebuilds only what changed. Set HISSABACK_KEEP_SERVICES=1
# to leave the servers running afterwards (faster local reruns).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hissaback/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

cleanup() {
    if [ "${HISSABACK_KEEP_SERVICES:-0}" != "1" ]; then
        bash scripts/services.sh down --wipe || true
    fi
}
trap cleanup EXIT

echo "== building tests (target dir: $CARGO_TARGET_DIR)"
cargo test --workspace --locked --no-run
cargo test --locked --features outage-tests --test outages --no-run

echo "== fetching the GeoIP country database (npm)"
HISSABACK_GEOIP_DB="$(bash scripts/fetch-geoip.sh)"
export HISSABACK_GEOIP_DB

echo "== starting Kafka and Cassandra"
if [ "${HISSABACK_KEEP_SERVICES:-0}" != "1" ]; then
    bash scripts/services.sh down --wipe || true
fi
bash scripts/services.sh up

echo "== workspace tests (embedded backends for the API; every backend for the suites)"
cargo test --workspace --locked --no-fail-fast

bash scripts/fuzz.sh  # schemathesis against /openapi.json on the embedded backends (about 2 minutes)

echo "== black-box API tests on ScyllaDB/Cassandra + Kafka"
HISSABACK_TEST_BACKENDS=real cargo test --locked --test api --no-fail-fast

echo "== outages: Kafka and Cassandra restarted under a postback stream (stops the servers, so last and alone)"
cargo test --locked --features outage-tests --test outages
