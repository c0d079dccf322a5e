#!/usr/bin/env bash
# Load benchmark: authgate vs a plain nginx reverse proxy vs a direct
# connection, all on loopback, each proxy with ONE worker, measured in the
# same run, alternating targets over several rounds (medians reported).
#
#   bench/load.sh                 # full run (3 rounds x 10 s per target)
#   bench/load.sh --smoke         # 1 round x 2 s: checks the script works
#   ROUNDS=5 DURATION=15 CONNECTIONS=64 bench/load.sh
#   HOLD=1 bench/load.sh          # set everything up and wait (for profiling)
#   BENCH_PORT_BASE=28081 bench/load.sh   # ports BASE..BASE+12 (default 18081)
#   ONLY='decision|auth-request|forward-auth' bench/load.sh --smoke
#                                 # only the rows whose name matches (no
#                                 # latency section)
#
# The front doors (issue 28): nginx with auth_request and Caddy with
# forward_auth in front of the upstream, each asking authgate's decision
# listener (the configs of docs/front-doors.md, tests/fronts/), and the
# decision endpoint alone (/forward-auth with Traefik's headers). Their CPU
# columns are authgate's (the decision), not the front proxy's. The gRPC
# Check row (decision-grpc) posts one framed CheckRequest, as Envoy's
# ext_authz grpc_service sends it, with h2load (Debian's nghttp2-client)
# over h2c with prior knowledge, 8 streams per connection; h2load gives
# no percentiles, so its p50 and p99 columns are the mean and the max.
#
# Tracing (issue 26): the cached instance again, twice, with `[tracing]`
# exporting every span to the upstream nginx as its OTLP sink (it answers
# 200 to any POST), at sample_ratio 0.01 and 1.0: beside authgate-hit (off),
# what recording and exporting a trace costs a request.
#
# Many tokens and made-up keys (issue 25): `authgate-100k` is a second
# cached authgate (capacity 200,000) driven over MANY (100,000) tokens
# round-robin, every one warmed in first and cached for the whole run
# (`cache.ttl = "1h"`, see below); `authgate-401` sends 100,000
# distinct made-up keys (none issued, each refused with 401) to the cached
# authgate, and `nginx-401` the same requests to an nginx whose one
# location answers `return 401` with authgate's body: what a made-up key
# costs next to the cheapest refusal a web server gives.
#
# Besides nginx, two programs of our own bracket authgate (bench/floor.rs:
# bytes copied between pinned connections, the least a proxy can do;
# bench/hyper_proxy.rs: hyper's server and pooled client with nothing
# else, the ceiling of anything built on them).
#
# Targets include the strapi5 layout (authgate reading a Strapi 5 schema in
# place, tests/fixtures/strapi5-schema.sql) without and with authgate's
# triggers: a cached token, and a flood of made-up keys ("-reject"). There
# is no Strapi here; the closing line compares with Strapi's own rate as
# measured elsewhere (~1,100-1,250 made-up keys/s, issue 13).
#
# Needs: nginx, wrk, caddy, h2load (Debian packages; installed with apt if
# missing), PostgreSQL (the machine's, or a throw-away cluster), python3
# (and the venv of tests/grpc/venv.sh, made once, for the CheckRequest).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
. bench/configs.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
# The open-loop rate of the latency rows (issue 14 compares at 2,000 req/s).
OPEN_RATE=${OPEN_RATE:-2000}
TOKENS=${TOKENS:-10000}
MANY=${MANY:-100000}
if [ "${1:-}" = "--smoke" ]; then ROUNDS=1; DURATION=2; TOKENS=200; MANY=2000; fi

ensure_command nginx nginx
ensure_command wrk wrk
ensure_command caddy caddy
ensure_command h2load nghttp2-client
ensure_postgres 5432

BASE=${BENCH_PORT_BASE:-18081}
P_UP=$BASE P_NGINX=$((BASE + 1)) P_GATE=$((BASE + 2)) P_UNCACHED=$((BASE + 3))
P_S5=$((BASE + 4)) P_S5T=$((BASE + 5)) P_FLOOR=$((BASE + 6)) P_HYPER=$((BASE + 7))
P_DEC=$((BASE + 8)) P_NGXA=$((BASE + 9)) P_CADDY=$((BASE + 10))
P_TR1=$((BASE + 11)) P_TR100=$((BASE + 12)) P_MANY=$((BASE + 13)) P_N401=$((BASE + 14))
ensure_ports_free bench "$BASE" 15

W=$(mktemp -d /tmp/authgate-bench.XXXXXX)
SCHEMA=authgate_bench_$$
DB_URL=${AUTHGATE_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SALT=bench-salt-0123456789abcdef
pids=()
S5_DBS=(authgate_bench_s5_$$ authgate_bench_s5t_$$)
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  nginx -p "$W" -c "$W/upstream.conf" -s stop 2>/dev/null || true
  nginx -p "$W" -c "$W/proxy.conf" -s stop 2>/dev/null || true
  nginx -p "$W" -c "$W/refuse.conf" -s stop 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$DB_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  for d in "${S5_DBS[@]}"; do
    psql -q "$DB_URL" -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true
  done
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

echo "==> building authgate (release)" >&2
cargo build --release --quiet --bin authgate --example latency --example bench_floor --example bench_hyper_proxy

# Ports: BASE upstream, +1 nginx proxy, +2 authgate (cache), +3 authgate (no
# cache), +4 authgate strapi5 (polled), +5 authgate strapi5 (triggers),
# +6 the floor, +7 the bare hyper proxy, +8 the cached authgate's decision
# listener, +9 nginx with auth_request, +10 Caddy with forward_auth,
# +11 and +12 authgate (cache) tracing 1% and 100% of requests
mkdir -p "$W/logs"
# Two nginx instances, one worker each: the upstream (answers from memory)
# and the plain reverse proxy under comparison, so the proxy's worker does
# nothing but proxy, as authgate's does.
nginx_upstream_conf "$W" "$P_UP" > "$W/upstream.conf"
nginx_proxy_conf "$W" "$P_NGINX" "$P_UP" > "$W/proxy.conf"
nginx -p "$W" -c "$W/upstream.conf"
nginx -p "$W" -c "$W/proxy.conf"
# nginx refusing every request itself, with authgate's 401 body.
body401=$(python3 -c 'import json; print(json.dumps({"data": None, "error": {"status": 401, "name": "UnauthorizedError", "message": "Missing or invalid credentials", "details": {}}}, separators=(",", ":")))')
sed -e "s#pid $W/upstream.pid#pid $W/refuse.pid#" -e "s#listen 127.0.0.1:$P_UP#listen 127.0.0.1:$P_N401#" \
  -e "s#default_type application/json; return 200 '.*';#default_type 'application/json; charset=utf-8'; return 401 '$body401';#" \
  -e "s#upstream-error.log#refuse-error.log#" "$W/upstream.conf" > "$W/refuse.conf"
grep -q "return 401" "$W/refuse.conf" || { echo "the nginx-401 config did not come out" >&2; exit 1; }
nginx -p "$W" -c "$W/refuse.conf"

authgate_conf $P_GATE 100000 > "$W/cached.toml"
printf '\n[decision]\nlisten = "127.0.0.1:%s"\n' "$P_DEC" >> "$W/cached.toml"
# Its records must outlive the run: the row measures 100,000 *cached*
# tokens, and each comes round once per pass over the set, minutes apart
# between the row's turns, so with the default 60 s TTL every request of
# the row would re-read a stale record (that is the authgate-miss row).
authgate_conf $P_MANY 200000 | sed 's/^\[cache\]$/[cache]\nttl = "1h"/' > "$W/many.toml"
grep -q 'ttl = "1h"' "$W/many.toml"
authgate_conf $P_UNCACHED 0 > "$W/uncached.toml"
for t in "$P_TR1 0.01 tr1" "$P_TR100 1.0 tr100"; do
  read -r port ratio name <<<"$t"
  authgate_conf "$port" 100000 > "$W/$name.toml"
  printf '\n[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' "$P_UP" "$ratio" >> "$W/$name.toml"
done
authgate_conf $P_S5 100000 "${S5_DBS[0]}" > "$W/s5.toml"
authgate_conf $P_S5T 100000 "${S5_DBS[1]}" > "$W/s5t.toml"

echo "==> $TOKENS tokens in schema $SCHEMA" >&2
target/release/authgate --config "$W/cached.toml" migrate >/dev/null
python3 - "$W" "$SALT" "$TOKENS" "$MANY" <<'PY'
import hmac, hashlib, os, sys
w, salt, n, many = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
with open(f"{w}/keys.txt", "w") as keys, open(f"{w}/tokens.csv", "w") as rows:
    for i in range(n):
        k = os.urandom(128).hex()
        keys.write(k + "\n")
        rows.write(f"content-api,bench-{i},read-only,{hmac.new(salt, k.encode(), hashlib.sha512).hexdigest()}\n")
# The many-token set (authgate-100k): in the same table, after the others.
with open(f"{w}/keys-many.txt", "w") as keys, open(f"{w}/tokens.csv", "a") as rows:
    for i in range(many):
        k = os.urandom(128).hex()
        keys.write(k + "\n")
        rows.write(f"content-api,many-{i},read-only,{hmac.new(salt, k.encode(), hashlib.sha512).hexdigest()}\n")
with open(f"{w}/bad.txt", "w") as bad:
    for i in range(50000):
        bad.write(os.urandom(128).hex() + "\n")
with open(f"{w}/bad-many.txt", "w") as bad:
    for i in range(100000):
        bad.write(os.urandom(128).hex() + "\n")
PY
psql -q "$DB_URL" -c "\\copy $SCHEMA.tokens (kind, name, type, access_key) FROM '$W/tokens.csv' CSV"
# Two Strapi 5 databases with the same tokens (and the index authgate
# recommends); the second gets authgate's triggers.
for d in "${S5_DBS[@]}"; do
  psql -q "$DB_URL" -c "CREATE DATABASE $d" >/dev/null
  grep -v '^\\' tests/fixtures/strapi5-schema.sql | psql -q "${DB_URL%/*}/$d" >/dev/null
  psql -q "${DB_URL%/*}/$d" \
    -c "\\copy strapi_api_tokens (kind, name, type, access_key) FROM '$W/tokens.csv' CSV" \
    -c "CREATE INDEX ON strapi_api_tokens (access_key)" >/dev/null
  psql -q "${DB_URL%/*}/$d" -v ct="$(tr -d '\n' < tests/fixtures/strapi5-content-types.json)" >/dev/null <<'SQL'
INSERT INTO strapi_core_store_settings (key, value, type) VALUES ('strapi_content_types_schema', :'ct', 'object');
SQL
done
target/release/authgate --config "$W/s5t.toml" migrate >/dev/null

target/release/authgate --config "$W/cached.toml" serve 2>"$W/logs/cached.log" & pids+=($!)
target/release/authgate --config "$W/many.toml" serve 2>"$W/logs/many-cached.log" & many_pid=$!
target/release/authgate --config "$W/uncached.toml" serve 2>"$W/logs/uncached.log" & pids+=($!)
target/release/authgate --config "$W/s5.toml" serve 2>"$W/logs/s5-cached.log" & pids+=($!)
target/release/authgate --config "$W/s5t.toml" serve 2>"$W/logs/s5t-cached.log" & pids+=($!)
target/release/examples/bench_floor 127.0.0.1:$P_FLOOR 127.0.0.1:$P_UP & pids+=($!)
target/release/examples/bench_hyper_proxy 127.0.0.1:$P_HYPER 127.0.0.1:$P_UP & pids+=($!)
# The front doors, from the configs the docs give (tests/fronts/): each
# one process (nginx: master_process off; Caddy: GOMAXPROCS=1).
mkdir -p "$W/ngxa" "$W/caddy"
front_conf() { # template dir port
  sed -e "s#@DIR@#$2#g" -e "s#@PORT@#$3#g" -e "s#@DECISION@#127.0.0.1:$P_DEC#g" \
    -e "s#@CMS@#127.0.0.1:$P_UP#g" -e "s#error_log .*#error_log $2/error.log crit;#" "tests/fronts/$1"
}
front_conf nginx.conf "$W/ngxa" "$P_NGXA" > "$W/ngxa/nginx.conf"
front_conf Caddyfile "$W/caddy" "$P_CADDY" > "$W/caddy/Caddyfile"
nginx -p "$W/ngxa" -e "$W/ngxa/error.log" -c "$W/ngxa/nginx.conf" & pids+=($!)
XDG_CONFIG_HOME="$W/caddy" XDG_DATA_HOME="$W/caddy" GOMAXPROCS=1 \
  caddy run --adapter caddyfile --config "$W/caddy/Caddyfile" 2>"$W/logs/caddy.log" & pids+=($!)
target/release/authgate --config "$W/tr1.toml" serve 2>"$W/logs/tr1-cached.log" & tr1_pid=$!
target/release/authgate --config "$W/tr100.toml" serve 2>"$W/logs/tr100-cached.log" & tr100_pid=$!
pids+=("$many_pid" "$tr1_pid" "$tr100_pid") # after the rows below that name the others by position
for p in $P_NGINX $P_N401 $P_MANY $P_GATE $P_UNCACHED $P_S5 $P_S5T $P_FLOOR $P_HYPER $P_DEC $P_NGXA $P_CADDY $P_TR1 $P_TR100; do
  up=
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && up=1 && break; sleep 0.1; done
  if [ -z "$up" ]; then
    echo "nothing listens on 127.0.0.1:$p after 10 s; authgate's logs:" >&2
    cat "$W"/logs/*cached.log >&2
    exit 1
  fi
done

ONE=$(head -n 1 "$W/keys.txt")
cat > "$W/one.lua" <<EOF
wrk.headers["Authorization"] = "Bearer $ONE"
EOF
cat > "$W/many.lua" <<EOF
local keys, i = {}, 0
for line in io.lines("$W/keys.txt") do keys[#keys + 1] = "Bearer " .. line end
request = function()
  i = i % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
end
EOF
sed "s#keys.txt#bad.txt#" "$W/many.lua" > "$W/bad.lua"
sed "s#keys.txt#keys-many.txt#" "$W/many.lua" > "$W/many100k.lua"
sed "s#keys.txt#bad-many.txt#" "$W/many.lua" > "$W/bad100k.lua"
# Every one of the many tokens once, then wrk ends (thread:stop() would
# still wait out -d).
cat > "$W/warm-many.lua" <<EOF
local keys, i, n = {}, 0, 0
for line in io.lines("$W/keys-many.txt") do keys[#keys + 1] = "Bearer " .. line end
request = function()
  i = i % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
end
response = function()
  n = n + 1
  if n >= #keys then os.exit(0) end
end
EOF
# The decision endpoint alone, asked as Traefik asks.
cat > "$W/forward-auth.lua" <<EOF
wrk.headers["Authorization"] = "Bearer $ONE"
wrk.headers["X-Forwarded-Method"] = "GET"
wrk.headers["X-Forwarded-Uri"] = "/api/articles"
wrk.headers["X-Forwarded-Host"] = "cms.example"
wrk.headers["X-Forwarded-Proto"] = "http"
wrk.headers["X-Forwarded-For"] = "127.0.0.1"
EOF
# The gRPC Check, asked as Envoy asks: one framed CheckRequest (Envoy's own
# protos, tests/grpc/check.py), checked once to be an allow.
GRPC_PY=$(bash tests/grpc/venv.sh)
"$GRPC_PY" tests/grpc/check.py frame --authorization "Bearer $ONE" --path /api/articles \
  --host cms.example > "$W/check.bin"
printf '[{"target": "127.0.0.1:%s", "path": "/api/articles", "source": "127.0.0.1",
  "headers": {"authorization": "Bearer %s"}}]' "$P_DEC" "$ONE" \
  | "$GRPC_PY" tests/grpc/check.py call | grep -q '"grpc": 0, "status_code": 0' \
  || { echo "the gRPC Check is not an allow" >&2; exit 1; }
# Warm every token into the cache once, and the uncached instance's pool.
wrk -t1 -c8 -d2s -s "$W/many.lua" http://127.0.0.1:$P_GATE/api/articles >/dev/null
wrk -t1 -c8 -d600s -s "$W/warm-many.lua" http://127.0.0.1:$P_MANY/api/articles >/dev/null || true
wrk -t1 -c8 -d1s -s "$W/one.lua" http://127.0.0.1:$P_UNCACHED/api/articles >/dev/null
wrk -t1 -c8 -d1s -s "$W/one.lua" http://127.0.0.1:$P_S5/api/articles >/dev/null
wrk -t1 -c8 -d1s -s "$W/one.lua" http://127.0.0.1:$P_S5T/api/articles >/dev/null
wrk -t1 -c8 -d1s -s "$W/one.lua" http://127.0.0.1:$P_TR1/api/articles >/dev/null
wrk -t1 -c8 -d1s -s "$W/one.lua" http://127.0.0.1:$P_TR100/api/articles >/dev/null

if [ -n "${HOLD:-}" ]; then
  echo "HOLD: everything is up (authgate pids ${pids[*]}; key in $W/keys.txt, scripts $W/*.lua). Ctrl-C ends." >&2
  sleep infinity
fi

# The process serving each target, whose CPU time per request is reported
# (user and kernel, from /proc/PID/stat): the workers of the two nginx
# instances and the two authgate processes.
up_worker=$(pgrep -P "$(cat "$W/upstream.pid")")
proxy_worker=$(pgrep -P "$(cat "$W/proxy.pid")")
refuse_worker=$(pgrep -P "$(cat "$W/refuse.pid")")
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

# name|url|script|pid
targets=(
  "direct|http://127.0.0.1:$P_UP/api/articles||$up_worker"
  "nginx|http://127.0.0.1:$P_NGINX/api/articles||$proxy_worker"
  "floor|http://127.0.0.1:$P_FLOOR/api/articles||${pids[4]}"
  "hyper-proxy|http://127.0.0.1:$P_HYPER/api/articles||${pids[5]}"
  "authgate-hit|http://127.0.0.1:$P_GATE/api/articles|$W/one.lua|${pids[0]}"
  "authgate-10k|http://127.0.0.1:$P_GATE/api/articles|$W/many.lua|${pids[0]}"
  "authgate-100k|http://127.0.0.1:$P_MANY/api/articles|$W/many100k.lua|$many_pid"
  # The same requests (100,000 made-up keys) to nginx's static 401 and
  # to authgate, which refuses each key as never issued.
  "nginx-401|http://127.0.0.1:$P_N401/api/articles|$W/bad100k.lua|$refuse_worker"
  "authgate-401|http://127.0.0.1:$P_GATE/api/articles|$W/bad100k.lua|${pids[0]}"
  # Distinct tokens: with one token, single flight would let concurrent
  # requests share one query and this would not measure a query per request.
  "authgate-miss|http://127.0.0.1:$P_UNCACHED/api/articles|$W/many.lua|${pids[1]}"
  "authgate-reject|http://127.0.0.1:$P_GATE/api/articles|$W/bad.lua|${pids[0]}"
  "strapi5-hit|http://127.0.0.1:$P_S5/api/articles|$W/one.lua|${pids[2]}"
  "strapi5-reject|http://127.0.0.1:$P_S5/api/articles|$W/bad.lua|${pids[2]}"
  "strapi5-triggers-hit|http://127.0.0.1:$P_S5T/api/articles|$W/one.lua|${pids[3]}"
  "strapi5-triggers-reject|http://127.0.0.1:$P_S5T/api/articles|$W/bad.lua|${pids[3]}"
  "nginx-auth-request|http://127.0.0.1:$P_NGXA/api/articles|$W/one.lua|${pids[0]}"
  "caddy-forward-auth|http://127.0.0.1:$P_CADDY/api/articles|$W/one.lua|${pids[0]}"
  "decision-forward-auth|http://127.0.0.1:$P_DEC/forward-auth|$W/forward-auth.lua|${pids[0]}"
  "decision-grpc|http://127.0.0.1:$P_DEC/envoy.service.auth.v3.Authorization/Check|h2load:$W/check.bin|${pids[0]}"
  "authgate-trace-1pct|http://127.0.0.1:$P_TR1/api/articles|$W/one.lua|$tr1_pid"
  "authgate-trace-100pct|http://127.0.0.1:$P_TR100/api/articles|$W/one.lua|$tr100_pid"
)
if [ -n "${ONLY:-}" ]; then
  kept=()
  for t in "${targets[@]}"; do [[ "${t%%|*}" =~ $ONLY ]] && kept+=("$t"); done
  targets=("${kept[@]}")
fi
results="$W/results.txt"
: > "$results"
to_us() { # wrk latency like 85.00us / 1.23ms / 2.00s -> microseconds
  python3 -c "import sys; v=sys.argv[1]; u={'us':1,'ms':1000,'s':1000000}; import re; m=re.match(r'([0-9.]+)(us|ms|s)$', v); print(round(float(m.group(1))*u[m.group(2)]))" "$1"
}
for round in $(seq 1 "$ROUNDS"); do
  n=${#targets[@]}
  for k in $(seq 0 $((n - 1))); do
    t=${targets[$(( (k + round - 1) % n ))]}
    IFS='|' read -r name url script pid <<<"$t"
    read -r u0 s0 < <(cpu_ticks "$pid")
    if [[ "$script" == h2load:* ]]; then
      out=$(h2load -t1 -c"$CONNECTIONS" -m8 -D"$DURATION" -d "${script#h2load:}" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$url")
      read -r u1 s1 < <(cpu_ticks "$pid")
      total=$(awk '/^requests:/ {print $8}' <<<"$out")
      rps=$(awk '/^finished in/ {print $4}' <<<"$out")
      p50=$(to_us "$(awk '/^time for request:/ {print $6}' <<<"$out")")
      p99=$(to_us "$(awk '/^time for request:/ {print $5}' <<<"$out")")
      non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' <<<"$out")
    else
      args=(-t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency)
      [ -n "$script" ] && args+=(-s "$script")
      out=$(wrk "${args[@]}" "$url")
      read -r u1 s1 < <(cpu_ticks "$pid")
      total=$(awk '/requests in/ {print $1}' <<<"$out")
      rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
      p50=$(to_us "$(awk '$1=="50%" {print $2}' <<<"$out")")
      p99=$(to_us "$(awk '$1=="99%" {print $2}' <<<"$out")")
      non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
    fi
    # microseconds of CPU per request, user and kernel
    user_us=$(python3 -c "print(($u1 - $u0) * 1e6 / $tick / $total)")
    sys_us=$(python3 -c "print(($s1 - $s0) * 1e6 / $tick / $total)")
    echo "$name $round $rps $p50 $p99 ${non2xx:-0} $user_us $sys_us" >> "$results"
    echo "  round $round: $name ${rps} req/s p50 ${p50}us p99 ${p99}us" >&2
  done
done

if [ -n "${ONLY:-}" ]; then
  echo "name round req/s p50_us p99_us non2xx cpu_user_us cpu_kernel_us"
  cat "$results"
  exit 0
fi

# Open-loop latency at half of a target's saturation (median req/s above).
half_of() {
  python3 - "$results" "$1" <<'PY'
import statistics, sys
v = [float(l.split()[2]) for l in open(sys.argv[1]) if l.split()[0] == sys.argv[2]]
print(int(statistics.median(v) / 2))
PY
}
half=$(half_of authgate-hit)
miss_half=$(half_of authgate-miss)
lat_secs=$(( DURATION > 5 ? DURATION : 2 ))
# 16 connections: at tens of thousands of requests a second, 4 connections
# that carry one request at a time cannot keep up with a proxy's round trip
# (~170 us here), and the row would measure a queue, not the proxy.
export LATENCY_CONNECTIONS=16
direct_lat=$(target/release/examples/latency 127.0.0.1:$P_UP /api/articles "$half" "$lat_secs")
nginx_lat=$(target/release/examples/latency 127.0.0.1:$P_NGINX /api/articles "$half" "$lat_secs")
gate_lat=$(target/release/examples/latency 127.0.0.1:$P_GATE /api/articles "$half" "$lat_secs" "$ONE")
unset LATENCY_CONNECTIONS
miss_lat=$(target/release/examples/latency 127.0.0.1:$P_UNCACHED /api/articles "$miss_half" "$lat_secs" "@$W/keys.txt")
# Open loop at a fixed, modest rate (OPEN_RATE), each target once a round in
# rotating order: what a proxy adds to a request when it is not busy.
open_results="$W/open.txt"
: > "$open_results"
open_targets=("direct|$P_UP|" "nginx|$P_NGINX|" "floor|$P_FLOOR|" "authgate-hit|$P_GATE|$ONE")
for round in $(seq 1 "$ROUNDS"); do
  n=${#open_targets[@]}
  for k in $(seq 0 $((n - 1))); do
    IFS='|' read -r name port key <<<"${open_targets[$(( (k + round - 1) % n ))]}"
    echo "$name $(target/release/examples/latency 127.0.0.1:$port /api/articles "$OPEN_RATE" "$lat_secs" $key)" >> "$open_results"
  done
done

python3 - "$results" "$half" "$direct_lat" "$nginx_lat" "$gate_lat" "$miss_half" "$miss_lat" "$CONNECTIONS" "$DURATION" "$ROUNDS" "$open_results" "$OPEN_RATE" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
half, direct_lat, nginx_lat, gate_lat, miss_half, miss_lat = sys.argv[2:8]
conns, dur, rounds = sys.argv[8:11]
open_rows, open_rate = sys.argv[11], sys.argv[12]
names = ["direct", "nginx", "floor", "hyper-proxy", "authgate-hit", "authgate-10k", "authgate-100k", "authgate-miss",
         "nginx-401", "authgate-401", "authgate-reject",
         "strapi5-hit", "strapi5-reject", "strapi5-triggers-hit", "strapi5-triggers-reject",
         "nginx-auth-request", "caddy-forward-auth", "decision-forward-auth", "decision-grpc",
         "authgate-trace-1pct", "authgate-trace-100pct"]
med = {}
for n in names:
    r = [x for x in rows if x[0] == n]
    med[n] = tuple(statistics.median(float(x[i]) for x in r) for i in (2, 3, 4, 5, 6, 7))
print(f"\nwrk -t1 -c{conns} -d{dur}s, {rounds} round(s), medians; one worker each (nginx worker_processes 1, authgate worker_threads = 1)\n")
print(f"| target | req/s | p50 (us) | p99 (us) | vs nginx | vs direct | non-2xx | CPU user (us/req) | CPU kernel (us/req) |")
print(f"|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for n in names:
    rps, p50, p99, bad, user, kern = med[n]
    print(f"| {n} | {rps:,.0f} | {p50:.0f} | {p99:.0f} | {rps / med['nginx'][0]:.2f}x | {rps / med['direct'][0]:.2f}x | {bad:.0f} | {user:.1f} | {kern:.1f} |")
kv = lambda s: dict(p.split("=") for p in s.split())
d = kv(direct_lat)
print(f"\nopen-loop at {half} req/s (half of authgate-hit saturation), 16 connections:")
print(f"| target | p50 (us) | p99 (us) | max (us) | p99 added over direct (us) |")
print(f"|---|---:|---:|---:|---:|")
for name, s in (("direct", direct_lat), ("nginx", nginx_lat), ("authgate-hit", gate_lat)):
    v = kv(s)
    print(f"| {name} | {v['p50_us']} | {v['p99_us']} | {v['max_us']} | {int(v['p99_us']) - int(d['p99_us'])} |")
opened = {}
for line in open(open_rows):
    name, rest = line.split(" ", 1)
    opened.setdefault(name, []).append(kv(rest))
om = {n: {k: statistics.median(int(v[k]) for v in vs) for k in ("p50_us", "p99_us")} for n, vs in opened.items()}
print(f"\nopen-loop at {open_rate} req/s, 4 connections, median of {rounds} run(s) each:")
print(f"| target | p50 (us) | p99 (us) | p50 added over direct (us) | p99 added over direct (us) |")
print(f"|---|---:|---:|---:|---:|")
for name in ("direct", "nginx", "floor", "authgate-hit"):
    v = om[name]
    print(f"| {name} | {v['p50_us']:.0f} | {v['p99_us']:.0f} | {v['p50_us'] - om['direct']['p50_us']:.0f} | {v['p99_us'] - om['direct']['p99_us']:.0f} |")
m = kv(miss_lat)
print(f"\ncache-miss open-loop at {miss_half} req/s (half of authgate-miss saturation, a distinct token per request): "
      f"p50 {m['p50_us']} us, p99 {m['p99_us']} us, max {m['max_us']} us")
print(f"invalid-token rejections: {med['authgate-reject'][0]:,.0f}/s = {med['authgate-reject'][0] / 425:.0f}x Strapi 5.54's ~425/s")
for n in ("authgate-trace-1pct", "authgate-trace-100pct"):
    cpu, hit_cpu = med[n][4] + med[n][5], med["authgate-hit"][4] + med["authgate-hit"][5]
    print(f"{n}: {med[n][0] / med['authgate-hit'][0]:.2f}x authgate-hit's req/s, CPU {cpu - hit_cpu:+.1f} us/req")
for n in ("strapi5-reject", "strapi5-triggers-reject"):
    print(f"{n}: {med[n][0]:,.0f} made-up keys refused/s = {med[n][0] / 1175:.0f}x Strapi's ~1,100-1,250/s (issue 13; no Strapi here)")
PY
