#!/usr/bin/env bash
# Memory: peak RSS of authgate with N tokens cached (default 1,000,000),
# filled through the real lookup path (every key requested once, each a
# cache miss answered by Postgres), reported in bytes per cached entry.
#
#   bench/memory.sh              # 1,000,000 tokens (takes a few minutes)
#   TOKENS=20000 bench/memory.sh # quicker
#   BENCH_PORT_BASE=28091 bench/memory.sh # ports BASE..BASE+2 (default 18091)
#   BIN=/tmp/old/authgate bench/memory.sh # another build (A/B; no cache-alone part)
#   SIM_ONLY=1 bench/memory.sh            # only the cache alone (no Postgres, ~1 minute)
#
# Then the cache alone (bench/cache_sim.rs), ours and moka's as records
# were kept before issue 25: bytes an entry without the rest of the
# process, and the hit rates of a 100,000-entry cache under a Zipf
# workload and under the same with scans.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
. bench/configs.sh

TOKENS=${TOKENS:-1000000}
ensure_command wrk wrk
ensure_postgres 5432

BASE=${BENCH_PORT_BASE:-18091}
P_UP=$BASE P_GATE=$((BASE + 1)) P_METRICS=$((BASE + 2))
ensure_ports_free bench "$BASE" 3

W=$(mktemp -d /tmp/authgate-mem.XXXXXX)
SCHEMA=authgate_mem_$$
DB_URL=${AUTHGATE_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
SALT=bench-salt-0123456789abcdef
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q "$DB_URL" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

GATE_BIN=${BIN:-target/release/authgate}
cargo build --release --quiet --bin authgate --example echo_upstream --example bench_cache_sim
sim() {
  echo "==> the cache alone" >&2
  for impl in ours moka; do
    target/release/examples/bench_cache_sim memory "$TOKENS" $impl
    target/release/examples/bench_cache_sim hits $impl
  done
}
if [ -n "${SIM_ONLY:-}" ]; then sim; exit 0; fi
cat > "$W/config.toml" <<EOF
[server]
listen = "127.0.0.1:$P_GATE"
worker_threads = 1
[upstream]
url = "http://127.0.0.1:$P_UP"
[postgres]
url = "$DB_URL"
schema = "$SCHEMA"
[tokens]
salt = "$SALT"
[cache]
capacity = $((TOKENS + TOKENS / 10))
ttl = "1h"
[metrics]
listen = "127.0.0.1:$P_METRICS"
[management]
listen = ""
[log]
level = "warn"
[[content_types]]
uid = "api::article.article"
plural = "articles"
EOF
$GATE_BIN --config "$W/config.toml" migrate >/dev/null
echo "==> generating $TOKENS tokens" >&2
bench_tokens "$W" "$TOKENS" mem

target/release/examples/echo_upstream 127.0.0.1:$P_UP 2>/dev/null & pids+=($!)
$GATE_BIN --config "$W/config.toml" serve 2>"$W/authgate.log" & gate=$!; pids+=($gate)
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:$P_METRICS/readyz >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
rss() { awk -v k="$1:" '$1==k {print $2 * 1024}' "/proc/$gate/status"; }
base=$(rss VmRSS)

cat > "$W/fill.lua" <<EOF
local keys, i = {}, 0
for line in io.lines("$W/keys.txt") do keys[#keys + 1] = "Bearer " .. line end
request = function()
  i = i + 1
  if i > #keys then i = 1 end
  return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
end
EOF
echo "==> requesting every key once (each a cache miss)" >&2
start=$(date +%s)
# wrk cycles through the keys; stop it once every key has been looked up.
wrk -t1 -c16 -d3600s -s "$W/fill.lua" http://127.0.0.1:$P_GATE/api/articles > "$W/wrk.txt" & filler=$!
misses() { curl -fs http://127.0.0.1:$P_METRICS/metrics | awk '$1=="authgate_cache_misses_total" {print int($2)}'; }
while [ "$(misses)" -lt "$TOKENS" ]; do sleep 1; done
kill "$filler"; wait "$filler" 2>/dev/null || true
secs=$(( $(date +%s) - start ))
entries=$(curl -fs http://127.0.0.1:$P_METRICS/metrics | awk '$1=="authgate_cache_entries" {print $2}')
peak=$(rss VmHWM)
now=$(rss VmRSS)
python3 - "$TOKENS" "$entries" "$base" "$now" "$peak" "$secs" <<'PY'
import sys
n, entries, base, now, peak, secs = sys.argv[1:]
n, entries, base, now, peak, secs = int(n), float(entries), int(base), int(now), int(peak), int(secs)
mib = lambda b: b / 1048576
print(f"tokens {n:,}; cached entries {entries:,.0f}; filled in {secs} s ({n / max(secs, 1):,.0f} misses/s)")
print(f"RSS before {mib(base):.1f} MiB, after {mib(now):.1f} MiB, peak {mib(peak):.1f} MiB")
print(f"per cached entry: {(now - base) / max(entries, 1):.0f} bytes (peak-based {(peak - base) / max(entries, 1):.0f})")
PY
[ -n "${BIN:-}" ] || sim
