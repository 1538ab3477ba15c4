#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests against the real
# binary (and real nginx), and doc tests.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --all-targets
cargo test --doc
