#!/usr/bin/env bash
# A cache miss through PgBouncer (transaction mode) against a direct
# connection: authgate with `cache.capacity = 0` twice, one with
# `postgres.url` on the machine's Postgres, one on a PgBouncer in front of
# it (`listen_url` direct), each over 10,000 tokens round-robin (the
# `authgate-miss` target of bench/load.sh), alternating for ROUNDS rounds
# of `wrk -t1 -c32`; medians of req/s, latency and CPU per request of
# authgate and of PgBouncer.
#
#   bench/pooler.sh               # 3 rounds x 10 s
#   ROUNDS=5 DURATION=15 bench/pooler.sh
#   BENCH_PORT_BASE=28091 bench/pooler.sh   # ports BASE..BASE+4 (default 18091)
#   BASELINE_BIN=../main/target/release/authgate bench/pooler.sh
#                                 # and another build, direct (miss-direct-baseline)
#
# Needs: nginx, wrk, pgbouncer (Debian packages; installed with apt if
# missing), PostgreSQL (the machine's, or a throw-away cluster), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
. bench/configs.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
TOKENS=${TOKENS:-10000}
if [ "${1:-}" = "--smoke" ]; then ROUNDS=1; DURATION=2; TOKENS=200; fi

ensure_command nginx nginx
ensure_command wrk wrk
ensure_command pgbouncer pgbouncer
ensure_postgres 5432

BASE=${BENCH_PORT_BASE:-18091}
P_UP=$BASE P_DIRECT=$((BASE + 1)) P_POOLED=$((BASE + 2)) P_BOUNCER=$((BASE + 3))
P_BASELINE=$((BASE + 4))
ensure_ports_free bench "$BASE" 5

W=$(mktemp -d /tmp/authgate-pooler.XXXXXX)
SCHEMA=authgate_pooler_$$
DB_URL=${AUTHGATE_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SALT=bench-salt-0123456789abcdef
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  [ -f "$W/bouncer/pgbouncer.pid" ] && kill "$(cat "$W/bouncer/pgbouncer.pid")" 2>/dev/null || true
  nginx -p "$W" -c "$W/upstream.conf" -s stop 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$DB_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

echo "==> building authgate (release)" >&2
cargo build --release --quiet --bin authgate

mkdir -p "$W/logs" "$W/bouncer"
nginx_upstream_conf "$W" "$P_UP" > "$W/upstream.conf"
nginx -p "$W" -c "$W/upstream.conf"

# PgBouncer as Debian ships it, transaction pooling, as many server
# connections as authgate's pool; it refuses to run as root.
db_host_port=$(python3 -c "import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p.hostname or '127.0.0.1', p.port or 5432)" "$DB_URL")
read -r DB_HOST DB_PORT <<<"$db_host_port"
echo '"postgres" ""' > "$W/bouncer/users.txt"
cat > "$W/bouncer/pgbouncer.ini" <<INI
[databases]
* = host=$DB_HOST port=$DB_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $P_BOUNCER
unix_socket_dir =
auth_type = trust
auth_file = $W/bouncer/users.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 1000
logfile = $W/bouncer/pgbouncer.log
pidfile = $W/bouncer/pgbouncer.pid
INI
chmod 755 "$W"
run_as=()
if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$W/bouncer"; run_as=(runuser -u postgres --); fi
"${run_as[@]}" pgbouncer -d "$W/bouncer/pgbouncer.ini"
POOLED_URL="postgres://postgres@127.0.0.1:$P_BOUNCER/${DB_URL##*/}"

authgate_conf "$P_DIRECT" 0 > "$W/direct.toml"
authgate_conf "$P_BASELINE" 0 > "$W/baseline.toml"
authgate_conf "$P_POOLED" 0 |
  sed "s#^url = \"$DB_URL\"#url = \"$POOLED_URL\"\nlisten_url = \"$DB_URL\"\npooler = \"transaction\"#" > "$W/pooled.toml"
grep -q "^listen_url" "$W/pooled.toml"

echo "==> $TOKENS tokens in schema $SCHEMA" >&2
target/release/authgate --config "$W/pooled.toml" migrate >/dev/null
bench_tokens "$W" "$TOKENS" bench

target/release/authgate --config "$W/direct.toml" serve 2>"$W/logs/direct.log" & pids+=($!)
target/release/authgate --config "$W/pooled.toml" serve 2>"$W/logs/pooled.log" & pids+=($!)
ports=($P_DIRECT $P_POOLED)
if [ -n "${BASELINE_BIN:-}" ]; then
  "$BASELINE_BIN" --config "$W/baseline.toml" serve 2>"$W/logs/baseline.log" & pids+=($!)
  ports+=($P_BASELINE)
fi
for p in "${ports[@]}"; do
  up=
  for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && up=1 && break; sleep 0.1; done
  [ -n "$up" ] || { echo "nothing listens on 127.0.0.1:$p; logs:" >&2; cat "$W"/logs/*.log >&2; exit 1; }
done
cat > "$W/many.lua" <<EOF
local keys, i = {}, 0
for line in io.lines("$W/keys.txt") do keys[#keys + 1] = "Bearer " .. line end
request = function()
  i = i % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
end
EOF
for p in "${ports[@]}"; do
  wrk -t1 -c8 -d1s -s "$W/many.lua" "http://127.0.0.1:$p/api/articles" >/dev/null
done

bouncer_pid=$(cat "$W/bouncer/pgbouncer.pid")
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)
targets=(
  "miss-direct|$P_DIRECT|${pids[0]}"
  "miss-pgbouncer|$P_POOLED|${pids[1]}"
)
[ -n "${BASELINE_BIN:-}" ] && targets+=("miss-direct-baseline|$P_BASELINE|${pids[2]}")
n=${#targets[@]}
results="$W/results.txt"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  for k in $(seq 0 $((n - 1))); do
    IFS='|' read -r name port pid <<<"${targets[$(( (k + round - 1) % n ))]}"
    a0=$(cpu_ticks "$pid"); b0=$(cpu_ticks "$bouncer_pid")
    out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$W/many.lua" "http://127.0.0.1:$port/api/articles")
    a1=$(cpu_ticks "$pid"); b1=$(cpu_ticks "$bouncer_pid")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "$name $(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out") $(python3 -c "print(($a1 - $a0) * 1e6 / $tick / $total, ($b1 - $b0) * 1e6 / $tick / $total)") ${non2xx:-0}" >> "$results"
  done
done
python3 - "$results" "$ROUNDS" "$DURATION" "$CONNECTIONS" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, cpu, bcpu, bad = line.split()
    rows.setdefault(name, []).append((float(rps), p50, p99, float(cpu), float(bcpu), int(bad)))
def us(v):
    m = re.match(r"([0-9.]+)(us|ms|s)$", v)
    return float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
print(f"{sys.argv[2]} rounds x {sys.argv[3]} s, wrk -t1 -c{sys.argv[4]}, medians:\n")
print("| target | req/s | p50 (us) | p99 (us) | authgate CPU (us/req) | PgBouncer CPU (us/req) | non-2xx |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name, r in rows.items():
    med = lambda i, f=float: statistics.median(f(x[i]) for x in r)
    print(f"| {name} | {med(0):,.0f} | {statistics.median(us(x[1]) for x in r):,.0f} | "
          f"{statistics.median(us(x[2]) for x in r):,.0f} | {med(3):.1f} | {med(4):.1f} | {sum(x[5] for x in r)} |")
PY
