"""The Helm chart's own checks, for scripts/check_deploy.py.

What the generic manifest checks in check_deploy.py cannot see: that the
chart's copy of the alert rules is the rule file, that its PrometheusRule
carries exactly those rules, that its appVersion is the crate's version, and
that its sidecar render gives authgate the same pod as the kustomize build
(probes, ports, security contexts, environment by name and source, and the
same config.toml where the values ask for the same site).
"""

import json
import re
import tomllib
from pathlib import Path

import yaml

# (Helm case, kustomize build, what is compared). The cases are
# deploy/helm/authgate/ci/<case>-values.yaml, rendered as helm-<case>.
COMPARE = [
    ("helm-sidecar", "example", "pod"),
    ("helm-existing-secrets", "example", "pod"),
    ("helm-sidecar", "base", "config"),
    ("helm-existing-secrets", "example", "config"),
]


def deep_merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def case_values(chart, case_file):
    """The values a case renders with: the chart's defaults, then the case's."""
    defaults = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    return deep_merge(defaults, yaml.safe_load(Path(case_file).read_text()) or {})


def check_chart_files(repo, chart, problem):
    rules = repo / "deploy" / "prometheus" / "alerts.yaml"
    copy = chart / "files" / "alerts.yaml"
    if not copy.exists() or copy.read_bytes() != rules.read_bytes():
        problem(str(copy.relative_to(repo)),
                "differs from deploy/prometheus/alerts.yaml (the one source of the rules): "
                f"cp {rules.relative_to(repo)} {copy.relative_to(repo)}")
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    crate = tomllib.loads((repo / "Cargo.toml").read_text())["package"]["version"]
    if str(chart_yaml.get("appVersion")) != crate:
        problem("Chart.yaml", f"appVersion {chart_yaml.get('appVersion')!r} is not Cargo.toml's version {crate!r}")
    if not list((chart / "ci").glob("*-values.yaml")):
        problem(str(chart.relative_to(repo)), "no ci/*-values.yaml cases")


def check_prometheus_rule(render, repo, problem):
    """The PrometheusRule's groups are deploy/prometheus/alerts.yaml's."""
    want = yaml.safe_load((repo / "deploy" / "prometheus" / "alerts.yaml").read_text())["groups"]
    for rule in render.by_kind.get("PrometheusRule", []):
        got = rule.get("spec", {}).get("groups")
        if got != want:
            def flat(groups):
                return {(g.get("name"), r.get("alert") or r.get("record")): r
                        for g in groups or [] for r in g.get("rules", [])}
            fg, fw = flat(got), flat(want)
            differ = sorted(f"{g}/{n}" for g, n in set(fg) | set(fw) if fg.get((g, n)) != fw.get((g, n)))
            problem(f"{render.where} PrometheusRule {rule['metadata']['name']}",
                    "its groups differ from deploy/prometheus/alerts.yaml's"
                    + (f" in {', '.join(differ)}" if differ else " (group names or order)"))


def env_view(render, container):
    """The environment by name and source: a literal, or which key of which
    kind of reference (the Secret's name differs between the two: kustomize
    adds a content hash, Helm names it after the release), plus which
    variables share one Secret."""
    view, groups = {}, {}
    for e in container.get("env", []):
        if "value" in e:
            view[e["name"]] = ("value", e["value"])
            continue
        vf = e.get("valueFrom", {})
        (kind, ref), = vf.items()
        if kind in ("secretKeyRef", "configMapKeyRef"):
            view[e["name"]] = (kind, ref.get("key"), bool(ref.get("optional")))
            groups.setdefault((kind, ref.get("name")), []).append(e["name"])
        else:
            view[e["name"]] = (kind, json.dumps(ref, sort_keys=True))
    return view, sorted(sorted(g) for g in groups.values())


def pod_view(render):
    """What must agree between the two renders' pods."""
    spec = render.pod_spec or {}
    ag = render.authgate or {}
    env, shared = env_view(render, ag)
    view = {
        "pod securityContext": spec.get("securityContext"),
        "pod terminationGracePeriodSeconds": spec.get("terminationGracePeriodSeconds"),
        "pod enableServiceLinks": spec.get("enableServiceLinks"),
        "pod automountServiceAccountToken": spec.get("automountServiceAccountToken"),
        "authgate args": ag.get("args"),
        "authgate restartPolicy": ag.get("restartPolicy"),
        "authgate ports": sorted((p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
                                 for p in ag.get("ports", [])),
        "authgate env": env,
        "authgate env sharing a Secret": shared,
        "authgate securityContext": ag.get("securityContext"),
        "authgate resources": ag.get("resources"),
        "authgate config mount": [m for m in ag.get("volumeMounts", []) if m["mountPath"] == "/etc/authgate"],
    }
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        view[f"authgate {probe}"] = ag.get(probe)
    for c in spec.get("containers", []):
        if c["name"] == "authgate":
            continue
        cenv, cshared = env_view(render, c)
        view["CMS env"] = cenv
        view["CMS env sharing a Secret"] = cshared
        for k in ("envFrom", "readinessProbe", "livenessProbe", "lifecycle", "resources",
                  "securityContext", "ports"):
            view[f"CMS {k}"] = c.get(k)
    return view


def compare_with_kustomize(renders, problem):
    for helm_name, kust_name, what in COMPARE:
        h, k = renders.get(helm_name), renders.get(f"kustomize:{kust_name}")
        where = f"{helm_name} vs kustomize {kust_name}"
        if not h or not k:
            problem(where, "a render to compare is missing")
            continue
        if what == "config":
            if h.config != k.config:
                problem(where, "config.toml differs: " + dict_diff(h.config, k.config))
            else:
                print(f"  {where}: the same config.toml (parsed)")
            continue
        hv, kv = pod_view(h), pod_view(k)
        diffs = [key for key in sorted(set(hv) | set(kv)) if hv.get(key) != kv.get(key)]
        for key in diffs:
            problem(where, f"{key} differs:\n      helm:      {hv.get(key)}\n      kustomize: {kv.get(key)}")
        if not diffs:
            print(f"  {where}: the same probes, ports, security contexts, env (names and sources), "
                  "args, resources and CMS container")


def dict_diff(a, b, path=""):
    out = []
    for key in sorted(set(a) | set(b)):
        p = f"{path}.{key}" if path else key
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            d = dict_diff(a[key], b[key], p)
            if d:
                out.append(d)
        elif a.get(key) != b.get(key):
            out.append(f"{p}: helm {a.get(key)!r}, kustomize {b.get(key)!r}")
    return "; ".join(out)


def case_name(path):
    return "helm-" + re.sub(r"-values\.yaml$", "", Path(path).name)
