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
#   BENCH_PORT_BASE=28281 bench/instructions.sh   # ports BASE..BASE+5 (default 18281)
#   ONLY='authgate-(10k|100k|401)' bench/instructions.sh   # rows whose name matches
#   BIN=/tmp/old/authgate bench/instructions.sh   # another authgate build (A/B)
#
# The many-key rows run one more authgate (cache capacity 200,000) over
# MANY (100,000) tokens, every one warmed into its cache first, driven by
# wrk with a Lua script that stops after N responses: `authgate-10k`
# (the first 10,000 keys round-robin), `authgate-100k` (all of them), and
# `authgate-401` (100,000 made-up 256-hex keys, each refused). Instructions
# do not count cache misses: the 10k and 100k rows differ in req/s
# (`bench/load.sh`), hardly here.
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
ensure_command wrk wrk
MANY=${MANY:-100000}
GATE_BIN=${BIN:-target/release/authgate}
ensure_postgres 5432

BASE=${BENCH_PORT_BASE:-18281}
P_UP=$BASE P_NGINX=$((BASE + 1)) P_GATE=$((BASE + 2)) P_FLOOR=$((BASE + 3)) P_HYPER=$((BASE + 4))
P_MANY=$((BASE + 5))
ensure_ports_free instructions "$BASE" 6

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
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin authgate --example bench_floor --example bench_hyper_proxy
fi

mkdir -p "$W/logs"
nginx_upstream_conf "$W" "$P_UP" > "$W/upstream.conf"
# The proxy under comparison runs in the foreground as one process, so
# valgrind sees the process that does the work.
nginx_proxy_conf "$W" "$P_NGINX" "$P_UP" --foreground > "$W/proxy.conf"
nginx -p "$W" -c "$W/upstream.conf"

authgate_conf "$P_GATE" 100000 > "$W/gate.toml"
$GATE_BIN --config "$W/gate.toml" migrate >/dev/null
KEY=$($GATE_BIN --config "$W/gate.toml" token create --kind content-api --name bench --type read-only --json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')

# name|port|command...
targets=(
  "nginx|$P_NGINX|nginx -p $W -c $W/proxy.conf"
  "floor|$P_FLOOR|target/release/examples/bench_floor 127.0.0.1:$P_FLOOR 127.0.0.1:$P_UP"
  "hyper-proxy|$P_HYPER|target/release/examples/bench_hyper_proxy 127.0.0.1:$P_HYPER 127.0.0.1:$P_UP"
  "authgate-hit|$P_GATE|$GATE_BIN --config $W/gate.toml serve"
)
selected() { [ -z "${ONLY:-}" ] || [[ "$1" =~ ^($ONLY)$ ]]; }
printf "\n%s requests over 8 keep-alive connections (h2load --h1), user-space instructions counted by callgrind\n\n" "$N"
echo "| target | instructions/request | vs nginx |"
echo "|---|---:|---:|"
nginx_ir=
for t in "${targets[@]}"; do
  IFS='|' read -r name port cmd <<<"$t"
  selected "$name" || continue
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
  [ "$name" != nginx ] || nginx_ir=$per
  if [ -n "$nginx_ir" ]; then
    python3 -c "print(f'| $name | {$per:,} | {$per / $nginx_ir:.2f}x |')"
  else
    python3 -c "print(f'| $name | {$per:,} | |')"
  fi
  if [ -n "${TOP:-}" ] && [ "$name" = authgate-hit ]; then
    callgrind_annotate "$dump" 2>/dev/null | sed -n '1,/PROGRAM TOTALS/d; p' | head -n 45 >&2
  fi
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.callgrind"; fi
done

# The many-key rows: one authgate under callgrind, every token warmed in.
rows=()
for r in authgate-10k authgate-100k authgate-401; do selected "$r" && rows+=("$r"); done
[ ${#rows[@]} -gt 0 ] || exit 0
python3 - "$W" "$SALT" "$MANY" <<'PY'
import hmac, hashlib, os, sys
w, salt, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
with open(f"{w}/keys.txt", "w") as keys, open(f"{w}/tokens.csv", "w") as rows, open(f"{w}/bad.txt", "w") as bad:
    for i in range(n):
        k = os.urandom(128).hex()
        keys.write(k + "\n")
        rows.write(f"content-api,many-{i},read-only,{hmac.new(salt, k.encode(), hashlib.sha512).hexdigest()}\n")
        bad.write(os.urandom(128).hex() + "\n")
PY
psql -q "$DB_URL" -c "\\copy $SCHEMA.tokens (kind, name, type, access_key) FROM '$W/tokens.csv' CSV"
# Under callgrind the warm-up takes minutes: with the default cache TTL
# (60 s) the rows would find stale records and load them again, and a
# token's use (last_used_at, written once per interval) would be written
# again in whichever row runs next. The rows measure a cached look-up, so
# both are longer than the run.
authgate_conf "$P_MANY" 200000 \
  | sed -e 's/^\[tokens\]$/[tokens]\nlast_used_interval = "1h"/' -e 's/^\[cache\]$/[cache]\nttl = "1h"/' > "$W/many.toml"
grep -q last_used_interval "$W/many.toml" && grep -q 'ttl = "1h"' "$W/many.toml" \
  || { echo "many.toml: no [tokens] or [cache] section" >&2; exit 1; }
# keys file, how many of its keys, responses before wrk ends (wrk's
# thread:stop() would still wait out -d, so the script exits wrk itself)
keys_lua() {
  cat <<EOF
local keys, i, n = {}, 0, 0
for line in io.lines("$1") do
  keys[#keys + 1] = "Bearer " .. line
  if #keys >= $2 then break end
end
-- A prime stride: N requests ask N distinct keys spread over all of them.
request = function()
  i = (i + 7919) % #keys
  return wrk.format(nil, nil, { ["Authorization"] = keys[i + 1] })
end
response = function()
  n = n + 1
  if n >= $3 then os.exit(0) end
end
EOF
}
drive() { # lua-script (which ends wrk after its count of responses)
  wrk -t1 -c8 -d3600s --timeout 30s -s "$1" "http://127.0.0.1:$P_MANY/api/articles" >/dev/null
}
out="$W/many.callgrind"
# shellcheck disable=SC2086
valgrind --tool=callgrind --callgrind-out-file="$out.%p" $GATE_BIN --config "$W/many.toml" serve 2>"$W/logs/many.valgrind" &
pid=$!
pids+=($pid)
up=
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$P_MANY") 2>/dev/null && up=1 && break; sleep 0.1; done
[ -n "$up" ] || { echo "authgate did not listen on $P_MANY under valgrind" >&2; cat "$W/logs/many.valgrind" >&2; exit 1; }
echo "==> warming $MANY tokens into the cache under callgrind" >&2
keys_lua "$W/keys.txt" "$MANY" "$MANY" > "$W/warm.lua"
drive "$W/warm.lua" >/dev/null
keys_lua "$W/bad.txt" 2000 500 > "$W/warm-bad.lua"
drive "$W/warm-bad.lua" >/dev/null
dumps=0
for name in "${rows[@]}"; do
  case $name in
    authgate-10k) keys_lua "$W/keys.txt" 10000 "$N" > "$W/row.lua" ;;
    authgate-100k) keys_lua "$W/keys.txt" "$MANY" "$N" > "$W/row.lua" ;;
    authgate-401) keys_lua "$W/bad.txt" "$MANY" "$N" > "$W/row.lua" ;;
  esac
  callgrind_control -z "$pid" >/dev/null 2>&1
  # N answered (up to 7 more in flight are counted too: under 0.2%)
  drive "$W/row.lua"
  done_n=$N
  callgrind_control -d "$pid" >/dev/null 2>&1
  dumps=$((dumps + 1))
  dump="$out.$pid.$dumps"
  ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  per=$((ir / done_n))
  if [ -n "$nginx_ir" ]; then
    python3 -c "print(f'| $name | {$per:,} | {$per / $nginx_ir:.2f}x |')"
  else
    python3 -c "print(f'| $name | {$per:,} | |')"
  fi
  if [ -n "${TOP:-}" ]; then
    callgrind_annotate "$dump" 2>/dev/null | sed -n '1,/PROGRAM TOTALS/d; p' | head -n 45 >&2
  fi
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$dump" "$KEEP/$name.callgrind"; fi
done
