"""Raw ASGI apps (no framework) for tests/asgi_http.rs and
tests/asgi_lifecycle.rs: one route per conformance point.

`application` routes on the path; `lifespan_fails`, `lifespan_raises`,
`no_lifespan` are apps for the lifespan tests. Environment variables name
files the apps write to (FIFOs and logs the tests wait on)."""

import asyncio
import json
import os
import sys
import threading


def log(line):
    path = os.environ.get("ASGI_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


async def read_body(receive):
    body = b""
    while True:
        m = await receive()
        if m["type"] == "http.disconnect":
            raise RuntimeError("disconnected while reading the body")
        body += m.get("body", b"")
        if not m.get("more_body", False):
            return body


async def respond(send, status, body, headers=(), content_type=b"text/plain"):
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type)] + list(headers),
    })
    await send({"type": "http.response.body", "body": body})


def jsonable(scope):
    out = {}
    for k, v in scope.items():
        if k == "headers":
            out[k] = [[n.decode("latin-1"), val.decode("latin-1")] for n, val in v]
        elif isinstance(v, bytes):
            out[k] = v.decode("latin-1")
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


async def application(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                scope["state"]["counter"] = [0]
                log("startup")
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                log("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    path = scope["path"][len(scope["root_path"]):]
    if path == "/hello":
        await respond(send, 200, b"Hello, ASGI!\n")
    elif path.startswith("/scope"):
        body = await read_body(receive)
        s = jsonable(scope)
        s["body"] = body.decode("latin-1")
        await respond(send, 200, json.dumps(s).encode(), content_type=b"application/json")
    elif path == "/echo":
        body = await read_body(receive)
        await respond(send, 200, body, content_type=b"application/octet-stream")
    elif path == "/sleep":
        await asyncio.sleep(0.01)
        await respond(send, 200, b"slept\n")
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"piece %d\n" % i, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/big-stream":
        # 64 MiB in 64 KiB pieces: a client that does not read must not make
        # the worker buffer it (send() waits).
        n = int(dict(x.split("=") for x in scope["query_string"].decode().split("&") if x).get("mib", "64"))
        piece = b"x" * 65536
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        sent = 0
        try:
            for i in range(n * 16):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += 1
                if sent % 16 == 0:
                    log("sent %d MiB" % (sent // 16))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError as e:
            log("send raised OSError after %d pieces" % sent)
            raise
    elif path == "/raise-before":
        raise ValueError("boom before start")
    elif path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom after start")
    elif path == "/raise-mid-stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await asyncio.sleep(0)
        raise ValueError("boom mid-stream")
    elif path == "/no-response":
        return
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.pathsend", "path": os.environ["ASGI_TEST_FILE"]})
    elif path == "/disconnect-after":
        await respond(send, 200, b"done\n")
        m = await receive()
        log("after response: " + m["type"])
    elif path == "/wait-disconnect":
        await read_body(receive)
        log("waiting for disconnect")
        m = await receive()
        log("while running: " + m["type"])
        await respond(send, 200, b"never read\n")
    elif path == "/slow":
        # Until cancelled (--timeout) or for `s` seconds.
        secs = float(scope["query_string"].decode().partition("=")[2] or "60")
        log("slow started")
        try:
            await asyncio.sleep(secs)
        except asyncio.CancelledError:
            log("slow cancelled")
            raise
        await respond(send, 200, b"slow done\n")
    elif path == "/stall-stream":
        # A streamed response that stops sending (until cancelled at
        # --timeout, or for `s` seconds): not a slow reader, a stalled app.
        secs = float(scope["query_string"].decode().partition("=")[2] or "60")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        log("stall started")
        try:
            await asyncio.sleep(secs)
        except asyncio.CancelledError:
            log("stall cancelled")
            raise
        await send({"type": "http.response.body", "body": b"late\n", "more_body": False})
    elif path == "/block":
        # Synchronous code that holds the loop: the worker is replaced.
        import time
        time.sleep(float(scope["query_string"].decode().partition("=")[2] or "60"))
        await respond(send, 200, b"unblocked\n")
    elif path == "/fifo":
        # Waits (in a thread) until the test writes a line to the FIFO.
        fifo = os.environ["ASGI_TEST_FIFO"]
        log("fifo waiting")
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, lambda: open(fifo).readline())
        await respond(send, 200, ("fifo said " + line.strip() + "\n").encode())
    elif path == "/state":
        st = scope["state"]
        st["counter"][0] += 1
        await respond(send, 200, json.dumps({"started": st.get("started"),
                                             "counter": st["counter"][0]}).encode())
    elif path == "/head":
        await respond(send, 200, b"body for GET only\n")
    elif path == "/head-len":
        # As Starlette's FileResponse answers HEAD: the length, no body.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1234")]})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/current-task":
        # Before any await: the request runs as a task from its first step
        # (asyncio.timeout, wait_for on 3.12 and anyio's cancel scopes need
        # one), and it stays the same task across a suspension.
        first = asyncio.current_task()
        await asyncio.wait_for(asyncio.sleep(0), 5)
        same = asyncio.current_task() is first
        await respond(send, 200, ("%s %s\n" % (first is not None, same)).encode())
    elif path == "/background":
        # Work after the response (Starlette's BackgroundTasks run so): a
        # graceful stop lets it finish before the lifespan shutdown.
        await respond(send, 200, b"queued\n")
        await asyncio.sleep(0.3)
        log("background done")
    elif path == "/pid":
        await respond(send, 200, str(os.getpid()).encode())
    elif path == "/loop":
        await respond(send, 200, type(asyncio.get_running_loop()).__module__.encode())
    else:
        await respond(send, 404, b"no route\n")


class ClassApp:
    """An ASGI3 class: `__call__` is a coroutine function."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        await respond(send, 200, b"class app\n")


class_app = ClassApp()


async def lifespan_fails(scope, receive, send):
    if scope["type"] == "lifespan":
        m = await receive()
        await send({"type": "lifespan.startup.failed", "message": "database is down"})
        return
    await respond(send, 200, b"should not serve\n")


async def lifespan_raises(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan support")
    await respond(send, 200, b"served without lifespan\n")


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi\n"]
