# Shared helpers for the scripts: make sure PostgreSQL and Redis answer.
# Source it; do not run it. Uses the machine's services when they are up
# (127.0.0.1:5432 with trust auth, 127.0.0.1:6379), starts them when they are
# installed but stopped, and installs them with apt on a fresh machine.

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install $*: no apt-get here; install it yourself" >&2
    return 1
  fi
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || { sudo_if_needed apt-get update -qq >/dev/null && sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
}

pg_up() { # host port
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$1" -p "$2"
  else
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
  fi
}

pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# ensure_postgres PORT [DATADIR]: a server on 127.0.0.1:PORT accepting
# `postgres` without a password.
ensure_postgres() {
  local port="$1" datadir="${2:-/tmp/authgate-pg-$1}"
  pg_up 127.0.0.1 "$port" && return 0
  # The machine's own cluster, stopped?
  if [ "$port" = 5432 ] && command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    for v in $(ls /etc/postgresql); do
      pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true
    done
    for _ in $(seq 1 50); do pg_up 127.0.0.1 "$port" && return 0; sleep 0.2; done
  fi
  [ -n "$(pg_bindir)" ] || apt_install postgresql || return 1
  local bin; bin="$(pg_bindir)"
  # A throw-away cluster with trust auth, owned by the postgres OS user.
  local run=()
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
    run=(runuser -u postgres --)
  fi
  if [ ! -f "$datadir/PG_VERSION" ]; then
    mkdir -p "$datadir"; [ "$(id -u)" -eq 0 ] && chown postgres "$datadir"
    "${run[@]}" "$bin/initdb" -D "$datadir" -A trust -U postgres >/dev/null
  fi
  "${run[@]}" "$bin/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w \
    -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  pg_up 127.0.0.1 "$port"
}

# Stop with one line if a port in BASE..BASE+COUNT-1 on 127.0.0.1 is taken
# (the benchmarks move theirs with BENCH_PORT_BASE).
ensure_ports_free() { # who base count
  local p
  for ((p = $2; p < $2 + $3; p++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$1: port $p is busy; set BENCH_PORT_BASE (ports BASE..BASE+$(($3 - 1)), now $2)" >&2
      exit 1
    fi
  done
}

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

ensure_redis() {
  redis_up && return 0
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server || return 1
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do redis_up && return 0; sleep 0.1; done
  return 1
}

ensure_command() { # command package
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# ensure_node: Node.js 18 or newer, and npm.
ensure_node() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 || [ "$(node_major)" -lt 18 ]; then
    apt_install nodejs npm || return 1
  fi
  [ "$(node_major)" -ge 18 ] && return 0
  echo "Node.js 18 or newer is needed (found $(node --version 2>/dev/null || echo none))" >&2
  return 1
}
