#!/usr/bin/env bash
# Checks the SRE surfaces in docker/ with Prometheus' own tools:
#
#   1. `promtool check rules` on docker/prometheus/alerts.yml (syntax, PromQL, templates);
#   2. `promtool test rules` on docker/prometheus/alerts.test.yml (the alerts fire when they
#      should, e.g. on a 5xx at low traffic or a vanished scrape target);
#   3. `promtool check config` on docker/prometheus.yml (its rule path pointed at the repo);
#   4. every query of every Grafana dashboard in docker/grafana/dashboards/ evaluated by
#      `promtool test rules` against synthetic series (non-zero for every metric the dashboard
#      uses): each panel's every target must return at least one series with a value, so a
#      panel that hides its data (an `or` that swallows a series, a query on a metric that
#      does not exist, a histogram without buckets...) fails. scripts/dashboard_rules.py writes
#      the rules and the test file (and refuses `or`/`unless` and queries not filtered by
#      `$instance`).
#
# promtool comes from Debian's `prometheus` package: as root with apt-get it is installed when
# missing; anywhere else the script says what to install and fails. tests/api/dashboards.rs
# runs this script, so `cargo test` covers it.
#
#   bash scripts/dashboard-check.sh            quiet; prints one line per step, fails loudly
#   KEEP=1 bash scripts/dashboard-check.sh     keep (and print) the generated files' directory
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PROMTOOL="${PROMTOOL:-promtool}"

if ! command -v "$PROMTOOL" >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "dashboard-check: promtool is missing; install it (Debian/Ubuntu, as root: apt-get install -y prometheus; or put promtool from a Prometheus release on the PATH, or set PROMTOOL=/path/to/promtool)" >&2
        exit 1
    fi
    echo "dashboard-check: installing promtool (Debian package prometheus) with apt-get" >&2
    # --no-install-recommends and no service start: only the binaries are wanted.
    if ! { apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus >/dev/null; }; then
        echo "dashboard-check: apt-get install prometheus failed; install promtool by hand (apt-get install -y prometheus)" >&2
        exit 1
    fi
    command -v "$PROMTOOL" >/dev/null || { echo "dashboard-check: prometheus installed, but promtool is still not on the PATH" >&2; exit 1; }
fi
command -v python3 >/dev/null || { echo "dashboard-check: python3 is missing (apt-get install -y python3)" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dashboard-check.XXXXXX")"
if [ -n "${KEEP:-}" ]; then
    echo "dashboard-check: generated files in $WORK" >&2
else
    trap 'rm -rf "$WORK"' EXIT
fi

# Quiet on success, the tool's whole output on failure.
step() {
    local what="$1"; shift
    if "$@" >"$WORK/out.log" 2>&1; then
        echo "dashboard-check: ok: $what"
    else
        echo "dashboard-check: FAILED: $what" >&2
        cat "$WORK/out.log" >&2
        exit 1
    fi
}

step "promtool check rules docker/prometheus/alerts.yml" \
    "$PROMTOOL" check rules "$ROOT/docker/prometheus/alerts.yml"
# The alert tests name the rule file relative to themselves.
step "promtool test rules docker/prometheus/alerts.test.yml" \
    "$PROMTOOL" test rules "$ROOT/docker/prometheus/alerts.test.yml"
# prometheus.yml names the rules where compose mounts them: check it with the repo's copy.
sed "s#/etc/prometheus/alerts.yml#$ROOT/docker/prometheus/alerts.yml#" "$ROOT/docker/prometheus.yml" >"$WORK/prometheus.yml"
step "promtool check config docker/prometheus.yml" \
    "$PROMTOOL" check config "$WORK/prometheus.yml"
step "generate dashboard rules and tests" \
    python3 "$ROOT/scripts/dashboard_rules.py" --root "$ROOT" --out "$WORK"
step "promtool check rules (dashboard queries as recording rules)" \
    "$PROMTOOL" check rules "$WORK/dashboard.rules.yml"
step "promtool test rules (every dashboard target returns data)" \
    "$PROMTOOL" test rules "$WORK/dashboard.test.yml"
