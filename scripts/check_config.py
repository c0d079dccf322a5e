"""`authgate check-config` on every rendered config.toml, for
scripts/check_deploy.py.

Each config is checked as its pod would load it: in an environment holding
only what the authgate container's `env` sets (a value from a Secret that the
render makes is that value; one from an existing Secret, a placeholder of the
right shape), and with every file the config names present where the pod
mounts it (empty placeholders under a temporary root: authgate checks at
start that they exist). Every render, including the chart's optional cases,
must pass as it is: an unknown key is an error.
"""

import base64
import copy
import json
import os
import re
import subprocess

# authgate's config sections (src/config/env.rs SECTIONS): AUTHGATE_<SECTION>_<KEY>
# must name one.
CONFIG_SECTIONS = (
    "rate_limit", "upstream", "postgres", "identity", "metrics", "server",
    "tokens", "routes", "cache", "redis", "log", "management", "audit",
    "decision", "tracing",
)

# Placeholders for values from Secrets the render does not make.
PLACEHOLDER = {
    "API_TOKEN_SALT": "check-deploy-salt",
    "ENCRYPTION_KEY": "check-deploy-key",
    "AUTHGATE_POSTGRES_URL": "postgres://authgate:pw@db.invalid:5432/cms",
    "AUTHGATE_POSTGRES_LISTEN_URL": "postgres://authgate:pw@db-direct.invalid:5432/cms",
    "AUTHGATE_REDIS_URL": "redis://default:pw@redis.invalid:6379",
    "AUTHGATE_REDIS_CLUSTER": '["redis://default:pw@redis-0.invalid:6379"]',
    "AUTHGATE_REDIS_SENTINELS": '["sentinel-0.invalid:26379"]',
    "AUTHGATE_REDIS_SENTINEL_PASSWORD": "pw",
}

# Config keys whose values are file paths.
FILE_KEY = re.compile(r"(_file|^tls_cert|^tls_key)$")


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} as TOML")


def toml_dump(table, path=()):
    """A small TOML writer for the parsed configs (tables, arrays of tables,
    scalars and lists of scalars), to write one back after dropping a key."""
    out = []
    if path:
        out.append(f"[{'.'.join(path)}]")
    subs = []
    for k, v in table.items():
        if isinstance(v, dict):
            subs.append((k, v, False))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            subs.append((k, v, True))
        else:
            out.append(f"{k} = {toml_value(v)}")
    for k, v, array in subs:
        if array:
            for item in v:
                body = toml_dump(item, path + (k,)).split("\n", 1)
                out.append(f"\n[[{'.'.join(path + (k,))}]]" + ("\n" + body[1] if len(body) > 1 else ""))
        else:
            out.append("\n" + toml_dump(v, path + (k,)))
    return "\n".join(out)


def pod_env(render):
    env = {}
    for e in render.authgate.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            continue
        secret = render.named("Secret", ref["name"])
        if secret is not None:
            data = secret.get("data") or {}
            if ref["key"] in data:
                env[e["name"]] = base64.b64decode(data[ref["key"]]).decode()
            elif ref["key"] in (secret.get("stringData") or {}):
                env[e["name"]] = secret["stringData"][ref["key"]]
            # else: an optional key the Secret lacks; the pod gets nothing.
        else:
            env[e["name"]] = PLACEHOLDER.get(e["name"], "check-deploy-secret")
    return env


def place_files(render, config, root, problem):
    """Point every file the config names at an empty placeholder under root,
    where the authgate container mounts it. Returns the rewritten config."""
    mounts = [m["mountPath"].rstrip("/") + "/" for m in render.authgate.get("volumeMounts", [])]

    def walk(table, path):
        for k, v in table.items():
            if isinstance(v, dict):
                walk(v, path + (k,))
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    walk(item, path + (k,))
            elif isinstance(v, str) and FILE_KEY.search(k) and v.startswith("/"):
                if not any(v.startswith(m) for m in mounts):
                    problem(render.where, f"config.toml {'.'.join(path + (k,))} = {v!r}: "
                            "the authgate container mounts no volume there")
                    continue
                target = root / v.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
                table[k] = str(target)

    walk(config, ())
    return config


def run_check_config(binary, renders, out, problem):
    for r in renders:
        if r.config_text is None or r.authgate is None:
            continue
        config = copy.deepcopy(r.config)
        root = out / f"{r.name}.files"
        config = place_files(r, config, root, problem)
        env = pod_env(r)
        text = r.config_text if not root.exists() else toml_dump(config)
        path = out / f"{r.name}.check.toml"
        path.write_text(text)
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        res = subprocess.run([binary, "check-config", "--config", str(path)], env=run_env,
                             capture_output=True, text=True, timeout=60)
        output = (res.stdout + res.stderr).strip()
        if res.returncode == 0:
            print(f"  {r.where}: authgate check-config passes")
        else:
            problem(r.where, "authgate check-config fails: " + output.replace("\n", " "))
