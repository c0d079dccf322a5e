#!/usr/bin/env python3
"""Generates tests/attacks/cases.jsonl, the attack corpus run by tests/attacks.rs.

One JSON object per line:
  name      what the case tries
  req       the raw request bytes (\\r\\n explicit); placeholders {RO} {FULL}
            {ADMIN} {RO_UPPER} are replaced by real keys at run time
  status    the expected status (or a list of acceptable ones)
  upstream  the exact list of paths the upstream must have received ([] = nothing)
  identity  for forwarded requests: "none", "ro", "full" or "admin": the
            identity headers the upstream must see (exactly the gateway's set)

Run `python3 tests/attacks/generate.py` after editing; commit both files.
"""
import json, os

cases = []

def req(method, target, headers=(), body="", close=True):
    lines = [f"{method} {target} HTTP/1.1", "Host: cms.example"]
    lines += list(headers)
    if close:
        lines.append("Connection: close")
    return "\r\n".join(lines) + "\r\n\r\n" + body

def add(name, raw, status, upstream=(), identity=None):
    c = {"name": name, "req": raw, "status": status, "upstream": list(upstream)}
    if identity:
        c["identity"] = identity
    cases.append(c)

auth = lambda tok: f"Authorization: Bearer {{{tok}}}"

# --- Path confusion: spellings of admin routes ------------------------------
admin_spellings = [
    ("/admin/users", "/admin/users"),
    ("/ADMIN/users", "/ADMIN/users"),
    ("/Admin/Users", "/Admin/Users"),
    ("//admin/users", "/admin/users"),
    ("///admin//users", "/admin/users"),
    ("/./admin/users", "/admin/users"),
    ("/api/../admin/users", "/admin/users"),
    ("/x/y/../../admin/users", "/admin/users"),
    ("/%61dmin/users", "/admin/users"),
    ("/%41DMIN/users", "/ADMIN/users"),
    ("/adm%69n/users", "/admin/users"),
    ("/admin;x=1/users", "/admin;x=1/users"),
    ("/admin;/users", "/admin;/users"),
    ("/admin./users", "/admin./users"),
    ("/admin../users", "/admin../users"),
    ("/admin%20/users", "/admin%20/users"),
    ("/api/%2e%2e/admin/users", "/admin/users"),
    ("/api/%2E%2E/admin/users", "/admin/users"),
    ("/api/.%2e/admin/users", "/admin/users"),
    ("/api/%2e./admin/users", "/admin/users"),
    ("/admin/./users", "/admin/users"),
    ("/admin/users/", "/admin/users/"),
    ("/admin", "/admin"),
    ("/admin/", "/admin/"),
    ("/content-manager/collection-types/api::article.article", "/content-manager/collection-types/api::article.article"),
    ("/CONTENT-MANAGER/collection-types/api::article.article", "/CONTENT-MANAGER/collection-types/api::article.article"),
    ("/api/../content-manager/init", "/content-manager/init"),
    ("/upload/files", "/upload/files"),
    ("/UpLoad/files", "/UpLoad/files"),
    ("/i18n/locales", "/i18n/locales"),
    ("/email/settings", "/email/settings"),
    ("/users-permissions/roles", "/users-permissions/roles"),
    ("/content-type-builder/content-types", "/content-type-builder/content-types"),
]
for target, norm in admin_spellings:
    add(f"content token on admin spelling {target}", req("GET", target, [auth("FULL")]), 401)
    add(f"admin token on admin spelling {target}", req("GET", target, [auth("ADMIN")]), 200, [norm], "admin")

# --- Path confusion: spellings of content-API routes ------------------------
api_spellings = [
    ("/api/articles", "/api/articles"),
    ("/API/articles", "/API/articles"),
    ("//api//articles", "/api/articles"),
    ("/%61pi/articles", "/api/articles"),
    ("/api;v=1/articles", "/api;v=1/articles"),
    ("/admin/../api/articles", "/api/articles"),
    ("/api/articles/", "/api/articles/"),
    ("/api/./articles", "/api/articles"),
    ("/api/articles?filters[x]=/../admin", "/api/articles?filters[x]=/../admin"),
    ("/api/articles?x=%2e%2e%2fadmin", "/api/articles?x=%2e%2e%2fadmin"),
]
for target, norm in api_spellings:
    add(f"admin token on api spelling {target}", req("GET", target, [auth("ADMIN")]), 401)
    add(f"read-only token on api spelling {target}", req("GET", target, [auth("RO")]), 200, [norm], "ro")
add("admin token on graphql", req("POST", "/graphql", [auth("ADMIN"), "Content-Length: 2"], "{}"), 401)
add("admin token on GRAPHQL", req("POST", "/GraphQL", [auth("ADMIN"), "Content-Length: 2"], "{}"), 401)

# --- Paths that cannot be normalised safely: 400, never forwarded -----------
bad_paths = [
    "/admin%2fusers", "/admin%2Fusers", "/api%2F..%2Fadmin", "/api/%2e%2e%2fadmin", "/api%5c..%5cadmin",
    "/api/x%5C", "/..", "/../admin", "/%2e%2e/admin", "/api/../../admin", "/api/./../../admin",
    "/api%00/articles", "/admin%00", "/api/articles%0d%0aX-Auth-Token-Id:%201", "/api/%09", "/api/%7f",
    "/%c0%ae%c0%ae/admin", "/%e0%80%ae%e0%80%ae/admin", "/%c0%af", "/api/%ff", "/api/%fe%ff",
    "/api/%", "/api/%4", "/api/%zz", "/admin%2e%2e%2f",
]
for target in bad_paths:
    for tok in ("RO", "ADMIN"):
        add(f"unsafe path {target} ({tok})", req("GET", target, [auth(tok)]), 400)
add("unsafe path without token", req("GET", "/admin%2f..%2fapi", []), 400)

# --- Lookalikes that are not protected prefixes -----------------------------
for target in ["/administrator", "/admins/x", "/apis/x", "/api-docs", "/uploads/a.png", "/_health", "/adm/in",
               "/admın/users", "/%EF%BC%A1dmin/users"]:
    add(f"unprotected lookalike {target}", req("GET", target, [auth("RO")]), 200, [target], "none")
# Decoded once more behind us, this one is /admin/users: refused (issue 12).
add("double-encoded admin is refused", req("GET", "/%2561dmin/users", [auth("RO")]), 400)

# --- Request-target forms ---------------------------------------------------
add("absolute-form to admin with content token", req("GET", "http://evil.example/admin/users", [auth("FULL")]), 401)
add("absolute-form to api", req("GET", "http://127.0.0.1/api/articles", [auth("RO")]), 200, ["/api/articles"], "ro")
add("absolute-form with dot segments", req("GET", "http://x/api/../admin/users", [auth("RO")]), 401)
add("asterisk-form", req("OPTIONS", "*", [auth("RO")]), 400)
add("fragment in target", req("GET", "/api/articles#/../../admin", [auth("RO")]), [400, 200], ["/api/articles"], "ro")
add("very long target", req("GET", "/api/" + "a" * 9000, [auth("RO")]), 414)

# --- Host tricks: never used for routing ------------------------------------
for host in ["admin", "localhost/admin", "cms.example:80/admin", "127.0.0.1"]:
    raw = f"GET /api/articles HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {{RO}}\r\nConnection: close\r\n\r\n"
    add(f"host {host}", raw, [200, 400], ["/api/articles"], "ro")
add("no host header", "GET /api/articles HTTP/1.1\r\nAuthorization: Bearer {RO}\r\nConnection: close\r\n\r\n",
    [200, 400], ["/api/articles"], "ro")

# --- Authorization header tricks --------------------------------------------
A = lambda v: f"Authorization: {v}"
add("lowercase scheme", req("GET", "/api/articles", [A("bearer {RO}")]), 200, ["/api/articles"], "ro")
add("uppercase scheme", req("GET", "/api/articles", [A("BEARER {RO}")]), 200, ["/api/articles"], "ro")
add("tab separator", req("GET", "/api/articles", [A("Bearer\t{RO}")]), 200, ["/api/articles"], "ro")
add("two spaces", req("GET", "/api/articles", [A("Bearer  {RO}")]), 200, ["/api/articles"], "ro")
add("leading whitespace", req("GET", "/api/articles", ["Authorization:    Bearer {RO}"]), 200, ["/api/articles"], "ro")
add("trailing whitespace", req("GET", "/api/articles", ["Authorization: Bearer {RO}   "]), 200, ["/api/articles"], "ro")
# PHP's explode(' ')[1] and Laravel read a key here where Strapi reads none:
# one reading only, so refused (issue 12).
add("three parts is refused", req("GET", "/api/articles", [A("Bearer {RO} extra")]), 401)
add("upper-cased key", req("GET", "/api/articles", [A("Bearer {RO_UPPER}")]), 401)
add("doubled key", req("GET", "/api/articles", [A("Bearer {RO}{RO}")]), 401)
add("key plus one char", req("GET", "/api/articles", [A("Bearer {RO}0")]), 401)
add("long bearer", req("GET", "/api/articles", [A("Bearer " + "a" * 20000)]), 401)
add("huge bearer", req("GET", "/api/articles", [A("Bearer " + "a" * 70000)]), 431)
add("basic auth", req("GET", "/api/articles", [A("Basic dXNlcjpwYXNz")]), 200, ["/api/articles"], "none")
add("bearer alone", req("GET", "/api/articles", [A("Bearer")]), 200, ["/api/articles"], "none")
add("empty authorization", req("GET", "/api/articles", ["Authorization:"]), 200, ["/api/articles"], "none")
add("duplicate authorization", req("GET", "/api/articles", [A("Bearer {RO}"), A("Bearer {FULL}")]), 401)
add("duplicate authorization one garbage", req("GET", "/admin/users", [A("Bearer garbage"), A("Bearer {ADMIN}")]), 401)
add("authorization in a different case", req("GET", "/api/articles", ["AUTHORIZATION: Bearer {RO}"]), 200, ["/api/articles"], "ro")
add("jwt-shaped session passes", req("GET", "/admin/users", [A("Bearer eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.c2ln")]),
    200, ["/admin/users"], "none")
add("content key on admin via lowercase scheme", req("GET", "/admin/users", [A("bearer {FULL}")]), 401)

# --- Identity header spoofing -----------------------------------------------
spoofs = [
    "X-Auth-Token-Id: 1", "x-auth-token-kind: admin", "X-AUTH-OWNER-EMAIL: ceo@example.com", "X-Auth-Owner-Id: 1",
    "x-auth-action: admin::users.delete", "x-auth-signature: 00", "x-auth-timestamp: 1", "x-auth-token-type: full-access",
    "x_auth_token_id: 1", "X_Auth_Owner_Id: 1", "x-auth_token-kind: admin", "X-Auth-Anything: x",
]
for sp in spoofs:
    add(f"spoof {sp} with token", req("GET", "/api/articles", [auth("RO"), sp]), 200, ["/api/articles"], "ro")
    add(f"spoof {sp} anonymous", req("GET", "/api/articles", [sp]), 200, ["/api/articles"], "none")
add("spoof repeated", req("GET", "/api/articles", [auth("RO"), "X-Auth-Token-Id: 1", "X-Auth-Token-Id: 2", "x-auth-token-id: 3"]),
    200, ["/api/articles"], "ro")
add("spoof on admin route", req("GET", "/admin/users", [auth("ADMIN"), "X-Auth-Owner-Email: ceo@example.com"]),
    200, ["/admin/users"], "admin")
add("spoof on unprotected route", req("GET", "/uploads/x", ["X-Auth-Token-Id: 1", "x_auth_owner_id: 1"]),
    200, ["/uploads/x"], "none")
add("hop-by-hop smuggle of identity name", req("GET", "/api/articles", [auth("RO"), "Connection: x-auth-token-id"]),
    200, ["/api/articles"], "ro")
add("hop-by-hop removes authorization", req("GET", "/api/articles", [auth("RO"), "Connection: authorization"], close=True),
    200, ["/api/articles"], "ro")
add("proxy-authorization is dropped", req("GET", "/api/articles", [auth("RO"), "Proxy-Authorization: Basic eA=="]),
    200, ["/api/articles"], "ro")
add("h2c upgrade is not passed on", req("GET", "/api/articles", [auth("RO"), "Connection: Upgrade, HTTP2-Settings",
    "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"], close=False), 200, ["/api/articles"], "ro")
add("header name with space", req("GET", "/api/articles", [auth("RO"), "X-Auth-Token-Id : 1"]), 400)
add("obs-fold continuation", "GET /api/articles HTTP/1.1\r\nHost: x\r\nX-Foo: a\r\n X-Auth-Token-Id: 1\r\nAuthorization: Bearer {RO}\r\nConnection: close\r\n\r\n",
    [400, 200], ["/api/articles"], "ro")
add("obs-fold on authorization", "GET /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n {FULL}\r\nConnection: close\r\n\r\n",
    [400, 200], ["/admin/users"], "none")
add("NUL in header value", req("GET", "/api/articles", [auth("RO"), "X-Foo: a\x00b"]), 400)
add("bare LF line endings", "GET /admin/users HTTP/1.1\nHost: x\nAuthorization: Bearer {FULL}\nConnection: close\n\n", [400, 401])

# --- Request smuggling ------------------------------------------------------
smuggled = "GET /admin/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
# With both Content-Length and Transfer-Encoding, hyper follows RFC 9112
# §6.1: it drops Content-Length, decodes chunked, and closes the connection
# after the response. authgate re-frames the body it forwards, so the
# upstream sees one unambiguous request and never the smuggled one.
add("CL and TE together", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
    [200, 400], ["/api/articles"], "full")
add("TE and CL together", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled,
    [200, 400], ["/api/articles"], "full")
add("CL and TE to admin with a content token", "POST /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
    [401, 400], [])
add("duplicate CL different", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n" + smuggled,
    [400], [])
add("CL with plus sign", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nContent-Length: +4\r\n\r\nabcd" + smuggled, [400], [])
add("CL list", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nContent-Length: 4, 40\r\n\r\nabcd" + smuggled, [400], [])
add("CL hex", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nContent-Length: 0x4\r\n\r\nabcd" + smuggled, [400], [])
add("TE xchunked", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, [400, 501], [])
add("TE chunked then identity", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + smuggled, [400, 501], [])
add("TE with tab", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
    [200, 400], ["/api/articles"], "full")
add("TE obs-fold", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc", [400], [])
add("chunk size garbage", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" + smuggled,
    [400, 502, 0], ["/api/articles"], "full")
add("chunk size overflow", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabc\r\n0\r\n\r\n" + smuggled,
    [400, 502, 0], ["/api/articles"], "full")
add("negative chunk size", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n" + smuggled,
    [400, 502, 0], ["/api/articles"], "full")
add("chunk without CRLF", "POST /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n" + smuggled,
    [400, 502, 0], ["/api/articles"], "full")
add("pipelined anonymous request after a denial is judged on its own", "GET /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\n\r\n" + smuggled,
    [401], ["/admin/smuggled"], "none")
add("pipelined token request after a denial is denied too", "GET /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL}\r\n\r\nGET /admin/roles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RO}\r\nConnection: close\r\n\r\n",
    [401], [])
add("pipelined pair, each judged", "GET /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RO}\r\n\r\nGET /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RO}\r\nConnection: close\r\n\r\n",
    [200], ["/api/articles"], "ro")
add("GET with body via CL", "GET /api/articles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {RO}\r\nContent-Length: 37\r\nConnection: close\r\n\r\nGET /admin/smuggled HTTP/1.1\r\nHost: x",
    [200], ["/api/articles"], "ro")
add("HTTP/1.0 keep-alive", "GET /api/articles HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {RO}\r\n\r\n", [200], ["/api/articles"], "ro")
add("HTTP/0.9 style", "GET /admin/users\r\n\r\n", [400, 0], [])
add("HTTP/2 preface on HTTP/1 port", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [400, 0], [])
add("lowercase method", req("get", "/admin/users", [auth("FULL")]), [400, 401], [])
add("unknown method on admin route", req("PROPFIND", "/admin/users", [auth("FULL")]), 401)
# The action table maps /admin/users, no row names PROPFIND: no token holds
# it (issue 12: an unknown method is judged as the most demanding).
add("unknown method with admin token", req("PROPFIND", "/admin/users", [auth("ADMIN")]), 403)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.jsonl")
with open(out, "w") as f:
    for c in cases:
        f.write(json.dumps(c) + "\n")
print(f"{len(cases)} cases written to {out}")
