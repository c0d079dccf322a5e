#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind:
# authgate (a cached token, full check) against nginx's proxy_pass, the
# floor and the bare hyper proxy, behind the same nginx upstream.
#
# Unlike req/s, an instruction count does not depend on what else the
# machine is doing, so it compares two builds on a busy machine and shows
# where the user-space half of a request goes (kernel time is not counted:
# `bench/load.sh` reports both as CPU microseconds). Each target is
# warmed up, its counters zeroed, then exactly N requests are sent with
# h2load over 8 keep-alive connections and the counters dumped.
#
#   bench/instructions.sh                 # N=4000
#   N=20000 bench/instructions.sh
#   TOP=1 bench/instructions.sh           # also authgate's 40 costliest functions (self cost)
#   ONLY=authgate-hit KEEP=/tmp/dumps bench/instructions.sh   # one target; keep its callgrind dump
#   BENCH_PORT_BASE=28281 bench/instructions.sh   # ports BASE..BASE+4 (default 18281)
#
# Needs: valgrind, nginx, h2load (Debian: valgrind, nginx, nghttp2-client;
# installed with apt if missing), PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
. bench/configs.sh

N=${N:-4000}
ensure_command valgrind valgrind
ensure_command nginx nginx
ensure_command h2load nghttp2-client
ensure_postgres 5432

BASE=${BENCH_PORT_BASE:-18281}
P_UP=$BASE P_NGINX=$((BASE + 1)) P_GATE=$((BASE + 2)) P_FLOOR=$((BASE + 3)) P_HYPER=$((BASE + 4))
ensure_ports_free instructions "$BASE" 5

W=$(mktemp -d /tmp/authgate-instr.XXXXXX)
SCHEMA=authgate_instr_$$
DB_URL=${AUTHGATE_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SALT=instructions-salt-0123456789abcdef
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  nginx -p "$W" -c "$W/upstream.conf" -s stop 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$DB_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

echo "==> building (release)" >&2
cargo build --release --quiet --bin authgate --example bench_floor --example bench_hyper_proxy

mkdir -p "$W/logs"
nginx_upstream_conf "$W" "$P_UP" > "$W/upstream.conf"
# The proxy under comparison runs in the foreground as one process, so
# valgrind sees the process that does the work.
nginx_proxy_conf "$W" "$P_NGINX" "$P_UP" --foreground > "$W/proxy.conf"
nginx -p "$W" -c "$W/upstream.conf"

authgate_conf "$P_GATE" 100000 > "$W/gate.toml"
target/release/authgate --config "$W/gate.toml" migrate >/dev/null
KEY=$(target/release/authgate --config "$W/gate.toml" token create --kind content-api --name bench --type read-only --json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

# name|port|command...
targets=(
  "nginx|$P_NGINX|nginx -p $W -c $W/proxy.conf"
  "floor|$P_FLOOR|target/release/examples/bench_floor 127.0.0.1:$P_FLOOR 127.0.0.1:$P_UP"
  "hyper-proxy|$P_HYPER|target/release/examples/bench_hyper_proxy 127.0.0.1:$P_HYPER 127.0.0.1:$P_UP"
  "authgate-hit|$P_GATE|target/release/authgate --config $W/gate.toml serve"
)
printf "\n%s requests over 8 keep-alive connections (h2load --h1), user-space instructions counted by callgrind\n\n" "$N"
echo "| target | instructions/request | vs nginx |"
echo "|---|---:|---:|"
nginx_ir=
for t in "${targets[@]}"; do
  IFS='|' read -r name port cmd <<<"$t"
  [ -z "${ONLY:-}" ] || [ "$ONLY" = "$name" ] || continue
  out="$W/$name.callgrind"
  # shellcheck disable=SC2086
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" $cmd 2>"$W/logs/$name.valgrind" &
  pid=$!
  pids+=($pid)
  up=
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && up=1 && break; sleep 0.1; done
  [ -n "$up" ] || { echo "$name did not listen on $port under valgrind" >&2; cat "$W/logs/$name.valgrind" >&2; exit 1; }
  h2load --h1 -n 500 -c 8 -H "Authorization: Bearer $KEY" "http://127.0.0.1:$port/api/articles" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  res=$(h2load --h1 -n "$N" -c 8 -H "Authorization: Bearer $KEY" "http://127.0.0.1:$port/api/articles")
  ok=$(awk '/^status codes:/ {print $3}' <<<"$res")
  [ "$ok" = "$N" ] || { echo "$name: $ok of $N requests got 2xx" >&2; echo "$res" >&2; exit 1; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # The dump asked for above (`.1`), not the one written at exit.
  dump="$out.$pid.1"
  ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  per=$((ir / N))
  [ -n "$nginx_ir" ] || nginx_ir=$per
  python3 -c "print(f'| $name | {$per:,} | {$per / $nginx_ir:.2f}x |')"
  if [ -n "${TOP:-}" ] && [ "$name" = authgate-hit ]; then
    callgrind_annotate "$dump" 2>/dev/null | sed -n '1,/PROGRAM TOTALS/d; p' | head -n 45 >&2
  fi
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.callgrind"; fi
done
