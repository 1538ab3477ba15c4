#!/bin/sh
# Create (or refresh) the virtualenv the Python integration tests use, and
# print its path. Idempotent: does nothing when the venv exists and was
# built from the current requirements.txt.
#
#   tests/python/setup-venv.sh [VENV_DIR]
#
# VENV_DIR defaults to $FERRICORN_PY_VENV, else <repo>/target/py-venv. The
# venv is made with $PYO3_PYTHON (else python3): it must be the Python whose
# libpython ferricorn is built against (same major.minor), which is also
# what pyo3 picks when PYO3_PYTHON is set.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${1:-${FERRICORN_PY_VENV:-$root/target/py-venv}}
python=${PYO3_PYTHON:-python3}
stamp="$venv/.ferricorn-requirements"
want=$(cat "$here/requirements.txt" "$0" | cksum)
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$venv"
    exit 0
fi
echo "setup-venv: creating $venv with $($python -c 'import sys; print(sys.executable, sys.version.split()[0])')" >&2
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$here/requirements.txt" >&2
echo "$want" > "$stamp"
echo "$venv"
