"""Run a WSGI app on bjoern with N pre-forked processes (benches/python.sh).

    python bjoern_serve.py MODULE:CALLABLE HOST PORT [WORKERS]

bjoern is single-process; its documented way to use several cores is to
`listen()` once and fork before `run()`, so every process accepts on the same
socket. The app is imported in the parent (like --preload). The parent only
supervises: TERM/INT stop the workers, and it exits when any worker dies.
"""

import importlib
import os
import signal
import sys

import bjoern


def main():
    spec, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    sys.path.insert(0, os.getcwd())
    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr or "application")
    bjoern.listen(app, host, port, listen_backlog=2048)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            bjoern.run()
            os._exit(0)
        children.append(pid)

    def stop(*_):
        for c in children:
            try:
                os.kill(c, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.wait()
    stop()


if __name__ == "__main__":
    main()
