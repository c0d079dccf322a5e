#!/usr/bin/env bash
# The Python venv the gRPC tests and tools run in (tests/grpc/check.py):
# Envoy's own compiled protos (xds-protos, an encoder and decoder written
# apart from authgate's prost messages) and a real gRPC client (grpcio),
# from PyPI, pinned. Made once under ${XDG_CACHE_HOME:-~/.cache}/authgate-grpc
# and reused while the pins stay the same; prints the venv's python on
# stdout (everything else goes to stderr). Several tests may ask at once: a
# lock orders them. scripts/test.sh and bench/load.sh call it too.
set -euo pipefail
PINS=(xds-protos==1.85.0 grpcio==1.85.1 protobuf==7.36.2)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/authgate-grpc
VENV=$CACHE/venv
want="${PINS[*]}"
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements" 2>/dev/null)" = "$want" ]; then
    echo "$VENV/bin/python"
    exit 0
fi
echo "grpc venv: installing ${PINS[*]} into $VENV" >&2
rm -rf "$VENV"
if ! python3 -m venv "$VENV" >&2; then
    rm -rf "$VENV"
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 || {
            apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        }
        python3 -m venv "$VENV" >&2
    else
        echo "grpc venv: python3 -m venv failed (install python3-venv)" >&2
        exit 1
    fi
fi
"$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
echo "$want" >"$VENV/.requirements"
echo "$VENV/bin/python"
