#!/usr/bin/env bash
# A typed client generated from the OpenAPI document compiles and runs the demo calls
# (issue 14, "OpenAPI", last point):
#
#   HB_BASE_URL=http://127.0.0.1:8080 HB_API_KEY=hb_sk_... HB_ADMIN_TOKEN=hb_admin_... \
#       scripts/client-check.sh path/to/openapi.json
#
# 1. Fetches openapi-generator-cli (pinned below) from Maven Central into
#    $HOME/.cache/hissaback/tools/ once (checked against Maven Central's SHA-1, never an HTML
#    error page), and generates a Python client (`hissaback_client`) from the document with the
#    JDK on the machine (Java 11 or later; JAVA_HOME is used when set). The document is
#    validated by the generator as it is: no `--skip-validate-spec`.
# 2. Installs it (dependencies from PyPI) into a venv under $HOME/.cache/hissaback/venv-client
#    (HISSABACK_CLIENT_VENV overrides the place), byte-compiles it and imports every module.
# 3. Runs scripts/client_demo.py, the demo calls through the typed client, against
#    HB_BASE_URL with HB_API_KEY (secret key), HB_ADMIN_TOKEN and optionally
#    HB_PUBLISHABLE_KEY (see that file). Without HB_BASE_URL it stops after step 2.
#
# Starts no service: `tests/api/client.rs` starts the app, seeds it, saves its document and
# runs this script. HISSABACK_CLIENT_OUT=DIR keeps the generated sources there (default: a
# temporary directory, removed at exit). Exits non-zero on any failure, printing what failed.
set -euo pipefail

GENERATOR_VERSION="7.25.0"
MAVEN_CENTRAL="https://repo.maven.apache.org/maven2"
JAR_URL="$MAVEN_CENTRAL/org/openapitools/openapi-generator-cli/$GENERATOR_VERSION/openapi-generator-cli-$GENERATOR_VERSION.jar"
CACHE="$HOME/.cache/hissaback"
TOOLS="$CACHE/tools"
JAR="$TOOLS/openapi-generator-cli-$GENERATOR_VERSION.jar"
VENV="${HISSABACK_CLIENT_VENV:-$CACHE/venv-client}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACKAGE="hissaback_client"

if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 OPENAPI_DOCUMENT (the saved /openapi.json)" >&2
    exit 2
fi
DOC="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

say() { echo "== client-check: $*" >&2; }
die() { echo "client-check: $*" >&2; exit 1; }
started=$SECONDS

mkdir -p "$TOOLS"
# One run at a time installs into the shared cache (the jar and the venv).
exec 9>"$CACHE/client-check.lock"
flock 9

# --- 1. the generator -------------------------------------------------------------------
jar_ok() {
    # A jar is a zip: "PK\x03\x04" first, and its SHA-1 is the one Maven Central publishes.
    [ -s "$1" ] && [ "$(head -c 4 "$1" | od -An -tx1 | tr -d ' \n')" = "504b0304" ] \
        && [ "$(sha1sum "$1" | cut -d' ' -f1)" = "$2" ]
}
if [ ! -f "$JAR" ] || [ ! -f "$JAR.sha1" ] || ! jar_ok "$JAR" "$(cat "$JAR.sha1")"; then
    say "downloading openapi-generator-cli $GENERATOR_VERSION from Maven Central"
    sha1="$(curl -fsSL --retry 3 --max-time 60 "$JAR_URL.sha1" | tr -d ' \r\n' | cut -c1-40)" \
        || die "could not download $JAR_URL.sha1"
    [[ "$sha1" =~ ^[0-9a-f]{40}$ ]] || die "$JAR_URL.sha1 is not a SHA-1: $(printf %q "$sha1")"
    part="$JAR.part.$$"
    trap 'rm -f "$part"' EXIT
    curl -fsSL --retry 3 --max-time 600 -o "$part" "$JAR_URL" || die "could not download $JAR_URL"
    if ! jar_ok "$part" "$sha1"; then
        echo "client-check: $JAR_URL is not the published jar (SHA-1 $(sha1sum "$part" | cut -d' ' -f1), expected $sha1); it starts with:" >&2
        head -c 300 "$part" >&2 || true
        echo >&2
        exit 1
    fi
    mv "$part" "$JAR"
    echo "$sha1" >"$JAR.sha1"
    trap - EXIT
fi

JAVA="java"
[ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ] && JAVA="$JAVA_HOME/bin/java"
command -v "$JAVA" >/dev/null || die "no Java runtime (java on PATH or JAVA_HOME): openapi-generator needs Java 11 or later"
java_major="$("$JAVA" -version 2>&1 | sed -n 's/.* version "\([0-9]*\)[."].*/\1/p' | head -1)"
[ -n "$java_major" ] && [ "$java_major" -ge 11 ] || die "openapi-generator needs Java 11 or later; $JAVA is: $("$JAVA" -version 2>&1 | head -1)"

if [ -n "${HISSABACK_CLIENT_OUT:-}" ]; then
    OUT="$HISSABACK_CLIENT_OUT"
    rm -rf "$OUT"
    mkdir -p "$OUT"
    WORK="$(mktemp -d)"
else
    WORK="$(mktemp -d)"
    OUT="$WORK/client"
fi
trap 'rm -rf "$WORK"' EXIT

say "generating the Python client with openapi-generator $GENERATOR_VERSION (Java $java_major)"
t0=$SECONDS
if ! "$JAVA" -jar "$JAR" generate -g python -i "$DOC" -o "$OUT" \
        --additional-properties="packageName=$PACKAGE" \
        --global-property=apiTests=false,modelTests=false,apiDocs=false,modelDocs=false \
        >"$WORK/generate.log" 2>&1; then
    cat "$WORK/generate.log" >&2
    die "openapi-generator failed on $DOC"
fi
# The generator's own complaints about the document (its INFO lines are file names).
grep -E '^\[main\] (WARN|ERROR)' "$WORK/generate.log" | sort | uniq -c | sort -rn >&2 || true
[ -d "$OUT/$PACKAGE" ] || { cat "$WORK/generate.log" >&2; die "no $PACKAGE package was generated"; }
say "generated $(find "$OUT/$PACKAGE" -name '*.py' | wc -l) modules in $((SECONDS - t0)) s"

# --- 2. install, compile, import --------------------------------------------------------
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    say "creating $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
t0=$SECONDS
# The dependencies the generated package declares (pydantic, urllib3, ...) and the build
# tools, then the package itself built with those (no isolated build environment to fetch each
# time), replacing the one a previous run installed (its version never changes).
"$PY" -m pip install --quiet --disable-pip-version-check -r "$OUT/requirements.txt" "setuptools>=77" wheel \
    || die "installing the client's dependencies (from PyPI) failed"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall --no-build-isolation "$OUT" \
    || die "pip could not install the generated package"
say "installed $PACKAGE in $VENV in $((SECONDS - t0)) s"

installed="$(cd "$WORK" && "$PY" -c "import os, $PACKAGE; print(os.path.dirname($PACKAGE.__file__))")" \
    || die "the installed package does not import"
case "$installed" in "$VENV"/*) ;; *) die "imported $PACKAGE from $installed, not from $VENV";; esac
"$PY" -m compileall -q -f "$installed" >"$WORK/compile.log" 2>&1 || { cat "$WORK/compile.log" >&2; die "the generated client does not compile"; }
(cd "$WORK" && "$PY" - "$PACKAGE" <<'EOF') || die "a module of the generated client does not import"
import importlib, pkgutil, sys
name = sys.argv[1]
pkg = importlib.import_module(name)
mods = [m.name for m in pkgutil.walk_packages(pkg.__path__, name + ".")]
for m in mods:
    importlib.import_module(m)
apis = [a for a in dir(pkg) if a.endswith("Api")]
print(f"== client-check: compiled and imported {len(mods) + 1} modules; APIs: {', '.join(apis)}", file=sys.stderr)
EOF

# --- 3. the demo calls ------------------------------------------------------------------
if [ -z "${HB_BASE_URL:-}" ]; then
    say "HB_BASE_URL is not set: generated, installed and compiled only ($((SECONDS - started)) s)"
    exit 0
fi
say "running the demo calls against $HB_BASE_URL"
(cd "$WORK" && "$PY" "$HERE/client_demo.py") || die "the demo calls failed through the typed client"
say "ok in $((SECONDS - started)) s"
