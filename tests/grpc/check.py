#!/usr/bin/env python3
"""Envoy's ext_authz gRPC `Check`, from the outside: Envoy's own compiled
protos (the `xds-protos` package) and a real gRPC client (`grpcio`), both
written apart from authgate's prost messages (src/decision/grpc.rs).

    check.py golden DIR
        Write the golden messages as hex, one file each, into DIR
        (tests/fixtures/grpc): CheckRequests as Envoy sends them and the
        CheckResponses authgate must answer for the cases that
        src/decision/grpc/tests.rs builds with prost. Deterministic.

    check.py call
        Read a JSON list of calls from stdin, send each as a gRPC Check
        (h2c with prior knowledge, or TLS when "tls_root" names a PEM file),
        and print a JSON list of the answers (see answer_json).

    check.py frame [--authorization V] [--path P] [--host H] [--method M]
        Print one framed (5-byte prefix) CheckRequest on stdout, for h2load
        (bench/load.sh).

Run it from the venv tests/grpc/venv.sh makes.
"""
import json
import os
import sys

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as ea

CHECK = "/envoy.service.auth.v3.Authorization/Check"
OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# authgate's identity header names (default prefix), in name order.
IDENTITY = sorted([
    "x-auth-token-id", "x-auth-token-kind", "x-auth-token-name",
    "x-auth-token-type", "x-auth-owner-id", "x-auth-owner-email",
    "x-auth-action", "x-auth-timestamp", "x-auth-signature",
])


def request(method="GET", path="/", host="cms.example", headers=None,
            header_map=None, body=None, raw_body=None, source=None,
            extra=False):
    """A CheckRequest as Envoy's ext_authz filter fills it. `extra`: also
    the fields authgate does not read (they must not disturb it)."""
    r = ea.CheckRequest()
    a = r.attributes
    if source is not None:
        a.source.address.socket_address.address = source
        a.source.address.socket_address.port_value = 40000
    h = a.request.http
    h.method = method
    h.path = path
    h.host = host
    for k, v in (headers or {}).items():
        h.headers[k] = v
    for k, v in header_map or []:
        h.header_map.headers.add(key=k, raw_value=v.encode())
    if body is not None:
        h.body = body
    if raw_body is not None:
        h.raw_body = raw_body
    if extra:
        a.source.service = "frontend"
        a.source.principal = "spiffe://cluster.local/ns/default/sa/envoy"
        a.destination.address.socket_address.address = "10.0.0.2"
        a.destination.address.socket_address.port_value = 8080
        a.request.time.seconds = 1_700_000_000
        h.id = "12345"
        h.scheme = "http"
        h.protocol = "HTTP/1.1"
        h.size = -1
        a.context_extensions["virtual_host"] = "cms"
        a.metadata_context.filter_metadata["envoy.lb"].fields["canary"].bool_value = True
    return r


def ok(headers, remove):
    r = ea.CheckResponse()
    r.status.code = 0
    r.ok_response.SetInParent()
    for k, v in headers:
        o = r.ok_response.headers.add()
        o.header.key, o.header.value = k, v
        o.append_action = OVERWRITE
    r.ok_response.headers_to_remove.extend(remove)
    return r


def denied(code, status, headers, body):
    r = ea.CheckResponse()
    r.status.code = code
    r.denied_response.status.code = status
    for k, v in headers:
        o = r.denied_response.headers.add()
        o.header.key, o.header.value = k, v
        o.append_action = OVERWRITE
    r.denied_response.body = body
    return r


def envelope(status, name, message):
    return json.dumps({"data": None, "error": {"status": status, "name": name,
                                                "message": message, "details": {}}},
                      separators=(",", ":"))


JSON = "application/json; charset=utf-8"


def golden():
    """(name, message): the cases src/decision/grpc/tests.rs checks."""
    set_headers = [
        ("x-auth-action", "api::a.a.find"),
        ("x-auth-token-id", "7"),
        ("x-auth-token-kind", "content-api"),
        ("x-auth-token-name", "ci"),
        ("x-auth-token-type", "read-only"),
        ("x-request-id", "rid-1"),
    ]
    set_names = {k for k, _ in set_headers}
    # The identity names the answer leaves unset, and the client's own
    # identity and overriding headers.
    remove = sorted({n for n in IDENTITY if n not in set_names}
                    | {"x_auth_token_id", "x-auth-anything", "x-http-method-override"})
    return [
        ("check_request_minimal", request(
            method="POST", path="/api/articles?filters[title]=a", host="cms.example",
            headers={"authorization": "Bearer k", "content-type": "application/json",
                     "x-request-id": "rid-1"},
            body='{"query":"{ a }"}', source="192.0.2.7")),
        ("check_request_envoy", request(
            method="GET", path="/graphql?query=%7Ba%7D", host="cms.example:8443",
            headers={":authority": "cms.example:8443", ":method": "GET",
                     ":path": "/graphql?query=%7Ba%7D", ":scheme": "https",
                     "authorization": "Bearer k", "x-forwarded-for": "198.51.100.1"},
            raw_body=b"\x00\xffbinary", source="2001:db8::1", extra=True)),
        ("check_request_header_map", request(
            method="DELETE", path="/api/articles/1", host="cms.example",
            header_map=[("authorization", "Bearer k"), ("x-tag", "a"), ("x-tag", "b")],
            source="127.0.0.1")),
        ("check_response_allow", ok(set_headers, remove)),
        ("check_response_deny_401", denied(16, 401, [
            ("content-type", JSON), ("x-request-id", "rid-2")],
            envelope(401, "UnauthorizedError", "Missing or invalid credentials"))),
        ("check_response_deny_429", denied(8, 429, [
            ("content-type", JSON), ("retry-after", "2"), ("x-request-id", "rid-3")],
            envelope(429, "RateLimitError", "Too many requests"))),
    ]


def write_golden(out):
    os.makedirs(out, exist_ok=True)
    for name, msg in golden():
        with open(os.path.join(out, name + ".hex"), "w") as f:
            f.write(msg.SerializeToString(deterministic=True).hex() + "\n")


def answer_json(resp):
    """What a CheckResponse says, as JSON."""
    out = {"status_code": resp.status.code, "status_message": resp.status.message}
    kind = resp.WhichOneof("http_response")
    if kind == "ok_response":
        o = resp.ok_response
        out["ok"] = {
            "headers": [[h.header.key, h.header.value, h.append_action] for h in o.headers],
            "headers_to_remove": list(o.headers_to_remove),
        }
    elif kind == "denied_response":
        d = resp.denied_response
        out["denied"] = {
            "status": d.status.code,
            "headers": [[h.header.key, h.header.value, h.append_action] for h in d.headers],
            "body": d.body,
        }
    return out


def call(cases):
    import grpc
    results = []
    for c in cases:
        req = request(method=c.get("method", "GET"), path=c.get("path", "/"),
                      host=c.get("host", "cms.example"), headers=c.get("headers"),
                      header_map=c.get("header_map"), body=c.get("body"),
                      raw_body=c["raw_body"].encode() if "raw_body" in c else None,
                      source=c.get("source"))
        if "tls_root" in c:
            with open(c["tls_root"], "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            channel = grpc.secure_channel(c["target"], creds, options=[
                ("grpc.ssl_target_name_override", c.get("tls_name", "localhost"))])
        else:
            channel = grpc.insecure_channel(c["target"])
        with channel:
            stub = channel.unary_unary(CHECK, request_serializer=ea.CheckRequest.SerializeToString,
                                       response_deserializer=ea.CheckResponse.FromString)
            try:
                resp = stub(req, timeout=10)
                results.append({"grpc": 0, **answer_json(resp)})
            except grpc.RpcError as e:
                results.append({"grpc": e.code().value[0], "details": e.details()})
    return results


def main():
    args = sys.argv[1:]
    if args[:1] == ["golden"] and len(args) == 2:
        write_golden(args[1])
    elif args == ["call"]:
        json.dump(call(json.load(sys.stdin)), sys.stdout)
        sys.stdout.write("\n")
    elif args[:1] == ["frame"]:
        opts = dict(zip(args[1::2], args[2::2]))
        headers = {"x-forwarded-for": "127.0.0.1"}
        if "--authorization" in opts:
            headers["authorization"] = opts["--authorization"]
        msg = request(method=opts.get("--method", "GET"), path=opts.get("--path", "/api/articles"),
                      host=opts.get("--host", "cms.example"), headers=headers,
                      source="127.0.0.1").SerializeToString(deterministic=True)
        sys.stdout.buffer.write(b"\0" + len(msg).to_bytes(4, "big") + msg)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
