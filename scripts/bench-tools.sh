#!/usr/bin/env bash
# Installs the load tools the benchmarks call when they are missing: wrk (HTTP load,
# benches/request_path.rs) and taskset (util-linux, core pinning). As root on Debian/Ubuntu it
# uses apt-get; anywhere else it says what to install. benches/request_path.rs runs this when
# `wrk` is not on the PATH; run it by hand to prepare a machine:
#
#   bash scripts/bench-tools.sh
set -euo pipefail

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "bench-tools: missing ${missing[*]}; install it (Debian/Ubuntu, as root: apt-get install -y ${missing[*]}; macOS: brew install wrk)" >&2
    exit 1
fi
echo "bench-tools: installing ${missing[*]} with apt-get" >&2
if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "bench-tools: apt-get install ${missing[*]} failed; install it by hand (apt-get install -y ${missing[*]})" >&2
    exit 1
fi
command -v wrk >/dev/null && command -v taskset >/dev/null || {
    echo "bench-tools: ${missing[*]} installed, but wrk or taskset is still not on the PATH" >&2
    exit 1
}
