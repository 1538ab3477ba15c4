#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests that drive the real
# binary over real sockets (and real nginx where nginx is involved), the
# Python WSGI/Django tests (the `python` feature; the tests create their
# virtualenv with tests/python/setup-venv.sh when it is missing), doc tests.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --features python
