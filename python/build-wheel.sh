#!/bin/sh
# Build the pip package's wheel exactly as a user's `pip wheel .` does
# (pyproject.toml -> maturin, release profile) and print its path.
#
#   python/build-wheel.sh [PYTHON]
#
# One abi3 wheel (cp39-abi3) serves every CPython from 3.9 on, so it is
# built once and installed into each test virtualenv (tests/pip_install.rs,
# .ci/run). The builder venv and pip's download cache live under
# target/pip/, so maturin is fetched once; cargo's own incremental build
# makes a rebuild of unchanged sources a no-op.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/pip"
python=${1:-python3}
export PIP_CACHE_DIR="$out/cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# The wheel is built for the interpreter maturin finds, never for one these name.
unset VIRTUAL_ENV PYO3_PYTHON PYTHONHOME
if [ ! -x "$out/builder/bin/pip" ]; then
    mkdir -p "$out"
    "$python" -m venv "$out/builder" >&2
fi
rm -rf "$out/wheelhouse"
"$out/builder/bin/pip" wheel -q --no-deps -w "$out/wheelhouse" "$root" >&2
ls "$out"/wheelhouse/ferricorn-*.whl
