#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for the tests, decoding with the
`opentelemetry-proto` package (an encoder written apart from authgate's).

    receiver.py OUT.jsonl [--port N] [--status CODE]
        Serve POST /v1/traces on 127.0.0.1 (port N, or a free one), print
        the port on the first line of stdout, and append each received span
        to OUT.jsonl as one JSON object (see span_json; `request` numbers
        the POSTs, `peer_port` is the sender's port). Answer CODE
        (default 200) with an empty ExportTraceServiceResponse. A body that
        is not an ExportTraceServiceRequest is answered 400 and written as
        {"error": ...}; a wrong Content-Type 415.

    receiver.py --decode
        Read one ExportTraceServiceRequest from stdin and print its spans,
        one JSON object a line.

Run it from the venv tests/otlp/venv.sh makes.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def span_json(resource, scope, span, request, peer_port=0):
    return {
        "request": request,
        "peer_port": peer_port,
        "resource": attributes(resource.attributes),
        "scope": {"name": scope.name, "version": scope.version},
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_span_id": span.parent_span_id.hex(),
        "trace_state": span.trace_state,
        "flags": span.flags,
        "name": span.name,
        "kind": span.kind,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": attributes(span.attributes),
        "status": {"code": span.status.code, "message": span.status.message},
        "events": len(span.events),
        "links": len(span.links),
    }


def spans_of(body, request, peer_port=0):
    msg = ExportTraceServiceRequest()
    msg.ParseFromString(body)
    out = []
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(span_json(rs.resource, ss.scope, span, request, peer_port))
    return out


def main():
    if sys.argv[1:] == ["--decode"]:
        for s in spans_of(sys.stdin.buffer.read(), 0):
            print(json.dumps(s))
        return
    out_path = sys.argv[1]
    args = sys.argv[2:]
    opt = lambda name, default: int(args[args.index(name) + 1]) if name in args else default
    port, status = opt("--port", 0), opt("--status", 200)
    lock = threading.Lock()
    counter = [0]
    out = open(out_path, "a", encoding="utf-8")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as collectors do

        def log_message(self, *a):
            pass

        def answer(self, code, body=b"", ctype="application/x-protobuf"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/traces":
                return self.answer(404, b"not found", "text/plain")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.answer(415, b"want application/x-protobuf", "text/plain")
            with lock:
                counter[0] += 1
                request = counter[0]
                try:
                    lines = spans_of(body, request, self.client_address[1])
                except DecodeError as e:
                    out.write(json.dumps({"request": request, "error": str(e)}) + "\n")
                    out.flush()
                    return self.answer(400, str(e).encode(), "text/plain")
                for line in lines:
                    out.write(json.dumps(line) + "\n")
                out.flush()
            self.answer(status, ExportTraceServiceResponse().SerializeToString())

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
