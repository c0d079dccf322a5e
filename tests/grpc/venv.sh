#!/usr/bin/env bash
# The Python venv the gRPC tests and tools run in (tests/grpc/check.py):
# Envoy's own compiled protos (xds-protos, an encoder and decoder written
# apart from authgate's prost messages) and a real gRPC client (grpcio),
# from PyPI, pinned. Prints the venv's python (tests/support/pyvenv.sh).
# scripts/test.sh and bench/load.sh call it too.
exec bash "$(dirname "$0")/../support/pyvenv.sh" grpc xds-protos==1.85.0 grpcio==1.85.1 protobuf==7.36.2
