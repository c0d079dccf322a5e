#!/usr/bin/env python3
"""Generates tests/attacks/readings.jsonl, the corpus tests/differential.rs
sends through authgate to real programs (Koa + @koa/router, Express +
method-override, nginx).

Where tests/attacks.rs pins authgate's exact answer, these cases only say
what they try: the test checks properties on what the program behind the
gateway reports it matched, whatever the gateway answered:
  * a request carrying a content-API key is never matched by an admin route
    there, nor one carrying an admin key by a content-API route;
  * a method the gateway refuses (lowercase letters, CONNECT) never arrives;
    a method a program routes by (after its own overriding) is one the
    gateway allows for that key on that path; an unknown method arrives only
    where every standard method would be allowed;
  * no route-, method- or client-overriding header arrives, and no x-auth-*
    header but the gateway's own identity of the key carried.

One JSON object per line:
  name   what the case tries
  class  path | authorization | method | header
  req    the raw request; each character is one byte (Latin-1, so "\\u00a0"
         is the byte 0xA0). Placeholders {FULL} {CREATE} (content-API keys)
         {ADMIN} {NOPERM} (admin keys) are replaced at run time.
  gap    (optional) a reading the gateway's contract does not cover: the
         test reports what happens but does not fail on it.

Run `python3 tests/attacks/readings.py` after editing; commit both files.
"""
import json
import os

ADMIN_PREFIXES = {  # prefix -> a route below it that Strapi 5 serves
    "admin": "/users",
    "content-manager": "/collection-types/api::article.article",
    "content-type-builder": "/content-types",
    "upload": "/files",
    "users-permissions": "/roles",
    "i18n": "/locales",
    "email": "/settings",
}
CONTENT_PREFIXES = {"api": "/articles", "graphql": ""}

cases = []


def req(method, target, headers=(), body=""):
    lines = [f"{method} {target} HTTP/1.1", "Host: cms.example"]
    lines += list(headers)
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def add(cls, name, raw, gap=None):
    assert all(ord(c) < 256 for c in raw), name
    c = {"name": name, "class": cls, "req": raw}
    if gap:
        c["gap"] = gap
    cases.append(c)


def bearer(key):
    return f"Authorization: Bearer {{{key}}}"


# --- Paths read again: each spelling of a prefix's route, sent with a key
# of the other kind (a content key at admin readings, an admin key at
# content-API readings). ------------------------------------------------------
def spellings(name, sub, other):
    """(label, target) for the route /<name><sub>; `other` is a prefix of
    the other class, for dot segments climbing out of it."""
    h = f"{ord(name[0]):02x}"
    rest = name[1:]
    tail = sub.lstrip("/")
    yield "double-encoded first letter", f"/%25{h}{rest}{sub}"
    yield "triple-encoded first letter", f"/%2525{h}{rest}{sub}"
    yield "IIS %u escape", f"/%u00{h}{rest}{sub}"
    yield "double-encoded slash", f"/{name}%252f{tail}" if tail else f"/{name}%252f"
    yield "encoded backslashes and dots", f"/{other}%5c..%5c{name}{sub}"
    yield "raw backslashes", f"/{other}\\..\\{name}{sub}"
    yield "Tomcat ..;/", f"/{other}/..;/{name}{sub}"
    yield "matrix parameter", f"/{name};jsessionid=1{sub}"
    yield "trailing dot", f"/{name}.{sub}"
    yield "trailing encoded space", f"/{name}%20{sub}"
    yield "trailing dot and space", f"/{name}.%20{sub}"
    yield "mixed case", "/" + "".join(c.upper() if i % 2 else c for i, c in enumerate(name)) + sub
    yield "dot segment", f"/{other}/../{name}{sub}"
    yield "encoded dot segment", f"/{other}/%2e%2e/{name}{sub}"
    yield "double-encoded dot segment", f"/{other}/%252e%252e/{name}{sub}"
    yield "repeated slashes", f"//{name}//{tail}" if tail else f"//{name}//"


for name, sub in ADMIN_PREFIXES.items():
    for label, target in spellings(name, sub, "api"):
        add("path", f"content key, {label}: {target}", req("GET", target, [bearer("FULL")]))
for name, sub in CONTENT_PREFIXES.items():
    for label, target in spellings(name, sub, "admin"):
        add("path", f"admin key, {label}: {target}", req("GET", target, [bearer("ADMIN")]))

# --- Authorization values that JS, PHP or Python split differently from a
# split on space and tab. ---------------------------------------------------
auth_values = [
    ("NBSP (JS and Python split here)", "Bearer\u00a0{K}"),
    ("NEL (Python splits here)", "Bearer\u0085{K}"),
    ("vertical tab", "Bearer\x0b{K}"),
    ("form feed", "Bearer\x0c{K}"),
    ("file separator (Python splits here)", "Bearer\x1c{K}"),
    ("double space", "Bearer  {K}"),
    ("tab", "Bearer\t{K}"),
    ("three parts", "Bearer {K} extra"),
    ("trailing NBSP", "Bearer {K}\u00a0"),
    ("leading NBSP", "\u00a0Bearer {K}"),
    ("lowercase scheme", "bearer {K}"),
    ("comma-joined second credential", "Bearer {K}, Basic eA=="),
    ("key then vertical tab", "Bearer {K}\x0bx"),
]
auth_targets = [
    ("FULL", "/admin/users"),
    ("FULL", "/upload/files"),
    ("ADMIN", "/api/articles"),
    ("ADMIN", "/graphql"),
]
for label, value in auth_values:
    for key, target in auth_targets:
        v = value.replace("{K}", f"{{{key}}}")
        add("authorization", f"{label}, {key} on {target}", req("GET", target, [f"Authorization: {v}"]))
add("authorization", "leading blank", req("GET", "/admin/users", ["Authorization:  Bearer {FULL}"]))
add("authorization", "leading tab", req("GET", "/admin/users", ["Authorization:\tBearer {FULL}"]))

# --- Methods ----------------------------------------------------------------
for m in ["get", "Get", "gET", "post", "delete"]:
    add("method", f"{m} with a content key on an admin route", req(m, "/admin/users/1", [bearer("FULL")]))
    add("method", f"{m} with a permissionless admin key", req(m, "/admin/users/1", [bearer("NOPERM")]))
    add("method", f"{m} with an admin key on a content route", req(m, "/api/articles", [bearer("ADMIN")]))
unknown_targets = [
    ("NOPERM", "/admin/users/1"),
    ("ADMIN", "/admin/users/1"),
    ("NOPERM", "/content-manager/collection-types/api::article.article/1"),
    ("ADMIN", "/content-manager/collection-types/api::article.article/1"),
    ("CREATE", "/api/articles/1"),
]
for m in ["PROPFIND", "SEARCH", "PURGE", "MKCOL", "TRACE", "QUERY", "LOCK", "FOO"]:
    for key, target in unknown_targets:
        add("method", f"{m} with {key} on {target}", req(m, target, [bearer(key)]))
add("method", "CONNECT to an admin path, content key", req("CONNECT", "/admin/users", [bearer("FULL")]))
add("method", "CONNECT to an admin path, permissionless key", req("CONNECT", "/admin/users", [bearer("NOPERM")]))
add("method", "CONNECT to an admin path, admin key", req("CONNECT", "/admin/users", [bearer("ADMIN")]))
add("method", "CONNECT to a content path, admin key", req("CONNECT", "/api/articles", [bearer("ADMIN")]))
add("method", "CONNECT authority-form", req("CONNECT", "127.0.0.1:1", [bearer("NOPERM")]))
override_targets = [
    ("ADMIN", "/admin/users/1"),
    ("NOPERM", "/admin/users/1"),
    ("ADMIN", "/content-manager/collection-types/api::article.article/1"),
    ("CREATE", "/api/articles"),
]
for hdr in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"]:
    for value in ["DELETE", "put"]:
        for key, target in override_targets:
            add("method", f"POST with {hdr}: {value}, {key} on {target}",
                req("POST", target, [bearer(key), f"{hdr}: {value}"]))
add("method", "GET with X-HTTP-Method-Override: DELETE",
    req("GET", "/admin/users/1", [bearer("NOPERM"), "X-HTTP-Method-Override: DELETE"]))
add("method", "override header in capitals",
    req("POST", "/admin/users/1", [bearer("NOPERM"), "X-HTTP-METHOD-OVERRIDE: DELETE"]))
add("method", "override to CONNECT",
    req("POST", "/admin/users/1", [bearer("NOPERM"), "X-HTTP-Method-Override: CONNECT"]))
# method-override's query getter (`_method`) lives in the query string:
# authgate refuses a `_method` parameter on protected routes.
for key, target in [("NOPERM", "/admin/users/1"), ("ADMIN", "/admin/users/1"), ("CREATE", "/api/articles")]:
    for name in ["_method", "_METHOD", "%5Fmethod"]:
        add("method", f"POST ?{name}=DELETE, {key} on {target}",
            req("POST", f"{target}?{name}=DELETE", [bearer(key)]))

# --- Headers that re-route or re-identify -----------------------------------
SPOOF_IP = "203.0.113.66"
override_headers = [
    f"X-Original-URL: /admin/users",
    f"X-Rewrite-URL: /admin/users",
    f"X-Real-IP: {SPOOF_IP}",
    f"True-Client-IP: {SPOOF_IP}",
    f"X-Client-IP: {SPOOF_IP}",
    f"X-Forwarded-Prefix: /admin",
    f"X-Forwarded-Port: 8443",
    f"X-Forwarded-Server: evil.example",
    f"X-Forwarded-Ssl: on",
    f"X-Forwarded-Uri: /admin/users",
    f"X-Cluster-Client-IP: {SPOOF_IP}",
    f"CF-Connecting-IP: {SPOOF_IP}",
    f"Fastly-Client-IP: {SPOOF_IP}",
    f"X-Forwarded-For: {SPOOF_IP}",
    f"X-Forwarded-Host: evil.example",
    f"X-Forwarded-Proto: https",
    f"Forwarded: for={SPOOF_IP};host=evil.example;proto=https",
]
header_targets = [("FULL", "/api/articles"), ("ADMIN", "/admin/users"), (None, "/uploads/a.png")]
for h in override_headers:
    for key, target in header_targets:
        hs = [h] + ([bearer(key)] if key else [])
        add("header", f"{h} on {target} ({key or 'anonymous'})", req("GET", target, hs))
add("header", "X-Original-URL in capitals", req("GET", "/api/articles", [bearer("FULL"), "X-ORIGINAL-URL: /admin/users"]))
add("header", "X-Original-URL twice", req("GET", "/api/articles", [bearer("FULL"), "X-Original-URL: /x", "X-Original-URL: /admin/users"]))
identity_headers = [
    "x-auth-token-id: 1", "X-Auth-Token-Kind: admin", "x-auth-owner-email: ceo@evil.example",
    "x-auth-owner-id: 1", "x-auth-action: admin::users.delete", "x-auth-user: root",
    "X-Auth-Anything: spoof", "x_auth_token_id: 1", "x-auth_token-kind: admin",
]
for h in identity_headers:
    add("header", f"{h} with a content key", req("GET", "/api/articles", [bearer("FULL"), h]))
    add("header", f"{h} anonymous on an admin route", req("GET", "/admin/users", [h]))

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "readings.jsonl")
with open(out, "w") as f:
    for c in cases:
        f.write(json.dumps(c) + "\n")
counts = {}
for c in cases:
    counts[c["class"]] = counts.get(c["class"], 0) + 1
print(f"{len(cases)} cases written to {out}: {counts}")
