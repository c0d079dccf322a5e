#!/usr/bin/env bash
# A Python venv for the tests' own Python peers, named NAME and holding
# exactly the pinned PyPI packages given:
#
#   tests/support/pyvenv.sh NAME PIN...
#
# Made once under ${XDG_CACHE_HOME:-~/.cache}/authgate-NAME and reused while
# the pins stay the same; prints the venv's python on stdout (everything else
# goes to stderr). Several tests may ask at once: a lock orders them.
set -euo pipefail
NAME=$1
shift
PINS=("$@")
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/authgate-$NAME
VENV=$CACHE/venv
want="${PINS[*]}"
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.requirements" 2>/dev/null)" = "$want" ]; then
    echo "$VENV/bin/python"
    exit 0
fi
echo "$NAME venv: installing ${PINS[*]} into $VENV" >&2
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
        echo "$NAME venv: python3 -m venv failed (install python3-venv)" >&2
        exit 1
    fi
fi
"$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
echo "$want" >"$VENV/.requirements"
echo "$VENV/bin/python"
