"""A small app wrapped in wsgiref.validate.validator: any PEP 3333 violation
by the server (environ types and keys, start_response, input/errors
streams, iterable protocol) raises AssertionError inside the app, which
ferricorn turns into a 500 with a traceback in its log."""

from wsgiref.validate import validator


def _inner(environ, start_response):
    inp = environ["wsgi.input"]
    first = inp.readline()
    rest = inp.read(int(environ.get("CONTENT_LENGTH") or 0) - len(first))
    environ["wsgi.errors"].write("compliance app saw %d body bytes\n" % (len(first) + len(rest)))
    environ["wsgi.errors"].flush()
    body = b"ok %s %s %d\n" % (
        environ["REQUEST_METHOD"].encode(),
        environ["PATH_INFO"].encode("latin-1"),
        len(first) + len(rest),
    )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(_inner)
