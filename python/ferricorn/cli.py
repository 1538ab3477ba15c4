"""The ``ferricorn`` console script.

The server itself is Rust (``ferricorn._ferricorn``, built from pyext/):
this function hands it the command line and returns its exit code, which
the console-script wrapper passes to ``sys.exit``. Running in the venv's own
interpreter is the point: ``sys.prefix``, ``sys.executable`` and
site-packages are the venv's, with no VIRTUAL_ENV or activate.
"""

import os
import sys


def main():
    # The wheel is built for CPython's stable ABI from 3.9 on (abi3-py39); pip
    # refuses it on older Pythons, and this catches a forced install with one
    # line instead of an import error from the extension module.
    if sys.version_info < (3, 9):
        sys.stderr.write(
            "Error: ferricorn needs Python 3.9 or newer; this is Python %d.%d (%s)\n"
            % (sys.version_info[0], sys.version_info[1], sys.executable)
        )
        return 1
    from ferricorn._ferricorn import main as run

    # Run as the console script, sys.path[0] is the script's directory, the
    # venv's bin/, which holds no modules; ferricorn puts the working
    # directory first itself (as gunicorn does), so sys.path ends up what the
    # venv's python has.
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(sys.argv[0])):
        del sys.path[0]

    # Text Python buffered so far must not be written again by each forked worker.
    sys.stdout.flush()
    sys.stderr.flush()
    return run(sys.argv[1:])
