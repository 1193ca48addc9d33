#!/usr/bin/env bash
# Fetches a freely licensed MaxMind-format country database for `currency_from_ip` and prints
# its path: the npm package @ip-location-db/geo-whois-asn-country-mmdb (CC0/public registry
# data; see its NRO_LICENSE), fetched with `npm pack` from the npm registry and cached.
#
#   export HISSABACK_GEOIP_DB="$(bash scripts/fetch-geoip.sh)"
#
# HISSABACK_GEOIP_VERSION pins a version (default: the one below); the cache is
# ${HISSABACK_GEOIP_HOME:-$HOME/.cache/hissaback/geoip}.
set -euo pipefail

PACKAGE="@ip-location-db/geo-whois-asn-country-mmdb"
VERSION="${HISSABACK_GEOIP_VERSION:-2.3.2026061719}"
HOME_DIR="${HISSABACK_GEOIP_HOME:-$HOME/.cache/hissaback/geoip}"
TARGET="$HOME_DIR/$VERSION/geo-whois-asn-country.mmdb"

if [ ! -s "$TARGET" ]; then
    command -v npm >/dev/null || { echo "fetch-geoip: npm is needed (Node.js)" >&2; exit 1; }
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null 2>"$work/npm.log") || {
        echo "fetch-geoip: npm pack $PACKAGE@$VERSION failed:" >&2
        cat "$work/npm.log" >&2
        exit 1
    }
    tar -xzf "$work"/*.tgz -C "$work"
    mkdir -p "$(dirname "$TARGET")"
    cp "$work/package/geo-whois-asn-country.mmdb" "$TARGET.tmp"
    cp "$work/package/NRO_LICENSE" "$(dirname "$TARGET")/NRO_LICENSE" 2>/dev/null || true
    mv "$TARGET.tmp" "$TARGET"
fi
echo "$TARGET"
