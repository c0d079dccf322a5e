#!/usr/bin/env bash
# CI smoke test of scripts/quickstart.sh: start it, run every curl command
# it prints, compare each status with the one printed after it (`# 200`),
# stop it. Meanwhile another program holds 127.0.0.1:1337 (Strapi's port)
# and the echo upstream's default port, answering 418 to everything: the
# quickstart must pick other ports and no printed command may reach them.
set -euo pipefail
cd "$(dirname "$0")/.."

W=$(mktemp -d /tmp/authgate-qs-smoke.XXXXXX)
export AUTHGATE_POSTGRES_SCHEMA="authgate_qs_smoke_$$"
qs_pid= holder_pid=
cleanup() {
  # Keep the script's own status: the killed children's (143) is not it,
  # and under `set -e` a failing `wait` here would become the exit status.
  local status=$?
  set +e
  [ -n "$qs_pid" ] && kill "$qs_pid" 2>/dev/null && wait "$qs_pid" 2>/dev/null
  [ -n "$holder_pid" ] && kill "$holder_pid" 2>/dev/null && wait "$holder_pid" 2>/dev/null
  psql -q "${AUTHGATE_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}" \
    -c "DROP SCHEMA IF EXISTS $AUTHGATE_POSTGRES_SCHEMA CASCADE" >/dev/null 2>&1 || true
  rm -rf "$W"
  exit "$status"
}
trap cleanup EXIT INT TERM

# Hold 1337 and 18337 (unless something already does: that proves it too).
python3 - "$W/holder.ready" <<'PY' &
import http.server, socket, socketserver, sys, threading
class Teapot(http.server.BaseHTTPRequestHandler):
    def do_any(self):
        self.send_response(418); self.send_header("content-length", "0"); self.end_headers()
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_any
    def log_message(self, *a): pass
servers = []
for port in (1337, 18337):
    try:
        s = socketserver.ThreadingTCPServer(("127.0.0.1", port), Teapot)
    except OSError:
        continue  # already held by another program: just as good
    servers.append(s)
    threading.Thread(target=s.serve_forever, daemon=True).start()
open(sys.argv[1], "w").write("ok")
threading.Event().wait()
PY
holder_pid=$!
for _ in $(seq 1 50); do [ -f "$W/holder.ready" ] && break; sleep 0.1; done
for p in 1337 18337; do
  (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "smoke: nothing holds 127.0.0.1:$p" >&2; exit 1; }
done

scripts/quickstart.sh >"$W/out" 2>"$W/err" &
qs_pid=$!
for _ in $(seq 1 1200); do
  grep -q '^Ctrl-C to stop.' "$W/out" && break
  kill -0 "$qs_pid" 2>/dev/null || { echo "smoke: quickstart exited early:" >&2; cat "$W/out" "$W/err" >&2; exit 1; }
  sleep 0.25
done
grep -q '^Ctrl-C to stop.' "$W/out" || { echo "smoke: quickstart not ready after 5 min" >&2; cat "$W/out" "$W/err" >&2; exit 1; }

n=0 bad=0
while IFS= read -r line; do
  want=${line##*# }
  cmd=${line%%   #*}
  [[ "$want" =~ ^[0-9]{3}$ ]] || { echo "smoke: no status after: $line" >&2; exit 1; }
  case "$cmd" in
    *127.0.0.1:1337*|*127.0.0.1:18337*) echo "smoke: a printed command targets a held port: $cmd" >&2; exit 1 ;;
  esac
  got=$(eval "$cmd -o /dev/null -w '%{http_code}'")
  n=$((n + 1))
  if [ "$got" != "$want" ]; then
    echo "smoke: got $got, printed $want: $cmd" >&2
    bad=$((bad + 1))
  fi
done < <(grep '^curl ' "$W/out")
[ "$n" -ge 5 ] || { echo "smoke: only $n curl commands printed" >&2; cat "$W/out" >&2; exit 1; }
[ "$bad" -eq 0 ] || exit 1
echo "quickstart smoke test: $n printed commands answered as printed (127.0.0.1:1337 held by another program)"
