#!/usr/bin/env bash
# Validates an OpenAPI document (issue 14, "OpenAPI") with openapi-spec-validator:
#
#   scripts/openapi-check.sh path/to/openapi.json
#
# The validator lives in a Python venv under $HOME/.cache/hissaback/venv-openapi with a pinned
# version (created once, reused afterwards; HISSABACK_OPENAPI_VENV overrides the place).
# Starts nothing: scripts/fuzz.sh runs it on the document the service serves, and
# `tests/api/openapi.rs` checks the same document from Rust (unique operationIds, every route
# documented, constraints).
#
# Exits non-zero when the document is invalid, printing the validator's report.
set -euo pipefail

VALIDATOR_VERSION="0.9.0"
VENV="${HISSABACK_OPENAPI_VENV:-$HOME/.cache/hissaback/venv-openapi}"

if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "usage: $0 OPENAPI_DOCUMENT (a JSON or YAML file)" >&2
    exit 2
fi

if [ ! -x "$VENV/bin/openapi-spec-validator" ] || [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("openapi-spec-validator"))' 2>/dev/null)" != "$VALIDATOR_VERSION" ]; then
    echo "== openapi-check: installing openapi-spec-validator $VALIDATOR_VERSION in $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator==$VALIDATOR_VERSION"
fi

"$VENV/bin/openapi-spec-validator" "$1"
