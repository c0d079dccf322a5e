#!/usr/bin/env python3
"""Checks of the deployment artefacts that no off-the-shelf tool makes.

Called by scripts/check-deploy.sh (which also runs kustomize,
kubernetes-validate, promtool and hadolint). It reads the rendered kustomize
output, the Dockerfile, the Grafana dashboard and the alert rules, checks
what authgate needs of them, and writes helper files for the shell script:

  <out>/<name>.core.yaml    rendered objects minus CRD kinds, for kubernetes-validate
  <out>/<name>.config.toml  the config.toml from the rendered ConfigMap, for check-config
  <out>/dashboard-rules.yaml every dashboard query as a rule, for promtool

Prints every problem found and exits 1 if there was any.
"""

import argparse
import fnmatch
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

# Kinds that kubernetes-validate has no schema for (CRDs). They are left out
# of its input on purpose and checked structurally here instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

PROXY_PORT = 8080
METRICS_PORT = 9090
CMS_PORT = 1337
SECRET_ENV = ("API_TOKEN_SALT", "ENCRYPTION_KEY", "AUTHGATE_POSTGRES_URL")
CONFIG_SECTIONS = (
    "rate_limit", "upstream", "postgres", "identity", "metrics", "server",
    "tokens", "routes", "cache", "redis", "log", "management",
)
DOCKER_CMD = ["serve", "--config", "/etc/authgate/config.toml"]

problems = []


def problem(where, msg):
    problems.append(f"{where}: {msg}")


def duration_seconds(text):
    """authgate's durations: "500ms", "30s", "5m", "1h" (also "1m30s")."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text.replace(" ", ""))
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"unreadable duration {text!r}")
    for n, u in parts:
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[u]
    return total


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


# --------------------------------------------------------------- manifests

def check_rendered(name, path, out):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    where = f"kustomize {name}"
    core, crds = [], []
    for d in docs:
        (crds if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS else core).append(d)
    (out / f"{name}.core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    for d in crds:
        print(f"  {where}: {d['kind']} {d['metadata']['name']}: CRD kind, not known to "
              "kubernetes-validate; skipped there, checked structurally here")

    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def one(kind):
        items = by_kind.get(kind, [])
        if len(items) != 1:
            problem(where, f"expected exactly one {kind}, found {len(items)}")
            return None
        return items[0]

    deploy = one("Deployment")
    job = one("Job")
    cm = one("ConfigMap")
    one("PodDisruptionBudget")
    one("NetworkPolicy")
    one("ServiceMonitor")
    if not (deploy and job and cm):
        return

    # The config file.
    config_text = (cm.get("data") or {}).get("config.toml")
    config = {}
    if config_text is None:
        problem(where, f"ConfigMap {cm['metadata']['name']} has no config.toml")
    else:
        (out / f"{name}.config.toml").write_text(config_text)
        try:
            config = tomllib.loads(config_text)
        except tomllib.TOMLDecodeError as e:
            problem(where, f"config.toml is not valid TOML: {e}")
    want = {
        ("server", "listen"): f"0.0.0.0:{PROXY_PORT}",
        ("metrics", "listen"): f"0.0.0.0:{METRICS_PORT}",
        ("upstream", "url"): f"http://127.0.0.1:{CMS_PORT}",
        ("log", "format"): "json",
    }
    for (sec, key), value in want.items():
        got = config.get(sec, {}).get(key)
        if got != value:
            problem(where, f"config.toml {sec}.{key} = {got!r}, want {value!r}")
    for sec, key in (("tokens", "salt"), ("tokens", "encryption_key"), ("postgres", "url"),
                     ("identity", "signing_key")):
        if key in config.get(sec, {}):
            problem(where, f"config.toml sets the secret {sec}.{key}: it belongs in the Secret")

    # The pod.
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    pod_labels = pod["metadata"].get("labels", {})
    dwhere = f"{where} Deployment {deploy['metadata']['name']}"
    if not matches(deploy["spec"]["selector"].get("matchLabels"), pod_labels):
        problem(dwhere, "selector does not match the pod labels")
    sidecars = [c for c in spec.get("initContainers", []) if c["name"] == "authgate"]
    if len(sidecars) != 1:
        problem(dwhere, "no init container named authgate")
        return
    ag = sidecars[0]
    if ag.get("restartPolicy") != "Always":
        problem(dwhere, "authgate is not a native sidecar (initContainer restartPolicy: Always)")
    if any(c["name"] == "authgate" for c in spec.get("containers", [])):
        problem(dwhere, "authgate is both a sidecar and a regular container")
    cms = [c for c in spec.get("containers", []) if c["name"] != "authgate"]
    if not cms:
        problem(dwhere, "no CMS container")
    if ag.get("args") != DOCKER_CMD:
        problem(dwhere, f"authgate args {ag.get('args')}, want {DOCKER_CMD}")

    ports = {p.get("name"): p["containerPort"] for p in ag.get("ports", [])}
    if sorted(ports.values()) != [PROXY_PORT, METRICS_PORT]:
        problem(dwhere, f"authgate ports {sorted(ports.values())}, want [{PROXY_PORT}, {METRICS_PORT}]")

    def probe_target(probe):
        get = (probe or {}).get("httpGet") or {}
        port = get.get("port")
        return get.get("path"), ports.get(port, port)

    if probe_target(ag.get("readinessProbe")) != ("/readyz", METRICS_PORT):
        problem(dwhere, "authgate readinessProbe must be GET /readyz on the metrics port")
    if probe_target(ag.get("livenessProbe")) != ("/healthz", METRICS_PORT):
        problem(dwhere, "authgate livenessProbe must be GET /healthz on the metrics port")
    if "startupProbe" in ag and probe_target(ag["startupProbe"])[0] != "/healthz":
        problem(dwhere, "authgate startupProbe should be /healthz (a failing startup probe kills the container)")

    res = ag.get("resources", {})
    for part in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(part, {}):
                problem(dwhere, f"authgate resources.{part}.{r} missing")

    def check_security(c, cwhere, readonly=True):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problem(cwhere, "allowPrivilegeEscalation must be false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(cwhere, "capabilities must drop ALL")
        if readonly and sc.get("readOnlyRootFilesystem") is not True:
            problem(cwhere, "readOnlyRootFilesystem must be true")
        nonroot = sc.get("runAsNonRoot", spec.get("securityContext", {}).get("runAsNonRoot"))
        if nonroot is not True or sc.get("runAsUser", 1) == 0:
            problem(cwhere, "must run as non-root")

    pod_sc = spec.get("securityContext", {})
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(dwhere, "pod seccompProfile must be RuntimeDefault")
    check_security(ag, f"{dwhere} container authgate")
    for c in cms:
        check_security(c, f"{dwhere} container {c['name']}", readonly=False)
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if env.get("HOST") != "127.0.0.1":
            problem(dwhere, f"CMS container {c['name']} must listen on 127.0.0.1 (HOST)")
        for p in c.get("ports", []):
            problem(dwhere, f"CMS container {c['name']} declares port {p.get('containerPort')}: "
                    "only authgate's ports belong on the pod")

    def check_env(c, cwhere, needed):
        env = {e["name"]: e for e in c.get("env", [])}
        for n in needed:
            e = env.get(n)
            if not e or "secretKeyRef" not in e.get("valueFrom", {}):
                problem(cwhere, f"{n} must come from a Secret (valueFrom.secretKeyRef)")
        for n in env:
            if n.startswith("AUTHGATE_") and n != "AUTHGATE_CONFIG":
                rest = n[len("AUTHGATE_"):].lower()
                if not any(rest.startswith(s + "_") for s in CONFIG_SECTIONS):
                    problem(cwhere, f"{n} names no config section: authgate would refuse to start")
            if "value" in e and n in SECRET_ENV:
                problem(cwhere, f"{n} is a secret set as a literal value")

    check_env(ag, f"{dwhere} container authgate", SECRET_ENV)

    # Service links would inject AUTHGATE_*_SERVICE_* variables, which the
    # config loader reads as (unknown) config keys and refuses.
    for obj, s in ((deploy, spec), (job, job["spec"]["template"]["spec"])):
        if s.get("enableServiceLinks") is not False:
            problem(f"{where} {obj['kind']} {obj['metadata']['name']}",
                    "enableServiceLinks must be false (AUTHGATE_* service variables break config loading)")

    mounts = {m["mountPath"]: m["name"] for m in ag.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    vol = vols.get(mounts.get("/etc/authgate"), {})
    if vol.get("configMap", {}).get("name") != cm["metadata"]["name"]:
        problem(dwhere, "authgate must mount the config ConfigMap at /etc/authgate")

    # Drain budget: the CMS stops first (its preStop, then its own shutdown),
    # then authgate gets shutdown_delay + shutdown_grace.
    server = config.get("server", {})
    try:
        drain = duration_seconds(server.get("shutdown_delay", "0s")) + \
            duration_seconds(server.get("shutdown_grace", "30s"))
    except ValueError as e:
        problem(where, f"config.toml server: {e}")
        drain = 0
    prestop = 0
    for c in cms:
        cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if len(cmd) == 2 and cmd[0] == "sleep":
            prestop = max(prestop, int(cmd[1]))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + prestop:
        problem(dwhere, f"terminationGracePeriodSeconds {grace} must exceed the CMS preStop "
                f"({prestop}s) + shutdown_delay + shutdown_grace ({drain:g}s)")

    # The migrate Job runs the same image with the same config and secrets.
    jspec = job["spec"]["template"]["spec"]
    jc = jspec["containers"][0]
    jwhere = f"{where} Job {job['metadata']['name']}"
    if (jc.get("args") or [None])[0] != "migrate":
        problem(jwhere, "must run `authgate migrate`")
    if jc.get("image") != ag.get("image"):
        problem(jwhere, f"image {jc.get('image')} differs from the sidecar's {ag.get('image')}")
    check_env(jc, jwhere, ("API_TOKEN_SALT", "AUTHGATE_POSTGRES_URL"))
    check_security(jc, jwhere)
    if jspec.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(jwhere, "pod seccompProfile must be RuntimeDefault")
    jvols = {v["name"]: v for v in jspec.get("volumes", [])}
    jmounts = {m["mountPath"]: m["name"] for m in jc.get("volumeMounts", [])}
    if jvols.get(jmounts.get("/etc/authgate"), {}).get("configMap", {}).get("name") != cm["metadata"]["name"]:
        problem(jwhere, "must mount the config ConfigMap at /etc/authgate")

    # Services: only authgate's ports, the public one only 8080.
    services = [s for s in by_kind.get("Service", []) if matches(s["spec"].get("selector"), pod_labels)]
    if not services:
        problem(where, "no Service selects the CMS pod")

    def resolve(port):
        t = port.get("targetPort", port["port"])
        return ports.get(t, t)

    proxy_services = []
    for s in services:
        targets = sorted(resolve(p) for p in s["spec"]["ports"])
        swhere = f"{where} Service {s['metadata']['name']}"
        if CMS_PORT in targets:
            problem(swhere, "targets the CMS port: traffic must go through authgate")
        if PROXY_PORT in targets:
            proxy_services.append(s)
            if targets != [PROXY_PORT]:
                problem(swhere, f"the proxy Service must target port {PROXY_PORT} only, targets {targets}")
        elif targets != [METRICS_PORT]:
            problem(swhere, f"targets {targets}: only {PROXY_PORT} or {METRICS_PORT} belong on a Service")
    if len(proxy_services) != 1:
        problem(where, f"want one Service for port {PROXY_PORT}, found {len(proxy_services)}")

    # NetworkPolicy: 8080 from anywhere it likes, 9090 only from a namespace
    # selector (monitoring), nothing else.
    for np in by_kind.get("NetworkPolicy", []):
        nwhere = f"{where} NetworkPolicy {np['metadata']['name']}"
        if not matches(np["spec"].get("podSelector", {}).get("matchLabels"), pod_labels):
            problem(nwhere, "does not select the CMS pod")
        if "Ingress" not in np["spec"].get("policyTypes", []):
            problem(nwhere, "policyTypes must include Ingress")
        for rule in np["spec"].get("ingress", []):
            rports = [p.get("port") for p in rule.get("ports", [])]
            if not rports:
                problem(nwhere, "an ingress rule without ports admits every port")
            for p in rports:
                p = ports.get(p, p)
                if p == METRICS_PORT:
                    froms = rule.get("from", [])
                    if not froms or any("namespaceSelector" not in f for f in froms):
                        problem(nwhere, "the metrics port must be admitted from a namespace selector only")
                elif p != PROXY_PORT:
                    problem(nwhere, f"admits port {p}: only {PROXY_PORT} and {METRICS_PORT}")

    for pdb in by_kind.get("PodDisruptionBudget", []):
        if not matches(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels):
            problem(f"{where} PodDisruptionBudget {pdb['metadata']['name']}", "does not select the CMS pod")

    # ServiceMonitor: selects the metrics Service, by a port name it has.
    for sm in by_kind.get("ServiceMonitor", []):
        swhere = f"{where} ServiceMonitor {sm['metadata']['name']}"
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        picked = [s for s in by_kind.get("Service", []) if matches(sel, s["metadata"].get("labels", {}))]
        if not picked or not sel:
            problem(swhere, "selects no Service")
        for ep in sm["spec"].get("endpoints", []):
            for s in picked:
                named = {p.get("name"): resolve(p) for p in s["spec"]["ports"]}
                if named.get(ep.get("port")) != METRICS_PORT:
                    problem(swhere, f"endpoint port {ep.get('port')!r} is not the metrics port of "
                            f"Service {s['metadata']['name']}")
            if ep.get("path", "/metrics") != "/metrics":
                problem(swhere, "endpoint path must be /metrics")


# --------------------------------------------------------------- Dockerfile

def dockerfile_instructions(text):
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        lines.append(cur)
        cur = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def check_dockerfile(repo):
    where = "Dockerfile"
    path = repo / "Dockerfile"
    if not path.exists():
        problem(where, "missing")
        return
    ins = dockerfile_instructions(path.read_text())
    stages = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if len(stages) < 2:
        problem(where, f"want a multi-stage build, found {len(stages)} FROM")
        return
    final = ins[stages[-1]:]
    build = ins[:stages[-1]]
    if not any(w == "RUN" and "cargo build" in a and "--release" in a and "--locked" in a for w, a in build):
        problem(where, "the build stage must run cargo build --release --locked")
    if any(w == "HEALTHCHECK" for w, _ in ins):
        problem(where, "no HEALTHCHECK: Kubernetes probes /healthz and /readyz")
    users = [a for w, a in final if w == "USER"]
    if not users:
        problem(where, "the final stage sets no USER (it would run as root)")
    else:
        user = users[-1].split(":")[0]
        if not user.isdigit() or user == "0":
            problem(where, f"final USER {users[-1]!r} must be a numeric non-root id (runAsNonRoot checks it)")

    def exec_form(kind):
        vals = [a for w, a in final if w == kind]
        if not vals:
            return None
        try:
            return json.loads(vals[-1])
        except json.JSONDecodeError:
            return vals[-1]

    if exec_form("ENTRYPOINT") != ["authgate"]:
        problem(where, f'ENTRYPOINT must be ["authgate"], is {exec_form("ENTRYPOINT")!r}')
    if exec_form("CMD") != DOCKER_CMD:
        problem(where, f"CMD must be {json.dumps(DOCKER_CMD)}, is {exec_form('CMD')!r}")
    exposed = sorted(int(p.split("/")[0]) for w, a in final if w == "EXPOSE" for p in a.split())
    if exposed != [PROXY_PORT, METRICS_PORT]:
        problem(where, f"EXPOSE {exposed}, want {PROXY_PORT} {METRICS_PORT}")

    # Everything the crate compiles in must be in the build context and
    # copied: a file we cannot build here is only caught this way.
    copied = set()
    for w, a in build:
        if w == "COPY" and "--from" not in a:
            copied.update(p.rstrip("/") for p in a.split()[:-1] if not p.startswith("--"))
    ignore = []
    di = repo / ".dockerignore"
    if di.exists():
        ignore = [l.strip().rstrip("/") for l in di.read_text().splitlines()
                  if l.strip() and not l.startswith("#")]
    needed = {"Cargo.toml", "Cargo.lock", "src"}
    if (repo / "build.rs").exists():
        needed.add("build.rs")
    for rs in (repo / "src").rglob("*.rs"):
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', rs.read_text()):
            target = (rs.parent / m.group(1)).resolve()
            try:
                needed.add(target.relative_to(repo.resolve()).parts[0])
            except ValueError:
                problem(where, f"{rs.relative_to(repo)} includes {m.group(1)}, outside the repository")
    for n in sorted(needed):
        if n not in copied:
            problem(where, f"the build needs {n} but the build stage does not COPY it")
        if any(fnmatch.fnmatch(n, pat) for pat in ignore):
            problem(".dockerignore", f"excludes {n}, which the build needs")
    for must in ("target", ".git"):
        if must not in ignore:
            problem(".dockerignore", f"should exclude {must}")


# --------------------------------------------------------------- metrics

def known_metrics(repo):
    text = (repo / "src" / "metrics.rs").read_text()
    names = set(re.findall(r'"(authgate_[a-z0-9_]+)"', text))
    if not names:
        problem("src/metrics.rs", "no metric names found")
    return names


def used_metrics(expr):
    return set(re.findall(r"\b(authgate_[a-z0-9_]+)", expr))


def base_name(m):
    for suffix in ("_bucket", "_sum", "_count"):
        if m.endswith(suffix):
            return m[: -len(suffix)]
    return m


def check_alerts(repo, known):
    path = repo / "deploy" / "prometheus" / "alerts.yaml"
    doc = yaml.safe_load(path.read_text())
    for g in doc.get("groups", []):
        for r in g.get("rules", []):
            name = r.get("alert") or r.get("record")
            for m in used_metrics(r["expr"]):
                if base_name(m) not in known:
                    problem(f"alerts.yaml {name}", f"uses {m}, which src/metrics.rs does not register")
            if "alert" in r:
                if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    problem(f"alerts.yaml {name}", "severity label must be critical, warning or info")
                if not r.get("annotations", {}).get("summary"):
                    problem(f"alerts.yaml {name}", "no summary annotation")


def check_dashboard(repo, known, out):
    path = repo / "deploy" / "grafana" / "authgate.json"
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        problem("authgate.json", f"invalid JSON: {e}")
        return
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem("authgate.json", "needs a Prometheus datasource variable named datasource")
    rules, seen_ids = [], set()

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        if p.get("id") in seen_ids:
            problem("authgate.json", f"duplicate panel id {p.get('id')}")
        seen_ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        title = p.get("title", "?")
        for t in p.get("targets", []):
            if (t.get("datasource") or p.get("datasource") or {}).get("uid") != "${datasource}":
                problem(f"authgate.json {title!r}", "a query does not use the ${datasource} variable")
            expr = t.get("expr", "")
            for m in used_metrics(expr):
                if base_name(m) not in known:
                    problem(f"authgate.json {title!r}", f"uses {m}, which src/metrics.rs does not register")
            # Grafana's variables, replaced so that promtool can parse the query.
            e = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            e = re.sub(r"\$\{?(\w+)\}?", ".*", e)
            rules.append({"record": f"dashboard:panel_{p.get('id')}_{t.get('refId', 'A').lower()}", "expr": e})
    if not rules:
        problem("authgate.json", "no queries")
    (out / "dashboard-rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rendered", action="append", default=[], metavar="NAME=FILE")
    args = ap.parse_args()
    repo, out = Path(args.repo), Path(args.out)
    for item in args.rendered:
        name, _, path = item.partition("=")
        check_rendered(name, path, out)
    check_dockerfile(repo)
    known = known_metrics(repo)
    check_alerts(repo, known)
    check_dashboard(repo, known, out)
    for p in problems:
        print(f"  PROBLEM {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
