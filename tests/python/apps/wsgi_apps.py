"""Test apps for tests/python_wsgi.rs, dispatched on PATH_INFO."""

import json
import os
import random
import sys

CLOSED = []


def _text(start_response, body, status="200 OK", extra=()):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))] + list(extra),
    )
    return [body]


def readline(environ, start_response):
    inp = environ["wsgi.input"]
    lines = [inp.readline(), inp.readline(3), inp.readline()]
    lines += inp.readlines()
    return _text(start_response, json.dumps([l.decode("latin-1") for l in lines]))


def iterate(environ, start_response):
    return _text(start_response, json.dumps([l.decode() for l in environ["wsgi.input"]]))


def write(environ, start_response):
    w = start_response("200 OK", [("Content-Type", "text/plain")])
    w(b"written ")
    w(b"then ")
    return [b"returned"]


def latin1(environ, start_response):
    got = environ.get("HTTP_X_NAME", "")
    # Echo the request header's bytes back in a response header and the body.
    return _text(
        start_response,
        got.encode("latin-1"),
        extra=[("X-Echo", got), ("X-Fixed", "caf\u00e9")],
    )


def environ_dump(environ, start_response):
    keep = {
        k: v
        for k, v in environ.items()
        if isinstance(v, str) or k in ("wsgi.version", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once")
    }
    return _text(start_response, json.dumps(keep, sort_keys=True))


def boom(environ, start_response):
    raise RuntimeError("boom from the test app")


class Closing:
    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self):
        CLOSED.append(1)


def closing(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Closing([b"a", b"b"])


def closing_fails(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        yield b"first"
        raise ValueError("broken generator")

    class It:
        def __iter__(self):
            return gen()

        def close(self):
            CLOSED.append(1)

    return It()


def closed(environ, start_response):
    return _text(start_response, str(len(CLOSED)))


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def gen():
        for i in range(3):
            yield b"part%d;" % i

    return gen()


def lazy(environ, start_response):
    # start_response called at the first iteration (allowed by PEP 3333).
    def gen():
        start_response("201 Created", [("Content-Type", "text/plain")])
        yield b"lazy"

    return gen()


def crlf(environ, start_response):
    start_response("200 OK", [("X-Bad", "a\r\nSet-Cookie: evil=1")])
    return [b"no"]


def hop(environ, start_response):
    start_response("200 OK", [("Connection", "close")])
    return [b"no"]


def twice(environ, start_response):
    start_response("200 OK", [])
    start_response("200 OK", [])
    return [b"no"]


def exc_info(environ, start_response):
    try:
        raise KeyError("handled")
    except KeyError:
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"replaced"]


def file_wrapper(environ, start_response):
    import io

    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](io.BytesIO(b"x" * 20000), 4096)


SENDFILE_LEN = 3 << 20


class _DescriptorOnly:
    """A file the server can only send by its descriptor: read() fails, so
    a body that arrives whole came by sendfile, not by iteration."""

    def __init__(self, f):
        self.f = f

    def fileno(self):
        return self.f.fileno()

    def tell(self):
        return self.f.tell()

    def read(self, *args):
        raise RuntimeError("read() called: the server iterated instead of sendfile")

    def close(self):
        self.f.close()
        CLOSED.append(1)


def sendfile(environ, start_response):
    """A 3 MiB file (byte i is i % 251), already unlinked, from ?skip=N
    (read by the app first, so its buffered reader reads ahead of tell()),
    with Content-Length ?cl=M if given."""
    import tempfile
    from urllib.parse import parse_qs

    q = {k: int(v[0]) for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "wb") as out:
        out.write(bytes(i % 251 for i in range(251)) * (SENDFILE_LEN // 251 + 1))
        out.truncate(SENDFILE_LEN)
    f = open(path, "rb")
    os.unlink(path)
    f.read(q.get("skip", 0))
    headers = [("Content-Type", "application/octet-stream")]
    if "cl" in q:
        headers.append(("Content-Length", str(q["cl"])))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](_DescriptorOnly(f), 8192)


def head(environ, start_response):
    return _text(start_response, "body that HEAD must not get")


def pid(environ, start_response):
    return _text(start_response, "%d %r" % (os.getpid(), random.random()))


def signals(environ, start_response):
    import signal

    h = signal.getsignal(signal.SIGINT)
    return _text(start_response, repr(h))


def venv(environ, start_response):
    import django

    return _text(start_response, "%s %s %s" % (sys.prefix, sys.executable, django.__version__))


ROUTES = {
    name: fn
    for name, fn in globals().items()
    if callable(fn) and not name.startswith("_") and name not in ("Closing",)
}


def application(environ, start_response):
    name = environ["PATH_INFO"].strip("/").split("/")[0] or "environ_dump"
    app = ROUTES.get(name)
    if app is None:
        return _text(start_response, "no route %r" % name, "404 Not Found")
    return app(environ, start_response)
