"""Views for tests/threads_python.rs (`--threads`), dispatched on PATH_INFO."""

import threading
import time

CLOSED = []


def _text(start_response, body, status="200 OK"):
    body = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def sleep(environ, start_response):
    secs = float(environ.get("QUERY_STRING") or "1")
    time.sleep(secs)
    return _text(start_response, "%d" % threading.get_ident())


def hold(environ, start_response):
    # ?MARK&GATE: create the file MARK with the worker's pid (the test's sign
    # that this request is in the view, as the echo app's mark=), then wait until the file GATE exists (the test opens it
    # once every request it expects in parallel has marked), 10 minutes at
    # most. Parallel views, proven without a clock.
    import os

    mark, gate = environ["QUERY_STRING"].split("&")
    with open(mark + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(mark + ".tmp", mark)
    deadline = time.monotonic() + 600
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _text(start_response, "%d" % threading.get_ident())


def gil_hog(environ, start_response):
    # Holds the GIL until the test says so: the path in the query string is a
    # FIFO; opening it waits for the test to open its end (that is the test's
    # cue that the hog is here), then read(2) through ctypes.PyDLL, which,
    # unlike CDLL, keeps the GIL across the call, blocks until the test writes
    # a byte. Any other thread that wants the GIL waits all that time.
    import ctypes
    import os

    fd = os.open(environ["QUERY_STRING"], os.O_RDONLY)
    try:
        buf = ctypes.create_string_buffer(1)
        libc = ctypes.PyDLL(None)
        libc.read(fd, buf, 1)
    finally:
        os.close(fd)
    return _text(start_response, "done")


def boom(environ, start_response):
    raise ValueError("boom from an app thread")


class Pieces:
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        for i in range(self.n):
            time.sleep(0.01)
            yield b"piece %d\n" % i

    def close(self):
        CLOSED.append(threading.get_ident())


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Pieces(int(environ.get("QUERY_STRING") or "50"))


def closed(environ, start_response):
    return _text(start_response, "%d" % len(CLOSED))


def whoami(environ, start_response):
    # The OS name of the thread running the view: "app-N" for an app thread,
    # the process title's start for the worker's own thread.
    with open("/proc/thread-self/comm") as f:
        return _text(start_response, f.read().strip())


def stuck_view_sleeps_forever(environ, start_response):
    while True:
        time.sleep(0.05)


VIEWS = {
    "/sleep": sleep,
    "/hold": hold,
    "/gil": gil_hog,
    "/boom": boom,
    "/stream": stream,
    "/closed": closed,
    "/stuck": stuck_view_sleeps_forever,
    "/whoami": whoami,
}


def application(environ, start_response):
    view = VIEWS.get(environ["PATH_INFO"])
    if view is None:
        return _text(start_response, "ok")
    return view(environ, start_response)
