#!/usr/bin/env bash
# Browser test of the management page (tests/browser/ui.test.mjs): headless
# Chromium driven by playwright-core signs in, creates a custom token, copies
# its key, uses it on the proxy, regenerates it and sees the old key refused.
# Screenshots land in target/browser/.
#
# Installs what it needs on a Debian machine: PostgreSQL (via services.sh),
# the psql client, Debian's chromium and chromium-driver, fonts, Node.js and
# npm, and playwright-core from the lockfile in tests/browser. Set CHROMIUM to
# use another Chromium binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_postgres 5432
ensure_command psql postgresql-client

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "==> installing Debian's chromium and chromium-driver"
  apt_install chromium chromium-driver fonts-dejavu-core fonts-liberation
  CHROMIUM=/usr/bin/chromium
fi
# Headless Chromium still needs a font to draw text in the screenshots.
command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list 2>/dev/null | head -n 1)" ] \
  || apt_install fonts-dejavu-core

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt 18 ] || ! command -v npm >/dev/null 2>&1; then
  echo "==> installing Node.js and npm"
  apt_install nodejs npm
fi
if [ "$(node_major)" -lt 18 ]; then
  echo "browser-test: Node.js 18 or newer is needed (found $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

echo "==> playwright-core (tests/browser/package-lock.json)"
(
  cd tests/browser
  # Reinstall only when the lockfile changed since the last install.
  if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.lockfile-copy 2>/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.lockfile-copy
  fi
)

echo "==> building authgate and the echo upstream"
cargo build --quiet --locked --bin authgate --example echo_upstream

echo "==> browser test"
mkdir -p target/browser
CHROMIUM="$CHROMIUM" \
AUTHGATE_BIN="$PWD/target/debug/authgate" \
ECHO_BIN="$PWD/target/debug/examples/echo_upstream" \
OUT_DIR="$PWD/target/browser" \
  node tests/browser/ui.test.mjs
