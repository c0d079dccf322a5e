#!/usr/bin/env bash
# Run authgate locally with a demo setup: Postgres (the configured one, or a
# throw-away cluster), a migrated schema, a demo admin user and four tokens,
# an echo upstream that shows what it receives, and the gateway. Prints curl
# commands to try, each with the status it answers. Ctrl-C stops it all.
#
# Every port is checked before anything starts. A port left at its default
# that is busy is replaced by a free one (and the chosen ports are printed);
# a port you set that is busy stops the script with one line naming it:
#   AUTHGATE_QUICKSTART_PORT           the gateway       (default 8080)
#   AUTHGATE_QUICKSTART_METRICS_PORT   metrics, probes   (default 9090)
#   AUTHGATE_QUICKSTART_MGMT_PORT      management page   (default 9091)
#   AUTHGATE_QUICKSTART_UPSTREAM_PORT  echo upstream     (default 18337; never
#                                      Strapi's 1337, which may be your Strapi)
#   AUTHGATE_QUICKSTART_PG_PORT        throw-away Postgres, when needed (55432)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh

export AUTHGATE_CONFIG="${AUTHGATE_CONFIG:-config.toml}"
export AUTHGATE_POSTGRES_SCHEMA="${AUTHGATE_POSTGRES_SCHEMA:-authgate_quickstart}"

# Is something listening on 127.0.0.1:$1?
busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
chosen=()
# pick VAR DEFAULT: the port in $VAR, else DEFAULT, else the next free one.
pick() {
  local var="$1" default="$2" p
  if [ -n "${!var:-}" ]; then
    p="${!var}"
    if busy "$p"; then
      echo "quickstart: port $p is busy (something listens on 127.0.0.1:$p); set $var to a free port" >&2
      exit 1
    fi
  else
    p="$default"
    while busy "$p" || [[ " ${chosen[*]:-} " == *" $p "* ]]; do
      p=$((p + 1))
      [ "$p" -lt $((default + 200)) ] || { echo "quickstart: no free port near $default; set $var" >&2; exit 1; }
    done
    [ "$p" = "$default" ] || echo "==> port $default is busy; using $p ($var moves it)"
  fi
  chosen+=("$p")
  printf -v "$var" '%s' "$p"
}
pick AUTHGATE_QUICKSTART_PORT 8080
pick AUTHGATE_QUICKSTART_METRICS_PORT 9090
pick AUTHGATE_QUICKSTART_MGMT_PORT 9091
pick AUTHGATE_QUICKSTART_UPSTREAM_PORT 18337
GATE="127.0.0.1:$AUTHGATE_QUICKSTART_PORT"
UP="127.0.0.1:$AUTHGATE_QUICKSTART_UPSTREAM_PORT"
export AUTHGATE_SERVER_LISTEN="$GATE"
export AUTHGATE_METRICS_LISTEN="127.0.0.1:$AUTHGATE_QUICKSTART_METRICS_PORT"
export AUTHGATE_MANAGEMENT_LISTEN="127.0.0.1:$AUTHGATE_QUICKSTART_MGMT_PORT"
export AUTHGATE_UPSTREAM_URL="http://$UP"

echo "==> building (first time: a few minutes)"
cargo build --quiet --bin authgate --example echo_upstream
bin=target/debug/authgate

if ! "$bin" migrate >/dev/null 2>&1; then
  PG_PORT="${AUTHGATE_QUICKSTART_PG_PORT:-55432}"
  if busy "$PG_PORT" && ! pg_up 127.0.0.1 "$PG_PORT"; then
    echo "quickstart: port $PG_PORT is busy and is not a Postgres; set AUTHGATE_QUICKSTART_PG_PORT to a free port" >&2
    exit 1
  fi
  echo "==> no Postgres at the configured URL; starting a throw-away cluster on 127.0.0.1:$PG_PORT"
  ensure_postgres "$PG_PORT" "${TMPDIR:-/tmp}/authgate-quickstart-pg-$PG_PORT"
  export AUTHGATE_POSTGRES_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
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

# The ports were free a moment ago; make sure what answers there now is
# what we started (never somebody else's server).
for p in "${chosen[@]}"; do
  if busy "$p"; then
    echo "quickstart: port $p was taken while building; run again (or set the variables above)" >&2
    exit 1
  fi
done
target/debug/examples/echo_upstream "$UP" & pids+=($!)
"$bin" serve & pids+=($!)
up=
for _ in $(seq 1 100); do
  kill -0 "${pids[0]}" 2>/dev/null || { echo "quickstart: the echo upstream did not start on $UP" >&2; exit 1; }
  kill -0 "${pids[1]}" 2>/dev/null || { echo "quickstart: authgate did not start; see the lines above" >&2; exit 1; }
  curl -fs "http://127.0.0.1:$AUTHGATE_QUICKSTART_METRICS_PORT/readyz" >/dev/null 2>&1 && busy "$AUTHGATE_QUICKSTART_UPSTREAM_PORT" && up=1 && break
  sleep 0.1
done
[ -n "$up" ] || { echo "quickstart: authgate is not ready after 10 s" >&2; exit 1; }

cat <<MSG

authgate is running on http://$GATE in front of an echo upstream
(http://$UP), metrics on http://127.0.0.1:$AUTHGATE_QUICKSTART_METRICS_PORT/metrics,
the token management page on http://127.0.0.1:$AUTHGATE_QUICKSTART_MGMT_PORT/.
Each command ends with the status it answers.

# read-only token: reading works (the echo shows the identity headers) ...
curl -s http://$GATE/api/articles -H "Authorization: Bearer $RO"   # 200
# ... writing is refused (ForbiddenError)
curl -s -X POST http://$GATE/api/articles -H "Authorization: Bearer $RO"   # 403
# full-access token: anything under /api
curl -s -X DELETE http://$GATE/api/articles/1 -H "Authorization: Bearer $FULL"   # 200
# custom token holding only api::article.article.find: the list works ...
curl -s http://$GATE/api/articles -H "Authorization: Bearer $CUSTOM"   # 200
# ... one article is findOne, which it does not hold
curl -s http://$GATE/api/articles/1 -H "Authorization: Bearer $CUSTOM"   # 403
# admin token: may read articles in the content manager, nothing else
curl -s http://$GATE/content-manager/collection-types/api::article.article -H "Authorization: Bearer $ADMIN"   # 200
curl -s http://$GATE/admin/users -H "Authorization: Bearer $ADMIN"   # 403
# a content-API token on an admin route, and a made-up key
curl -s http://$GATE/admin/users -H "Authorization: Bearer $RO"   # 401
curl -s http://$GATE/api/articles -H "Authorization: Bearer not-a-token"   # 401

Revoke one and watch it stop working at once (in another terminal):
  AUTHGATE_POSTGRES_SCHEMA=$AUTHGATE_POSTGRES_SCHEMA${AUTHGATE_POSTGRES_URL:+ AUTHGATE_POSTGRES_URL=$AUTHGATE_POSTGRES_URL} $bin token list
  AUTHGATE_POSTGRES_SCHEMA=$AUTHGATE_POSTGRES_SCHEMA${AUTHGATE_POSTGRES_URL:+ AUTHGATE_POSTGRES_URL=$AUTHGATE_POSTGRES_URL} $bin token delete <id>

Ctrl-C to stop.
MSG
wait "${pids[1]}"
