"""The built-in `echo` app, as a WSGI app: for the same request it must
produce exactly the same JSON bytes (tests/python_wsgi.rs compares them).

WSGI loses the header names' case and merges duplicates, so the comparison
uses requests whose header names are Title-Case and not repeated; the
original order is kept because ferricorn fills environ in received order.
"""

import base64


def _json_str(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    out = ['"']
    for c in text:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or c == "\x7f":
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _native(s):
    """A PEP 3333 native string back to its bytes."""
    return s.encode("latin-1")


def _header_name(key):
    if key == "CONTENT_TYPE":
        return "Content-Type"
    if key == "CONTENT_LENGTH":
        return "Content-Length"
    return "-".join(p.capitalize() for p in key[5:].split("_"))


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    target = environ["RAW_URI"]
    headers = [
        "[%s,%s]" % (_json_str(_header_name(k).encode()), _json_str(_native(v)))
        for k, v in environ.items()
        if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")
    ]
    out = (
        '{"method": %s, "target": %s, "path": %s, "query": %s, "version": %s, '
        '"headers": [%s], "body_base64": "%s", "trailers": []}'
        % (
            _json_str(_native(environ["REQUEST_METHOD"])),
            _json_str(_native(target)),
            _json_str(_native(target.split("?", 1)[0])),
            _json_str(_native(environ["QUERY_STRING"])),
            _json_str(_native(environ["SERVER_PROTOCOL"])),
            ",".join(headers),
            base64.b64encode(body).decode("ascii"),
        )
    ).encode("utf-8")
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/json"),
            ("X-Echo-Remote-Addr", environ["REMOTE_ADDR"] or "-"),
            ("X-Echo-Scheme", environ["wsgi.url_scheme"]),
            ("Content-Length", str(len(out))),
        ],
    )
    return [out]
