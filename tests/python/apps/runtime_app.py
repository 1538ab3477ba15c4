"""WSGI app for tests/gunicorn_runtime_python.rs: a status per path (statsd),
output on stdout and stderr (--capture-output) and a record on the app's own
logger (--log-config)."""

import logging
import sys

log = logging.getLogger("runtime_app")


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/missing":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"missing\n"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/print":
        # Flushed: Python buffers stdout when it is a file, as under gunicorn.
        print("captured-stdout-marker", flush=True)
        sys.stderr.write("captured-stderr-marker\n")
        sys.stderr.flush()
    if path == "/log":
        log.warning("app-log-marker")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
