#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Starts (or installs) PostgreSQL and Redis when they are not running.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

ensure_command openssl openssl
# The strapi5 tests hash keys with Python's hmac, independently of authgate.
ensure_command python3 python3
ensure_command promtool prometheus
ensure_postgres 5432
ensure_redis
# tests/redis_modes.rs starts its own servers: TLS, a cluster (set up with
# redis-cli) and sentinels.
ensure_command redis-cli redis-tools
ensure_command redis-sentinel redis-sentinel
# tests/postgres.rs puts PgBouncer 1.18 (transaction mode) in front of it,
# and makes a primary and a streaming standby with initdb and pg_basebackup.
ensure_command pgbouncer pgbouncer
# tests/differential.rs puts nginx and Node routers (pinned in tests/differential) behind the gateway.
ensure_command nginx nginx; ensure_node; (cd tests/differential && npm ci --no-audit --no-fund --loglevel=error)

# tests/doors.rs puts real nginx (above) and real Caddy in front of the decision listener.
ensure_command caddy caddy
# tests/grpc.rs (and bench/load.sh) speak gRPC Check with Envoy's own protos
# (xds-protos) and grpcio, pinned, in a venv made once under ~/.cache.
bash tests/grpc/venv.sh >/dev/null

echo "==> house rules (file and function length)"
python3 scripts/house_rules.py
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --locked
echo "==> deployment artefacts (kustomize, the Helm chart, kubernetes-validate, promtool, hadolint)"
scripts/check-deploy.sh
echo "==> quickstart smoke test (127.0.0.1:1337 held by another program)"
scripts/quickstart-smoke.sh
echo "==> browser test of the management page (headless Chromium)"
scripts/browser-test.sh
