#!/usr/bin/env bash
# Run authgate locally with a demo setup: Postgres (the configured one, or a
# throw-away cluster), a migrated schema, a demo admin user and four tokens,
# an echo upstream on 127.0.0.1:1337 that shows what it receives, and the
# gateway on 127.0.0.1:8080. Prints curl commands to try. Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

export AUTHGATE_CONFIG="${AUTHGATE_CONFIG:-config.toml}"
export AUTHGATE_POSTGRES_SCHEMA="${AUTHGATE_POSTGRES_SCHEMA:-authgate_quickstart}"

echo "==> building (first time: a few minutes)"
cargo build --quiet --bin authgate --example echo_upstream
bin=target/debug/authgate

if ! "$bin" migrate >/dev/null 2>&1; then
  echo "==> no Postgres at the configured URL; starting a throw-away cluster on 127.0.0.1:55432"
  ensure_postgres 55432 "${TMPDIR:-/tmp}/authgate-quickstart-pg"
  export AUTHGATE_POSTGRES_URL="postgres://postgres@127.0.0.1:55432/postgres"
fi

echo "==> fresh demo schema \`$AUTHGATE_POSTGRES_SCHEMA\`"
# The demo schema is recreated each run so the demo names never clash.
"$bin" migrate >/dev/null
"$bin" user list --json | grep -q '"demo@example.com"' && "$bin" user delete demo@example.com >/dev/null
for id in $("$bin" token list --json 2>/dev/null | sed -n 's/.*"id":\([0-9]*\).*/\1/p'); do
  "$bin" token delete "$id" >/dev/null 2>&1 || true
done
"$bin" role list | grep -q ' editor ' || "$bin" role create editor >/dev/null
"$bin" role grant editor plugin::content-manager.explorer.read@api::article.article >/dev/null
"$bin" user create --email demo@example.com --name Demo --role editor >/dev/null

key() { sed -n 's/.*"key":"\([0-9a-f]*\)".*/\1/p'; }
RO=$("$bin" token create --kind content-api --name demo-read-only --type read-only --json 2>/dev/null | key)
FULL=$("$bin" token create --kind content-api --name demo-full-access --type full-access --json 2>/dev/null | key)
CUSTOM=$("$bin" token create --kind content-api --name demo-custom --type custom \
  --permission api::article.article.find --json 2>/dev/null | key)
ADMIN=$("$bin" token create --kind admin --name demo-admin --owner demo@example.com \
  --permission plugin::content-manager.explorer.read@api::article.article --json 2>/dev/null | key)

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/debug/examples/echo_upstream 127.0.0.1:1337 2>/dev/null & pids+=($!)
"$bin" serve & pids+=($!)
for _ in $(seq 1 100); do
  curl -fs http://127.0.0.1:9090/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

authgate is running on http://127.0.0.1:8080 in front of an echo upstream
(http://127.0.0.1:1337), metrics on http://127.0.0.1:9090/metrics.

# read-only token: reading works (the echo shows the identity headers) ...
curl -s http://127.0.0.1:8080/api/articles -H "Authorization: Bearer $RO"
# ... writing is refused (403 ForbiddenError)
curl -s -X POST http://127.0.0.1:8080/api/articles -H "Authorization: Bearer $RO"
# full-access token: anything under /api
curl -s -X DELETE http://127.0.0.1:8080/api/articles/1 -H "Authorization: Bearer $FULL"
# custom token holding only api::article.article.find
curl -s http://127.0.0.1:8080/api/articles/1 -H "Authorization: Bearer $CUSTOM"
# admin token: may read articles in the content manager, nothing else
curl -s http://127.0.0.1:8080/content-manager/collection-types/api::article.article -H "Authorization: Bearer $ADMIN"
curl -s http://127.0.0.1:8080/admin/users -H "Authorization: Bearer $ADMIN"
# a content-API token on an admin route, and a made-up key: 401
curl -s http://127.0.0.1:8080/admin/users -H "Authorization: Bearer $RO"
curl -s http://127.0.0.1:8080/api/articles -H "Authorization: Bearer not-a-token"

Revoke one and watch it stop working at once (in another terminal):
  AUTHGATE_POSTGRES_SCHEMA=$AUTHGATE_POSTGRES_SCHEMA${AUTHGATE_POSTGRES_URL:+ AUTHGATE_POSTGRES_URL=$AUTHGATE_POSTGRES_URL} $bin token list
  AUTHGATE_POSTGRES_SCHEMA=$AUTHGATE_POSTGRES_SCHEMA${AUTHGATE_POSTGRES_URL:+ AUTHGATE_POSTGRES_URL=$AUTHGATE_POSTGRES_URL} $bin token delete <id>

Ctrl-C to stop.
MSG
wait "${pids[1]}"
