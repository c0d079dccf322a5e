#!/usr/bin/env bash
# The Python venv the OTLP test receiver and decoder run in
# (tests/otlp/receiver.py): opentelemetry-proto from PyPI, pinned. Prints
# the venv's python (tests/support/pyvenv.sh).
exec bash "$(dirname "$0")/../support/pyvenv.sh" otlp opentelemetry-proto==1.45.2 protobuf==7.36.2
