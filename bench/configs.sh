# The configurations the benchmarks share. Source it; do not run it.
#
#   nginx_upstream_conf DIR PORT           > DIR/upstream.conf
#   nginx_proxy_conf DIR PORT UPSTREAM [--foreground] > DIR/proxy.conf
#   bench_tokens DIR N NAME_PREFIX   N read-only tokens in $SCHEMA.tokens,
#       their keys one a line in DIR/keys.txt (reads DB_URL, SCHEMA, SALT)
#   authgate_conf PORT CACHE_CAPACITY [STRAPI_DATABASE] > config.toml
#       (reads P_UP, DB_URL, SCHEMA and SALT from the caller; with
#       STRAPI_DATABASE, the strapi5 layout on that database of DB_URL's
#       server, its content types read from Strapi)
#
# The upstream: one worker answering a 46-byte JSON body from memory. The
# proxy (the peer authgate is compared with): one worker, `proxy_pass` with
# a keep-alive pool of 64, HTTP/1.1 and `Connection ""`; `--foreground`
# keeps it one process (no master), for valgrind.

nginx_upstream_conf() { # dir port
  cat <<CONF
worker_processes 1;
error_log $1/logs/upstream-error.log crit;
pid $1/upstream.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$2;
    location / { default_type application/json; return 200 '{"data":[{"id":1,"title":"hello"}],"meta":{}}'; }
  }
}
CONF
}

nginx_proxy_conf() { # dir port upstream-port [--foreground]
  if [ "${4:-}" = "--foreground" ]; then printf 'daemon off;\nmaster_process off;\n'; fi
  cat <<CONF
worker_processes 1;
error_log $1/logs/proxy-error.log crit;
pid $1/proxy.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream cms { server 127.0.0.1:$3; keepalive 64; }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://cms;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
CONF
}

authgate_conf() { # port capacity [strapi database]
  local postgres types
  if [ -n "${3:-}" ]; then
    postgres="url = \"${DB_URL%/*}/$3\"
layout = \"strapi5\""
    types=""
  else
    postgres="url = \"$DB_URL\"
schema = \"$SCHEMA\""
    types='[[content_types]]
uid = "api::article.article"
plural = "articles"'
  fi
  cat <<EOF
[server]
listen = "127.0.0.1:$1"
worker_threads = 1
[upstream]
url = "http://127.0.0.1:$P_UP"
pool_max_idle = 256
[postgres]
$postgres
pool_size = 4
[tokens]
salt = "$SALT"
[cache]
capacity = $2
[metrics]
listen = ""
[management]
listen = ""
[log]
level = "warn"
$types
EOF
}

bench_tokens() { # dir n name-prefix
  python3 - "$1" "$SALT" "$2" "$3" <<'PY'
import hmac, hashlib, os, sys
w, salt, n, prefix = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), sys.argv[4]
with open(f"{w}/keys.txt", "w") as keys, open(f"{w}/tokens.csv", "w") as rows:
    for i in range(n):
        k = os.urandom(128).hex()
        keys.write(k + "\n")
        rows.write(f"content-api,{prefix}-{i},read-only,{hmac.new(salt, k.encode(), hashlib.sha512).hexdigest()}\n")
PY
  psql -q "$DB_URL" -c "\\copy $SCHEMA.tokens (kind, name, type, access_key) FROM '$1/tokens.csv' CSV"
}
