#!/usr/bin/env python3
"""Checks of the deployment artefacts that no off-the-shelf tool makes.

Called by scripts/check-deploy.sh (which also runs kustomize, helm,
kubernetes-validate, promtool and hadolint). It reads the rendered kustomize
builds and Helm renders, the Dockerfile, the Grafana dashboard and the alert
rules, checks what authgate needs of them (the same checks for both kinds of
render, in either mode of the chart), compares the chart's sidecar render
with the kustomize build (check_chart.py), runs `authgate check-config` on
every rendered config when given a binary (check_config.py), and writes
helper files for the shell script:

  <out>/<name>.core.yaml    rendered objects minus CRD kinds, for kubernetes-validate
  <out>/<name>.config.toml  the config.toml from the rendered ConfigMap
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

import check_chart
import check_config

# Kinds that kubernetes-validate has no schema for (CRDs). They are left out
# of its input on purpose and checked structurally here instead.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

PROXY_PORT = 8080
METRICS_PORT = 9090
CMS_PORT = 1337
SECRET_ENV = ("API_TOKEN_SALT", "ENCRYPTION_KEY", "AUTHGATE_POSTGRES_URL")
# Secrets the Helm chart can also set (they hold URLs with passwords).
SECRET_ENV_MORE = (
    "AUTHGATE_POSTGRES_LISTEN_URL", "AUTHGATE_REDIS_URL", "AUTHGATE_REDIS_CLUSTER",
    "AUTHGATE_REDIS_SENTINELS", "AUTHGATE_REDIS_SENTINEL_PASSWORD",
)
CONFIG_SECTIONS = check_config.CONFIG_SECTIONS
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

class Render:
    """One rendered installation (a kustomize build or a Helm render) and
    what its checks found, for the checks that compare renders afterwards."""

    def __init__(self, name, source, docs, values):
        self.name, self.source, self.docs = name, source, docs
        self.where = f"{source} {name}"
        self.by_kind = {}
        for d in docs:
            self.by_kind.setdefault(d["kind"], []).append(d)
        v = values or {}
        self.helm = source == "helm"
        self.mode = v.get("mode", "sidecar")
        dec = v.get("decision") or {}
        self.decision_port = int(dec.get("port", 9092)) if dec.get("enabled") else None
        self.upstream = (f"http://127.0.0.1:{CMS_PORT}" if self.mode == "sidecar"
                         else (v.get("upstream") or {}).get("url"))
        self.want_service_monitor = (v.get("serviceMonitor") or {}).get("enabled", not self.helm)
        self.want_hpa = (v.get("autoscaling") or {}).get("enabled", False)
        self.want_rule = (v.get("prometheusRule") or {}).get("enabled", False)
        self.config = {}
        self.config_text = None
        self.authgate = None
        self.pod_spec = None

    def named(self, kind, name):
        return next((d for d in self.by_kind.get(kind, []) if d["metadata"]["name"] == name), None)

    def count(self, kind, want):
        items = self.by_kind.get(kind, [])
        if len(items) != want:
            problem(self.where, f"expected {want} {kind}, found {len(items)}")
            return None
        return items[0] if items else None


def hook_weight(obj):
    """(phases, weight) of a Helm hook, or None for a release object."""
    ann = obj["metadata"].get("annotations") or {}
    if "helm.sh/hook" not in ann:
        return None
    phases = {p.strip() for p in ann["helm.sh/hook"].split(",")}
    return phases, int(ann.get("helm.sh/hook-weight", "0"))


def mounted_configmap(r, spec, container):
    """The ConfigMap the container mounts at /etc/authgate, or None."""
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    name = vols.get(mounts.get("/etc/authgate"), {}).get("configMap", {}).get("name")
    return r.named("ConfigMap", name) if name else None


def check_rendered(name, path, out, source="kustomize", values=None):
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    r = Render(name, source, docs, values)
    where = r.where
    core, crds = [], []
    for d in docs:
        (crds if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS else core).append(d)
    (out / f"{name}.core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))
    for d in crds:
        print(f"  {where}: {d['kind']} {d['metadata']['name']}: CRD kind, not known to "
              "kubernetes-validate; skipped there, checked structurally here")

    deploy = r.count("Deployment", 1)
    job = r.count("Job", 1)
    r.count("PodDisruptionBudget", 1)
    r.count("NetworkPolicy", 1)
    r.count("ServiceMonitor", 1 if r.want_service_monitor else 0)
    r.count("HorizontalPodAutoscaler", 1 if r.want_hpa else 0)
    r.count("PrometheusRule", 1 if r.want_rule else 0)
    if not (deploy and job):
        return r

    spec = deploy["spec"]["template"]["spec"]
    r.pod_spec = spec
    dwhere = f"{where} Deployment {deploy['metadata']['name']}"
    ag = find_authgate(r, spec, dwhere)
    if not ag:
        return r
    r.authgate = ag
    cm = mounted_configmap(r, spec, ag)
    if not cm:
        problem(dwhere, "authgate must mount a rendered ConfigMap at /etc/authgate")
        return r
    check_config_map(r, cm, out)
    ports = check_pod(r, deploy, ag, dwhere)
    check_drain(r, spec, dwhere)
    check_job(r, job, ag, cm)
    check_secret_refs(r, deploy, job)
    check_services(r, deploy, ports)
    check_hpa(r, deploy)
    return r


def find_authgate(r, spec, dwhere):
    """authgate's container: a native sidecar in sidecar mode, the pod's one
    container in standalone mode."""
    inits = [c for c in spec.get("initContainers", []) if c["name"] == "authgate"]
    mains = [c for c in spec.get("containers", []) if c["name"] == "authgate"]
    if r.mode == "sidecar":
        if len(inits) != 1:
            problem(dwhere, "no init container named authgate")
            return None
        if inits[0].get("restartPolicy") != "Always":
            problem(dwhere, "authgate is not a native sidecar (initContainer restartPolicy: Always)")
        if mains:
            problem(dwhere, "authgate is both a sidecar and a regular container")
        if not [c for c in spec.get("containers", []) if c["name"] != "authgate"]:
            problem(dwhere, "no CMS container")
        return inits[0]
    if len(mains) != 1 or inits:
        problem(dwhere, "standalone: want authgate as the one regular container, no init containers")
        return mains[0] if mains else None
    if len(spec["containers"]) != 1:
        problem(dwhere, "standalone: authgate must be the pod's only container")
    if "restartPolicy" in mains[0]:
        problem(dwhere, "standalone: a regular container takes no restartPolicy")
    return mains[0]


def check_config_map(r, cm, out):
    where = r.where
    config_text = (cm.get("data") or {}).get("config.toml")
    if config_text is None:
        problem(where, f"ConfigMap {cm['metadata']['name']} has no config.toml")
        return
    r.config_text = config_text
    (out / f"{r.name}.config.toml").write_text(config_text)
    try:
        r.config = tomllib.loads(config_text)
    except tomllib.TOMLDecodeError as e:
        problem(where, f"config.toml is not valid TOML: {e}")
        return
    want = {
        ("server", "listen"): f"0.0.0.0:{PROXY_PORT}",
        ("metrics", "listen"): f"0.0.0.0:{METRICS_PORT}",
        ("upstream", "url"): r.upstream,
        ("log", "format"): "json",
    }
    if r.decision_port:
        want[("decision", "listen")] = f"0.0.0.0:{r.decision_port}"
    for (sec, key), value in want.items():
        got = r.config.get(sec, {}).get(key)
        if got != value:
            problem(where, f"config.toml {sec}.{key} = {got!r}, want {value!r}")
    if not r.decision_port and "decision" in r.config:
        problem(where, "config.toml has [decision] but the decision listener is off")
    for sec, key in (("tokens", "salt"), ("tokens", "encryption_key"), ("postgres", "url"),
                     ("identity", "signing_key"), ("redis", "sentinel_password")):
        if key in r.config.get(sec, {}):
            problem(where, f"config.toml sets the secret {sec}.{key}: it belongs in the Secret")
    for sec in ("redis",):
        for key in ("url", "cluster", "sentinels"):
            urls = r.config.get(sec, {}).get(key, [])
            for u in [urls] if isinstance(urls, str) else urls:
                if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", u):
                    problem(where, f"config.toml {sec}.{key} holds a password: it belongs in the Secret")


def check_security(c, cwhere, spec, readonly=True):
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


def check_env(c, cwhere, needed):
    env = {e["name"]: e for e in c.get("env", [])}
    for n in needed:
        e = env.get(n)
        if not e or "secretKeyRef" not in e.get("valueFrom", {}):
            problem(cwhere, f"{n} must come from a Secret (valueFrom.secretKeyRef)")
    for n, e in env.items():
        if n.startswith("AUTHGATE_") and n != "AUTHGATE_CONFIG":
            rest = n[len("AUTHGATE_"):].lower()
            if not any(rest.startswith(s + "_") for s in CONFIG_SECTIONS):
                problem(cwhere, f"{n} names no config section: authgate would refuse to start")
        if n in SECRET_ENV + SECRET_ENV_MORE and "secretKeyRef" not in e.get("valueFrom", {}):
            problem(cwhere, f"{n} is a secret: it must come from a Secret (valueFrom.secretKeyRef)")


def check_pod(r, deploy, ag, dwhere):
    """The pod's authgate container (and CMS container, in sidecar mode).
    Returns authgate's ports by name."""
    spec = deploy["spec"]["template"]["spec"]
    pod_labels = deploy["spec"]["template"]["metadata"].get("labels", {})
    if not matches(deploy["spec"]["selector"].get("matchLabels"), pod_labels):
        problem(dwhere, "selector does not match the pod labels")
    if ag.get("args") != DOCKER_CMD:
        problem(dwhere, f"authgate args {ag.get('args')}, want {DOCKER_CMD}")

    ports = {p.get("name"): p["containerPort"] for p in ag.get("ports", [])}
    want_ports = sorted([PROXY_PORT, METRICS_PORT] + ([r.decision_port] if r.decision_port else []))
    if sorted(ports.values()) != want_ports:
        problem(dwhere, f"authgate ports {sorted(ports.values())}, want {want_ports}")

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
        for res_name in ("cpu", "memory"):
            if res_name not in res.get(part, {}):
                problem(dwhere, f"authgate resources.{part}.{res_name} missing")

    if spec.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(dwhere, "pod seccompProfile must be RuntimeDefault")
    check_security(ag, f"{dwhere} container authgate", spec)
    for c in [c for c in spec.get("containers", []) if c["name"] != "authgate"]:
        check_security(c, f"{dwhere} container {c['name']}", spec, readonly=False)
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if env.get("HOST") != "127.0.0.1":
            problem(dwhere, f"CMS container {c['name']} must listen on 127.0.0.1 (HOST)")
        for p in c.get("ports", []):
            problem(dwhere, f"CMS container {c['name']} declares port {p.get('containerPort')}: "
                    "only authgate's ports belong on the pod")
    # ENCRYPTION_KEY is optional: from a Secret when set at all (check_env).
    check_env(ag, f"{dwhere} container authgate", ("API_TOKEN_SALT", "AUTHGATE_POSTGRES_URL"))
    if spec.get("enableServiceLinks") is not False:
        problem(dwhere, "enableServiceLinks must be false (AUTHGATE_* service variables break config loading)")
    return ports


def check_drain(r, spec, dwhere):
    """Drain budget: the CMS stops first (its preStop, then its own
    shutdown), then authgate gets shutdown_delay + shutdown_grace."""
    server = r.config.get("server", {})
    try:
        drain = duration_seconds(server.get("shutdown_delay", "0s")) + \
            duration_seconds(server.get("shutdown_grace", "30s"))
    except ValueError as e:
        problem(r.where, f"config.toml server: {e}")
        drain = 0
    prestop = 0
    for c in spec.get("containers", []):
        if c["name"] == "authgate":
            continue
        cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if len(cmd) == 2 and cmd[0] == "sleep":
            prestop = max(prestop, int(cmd[1]))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + prestop:
        problem(dwhere, f"terminationGracePeriodSeconds {grace} must exceed the CMS preStop "
                f"({prestop}s) + shutdown_delay + shutdown_grace ({drain:g}s)")


def check_job(r, job, ag, cm):
    """The migrate Job runs the same image with the same config and secrets;
    from Helm, as a pre-install/pre-upgrade hook whose ConfigMap and Secret
    exist before it (hooks run before the release's own objects)."""
    jspec = job["spec"]["template"]["spec"]
    jc = jspec["containers"][0]
    jwhere = f"{r.where} Job {job['metadata']['name']}"
    if (jc.get("args") or [None])[0] != "migrate":
        problem(jwhere, "must run `authgate migrate`")
    if jc.get("image") != ag.get("image"):
        problem(jwhere, f"image {jc.get('image')} differs from the sidecar's {ag.get('image')}")
    check_env(jc, jwhere, ("API_TOKEN_SALT", "AUTHGATE_POSTGRES_URL"))
    check_security(jc, jwhere, jspec)
    if jspec.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(jwhere, "pod seccompProfile must be RuntimeDefault")
    if jspec.get("enableServiceLinks") is not False:
        problem(jwhere, "enableServiceLinks must be false (AUTHGATE_* service variables break config loading)")
    jcm = mounted_configmap(r, jspec, jc)
    if not jcm:
        problem(jwhere, "must mount a rendered ConfigMap at /etc/authgate")
        return
    if (jcm.get("data") or {}).get("config.toml") != (cm.get("data") or {}).get("config.toml"):
        problem(jwhere, f"its ConfigMap {jcm['metadata']['name']} has another config.toml than the pods'")
    # Every file the pods' config names is mounted in the Job too.
    amounts = {m["mountPath"] for m in ag.get("volumeMounts", [])}
    jmounts = {m["mountPath"] for m in jc.get("volumeMounts", [])}
    for m in sorted(amounts - jmounts):
        if m.startswith("/var/run/authgate") or m == "/etc/authgate":
            problem(jwhere, f"does not mount {m}, which authgate's config needs")
    if not r.helm:
        if jcm is not cm:
            problem(jwhere, "must mount the pods' config ConfigMap")
        return
    hook = hook_weight(job)
    if not hook or not {"pre-install", "pre-upgrade"} <= hook[0]:
        problem(jwhere, "must be a pre-install,pre-upgrade hook")
        return
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in jc.get("env", [])
               if "secretKeyRef" in e.get("valueFrom", {})}
    for obj in [jcm] + [s for s in (r.named("Secret", n) for n in sorted(secrets)) if s]:
        h = hook_weight(obj)
        owhere = f"{r.where} {obj['kind']} {obj['metadata']['name']}"
        if not h or not hook[0] <= h[0] or h[1] >= hook[1]:
            problem(owhere, "the migrate hook reads it, so it must be a hook of the same phases "
                    "with a lower weight (a hook runs before the release's own objects exist)")


def check_secret_refs(r, deploy, job):
    """secretKeyRefs to a Secret the render makes must name a key it has; the
    pods must not read hook Secrets (Helm may delete those after the hook)."""
    pods = [(deploy, deploy["spec"]["template"]["spec"]), (job, job["spec"]["template"]["spec"])]
    for obj, spec in pods:
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                sec = r.named("Secret", ref["name"])
                cwhere = f"{r.where} {obj['kind']} {obj['metadata']['name']} container {c['name']} {e['name']}"
                if sec is None:
                    continue  # an existing Secret, not part of the render
                keys = set(sec.get("data") or {}) | set(sec.get("stringData") or {})
                if ref["key"] not in keys and not ref.get("optional"):
                    problem(cwhere, f"Secret {ref['name']} has no key {ref['key']}")
                if obj is deploy and hook_weight(sec):
                    problem(cwhere, f"reads the hook Secret {ref['name']}")


def check_services(r, deploy, ports):
    """Services: only authgate's ports, the proxy's Service only 8080; the
    NetworkPolicy, PDB and ServiceMonitor select the right things."""
    where = r.where
    pod_labels = deploy["spec"]["template"]["metadata"].get("labels", {})
    allowed = {PROXY_PORT, METRICS_PORT} | ({r.decision_port} if r.decision_port else set())
    services = [s for s in r.by_kind.get("Service", []) if matches(s["spec"].get("selector"), pod_labels)]
    if not services:
        problem(where, "no Service selects the pods")

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
        elif len(targets) != 1 or targets[0] not in allowed:
            problem(swhere, f"targets {targets}: one of {sorted(allowed)} per Service")
    if len(proxy_services) != 1:
        problem(where, f"want one Service for port {PROXY_PORT}, found {len(proxy_services)}")
    if r.decision_port and not any(resolve(p) == r.decision_port for s in services for p in s["spec"]["ports"]):
        problem(where, f"no Service for the decision port {r.decision_port}")

    # NetworkPolicy: the proxy and decision ports from where the values say,
    # the metrics port only from a namespace selector, nothing else.
    for np in r.by_kind.get("NetworkPolicy", []):
        nwhere = f"{where} NetworkPolicy {np['metadata']['name']}"
        if not matches(np["spec"].get("podSelector", {}).get("matchLabels"), pod_labels):
            problem(nwhere, "does not select the pods")
        if "Ingress" not in np["spec"].get("policyTypes", []):
            problem(nwhere, "policyTypes must include Ingress")
        admitted = set()
        for rule in np["spec"].get("ingress", []):
            rports = [p.get("port") for p in rule.get("ports", [])]
            if not rports:
                problem(nwhere, "an ingress rule without ports admits every port")
            for p in rports:
                p = ports.get(p, p)
                admitted.add(p)
                if p == METRICS_PORT:
                    froms = rule.get("from", [])
                    if not froms or any("namespaceSelector" not in f for f in froms):
                        problem(nwhere, "the metrics port must be admitted from a namespace selector only")
                elif p not in allowed:
                    problem(nwhere, f"admits port {p}: only {sorted(allowed)}")
        if admitted != allowed:
            problem(nwhere, f"admits ports {sorted(admitted)}, want {sorted(allowed)}")

    for pdb in r.by_kind.get("PodDisruptionBudget", []):
        if not matches(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels):
            problem(f"{where} PodDisruptionBudget {pdb['metadata']['name']}", "does not select the pods")

    # Nothing else the render makes (the migrate Job's pods) is selected as
    # one of the gateway's pods.
    job_labels = r.by_kind["Job"][0]["spec"]["template"]["metadata"].get("labels", {})
    for obj in services + r.by_kind.get("PodDisruptionBudget", []):
        sel = obj["spec"].get("selector") or {}
        sel = sel.get("matchLabels", sel) if obj["kind"] != "Service" else sel
        if sel and matches(sel, job_labels):
            problem(f"{where} {obj['kind']} {obj['metadata']['name']}", "also selects the migrate Job's pods")

    # ServiceMonitor: selects the metrics Service, by a port name it has.
    for sm in r.by_kind.get("ServiceMonitor", []):
        swhere = f"{where} ServiceMonitor {sm['metadata']['name']}"
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        picked = [s for s in r.by_kind.get("Service", []) if matches(sel, s["metadata"].get("labels", {}))]
        if not picked or not sel:
            problem(swhere, "selects no Service")
        for ep in sm["spec"].get("endpoints", []):
            for s in picked:
                named = {p.get("name"): resolve(p) for p in s["spec"]["ports"]}
                if named.get(ep.get("port")) != METRICS_PORT:
                    problem(swhere, f"endpoint port {ep.get('port')!r} is not the metrics port of "
                            f"Service {s['metadata']['name']}")
                if "authgate" not in s["metadata"]["name"]:
                    problem(swhere, f"Service {s['metadata']['name']} is the job label, and the `up` "
                            "alerts match jobs containing \"authgate\"")
            if ep.get("path", "/metrics") != "/metrics":
                problem(swhere, "endpoint path must be /metrics")


def check_hpa(r, deploy):
    for hpa in r.by_kind.get("HorizontalPodAutoscaler", []):
        hwhere = f"{r.where} HorizontalPodAutoscaler {hpa['metadata']['name']}"
        ref = hpa["spec"].get("scaleTargetRef", {})
        if (ref.get("kind"), ref.get("name")) != ("Deployment", deploy["metadata"]["name"]):
            problem(hwhere, f"scales {ref}, not the Deployment")
        if r.mode != "standalone":
            problem(hwhere, "only the standalone gateway scales by HPA")
        if "replicas" in deploy["spec"]:
            problem(hwhere, "the Deployment sets replicas too: every upgrade would reset the HPA's count")


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
    ap.add_argument("--rendered", action="append", default=[], metavar="NAME=FILE",
                    help="a kustomize build")
    ap.add_argument("--chart", help="the Helm chart's directory")
    ap.add_argument("--helm", action="append", default=[], metavar="NAME=FILE",
                    help="a Helm render of <chart>/ci/<case>-values.yaml, NAME = helm-<case>")
    ap.add_argument("--authgate", metavar="BIN", help="run BIN check-config on every render's config")
    args = ap.parse_args()
    repo, out = Path(args.repo).resolve(), Path(args.out)
    renders = {}
    for item in args.rendered:
        name, _, path = item.partition("=")
        renders[f"kustomize:{name}"] = check_rendered(name, path, out)
    if args.chart:
        chart = Path(args.chart).resolve()
        check_chart.check_chart_files(repo, chart, problem)
        for item in args.helm:
            name, _, path = item.partition("=")
            case = chart / "ci" / (name.removeprefix("helm-") + "-values.yaml")
            r = check_rendered(name, path, out, "helm", check_chart.case_values(chart, case))
            check_chart.check_prometheus_rule(r, repo, problem)
            renders[name] = r
        if args.helm:
            check_chart.compare_with_kustomize(renders, problem)
    if args.authgate:
        check_config.run_check_config(args.authgate, list(renders.values()), out, problem)
    check_dockerfile(repo)
    known = known_metrics(repo)
    check_alerts(repo, known)
    check_dashboard(repo, known, out)
    for p in problems:
        print(f"  PROBLEM {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
