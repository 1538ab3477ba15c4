"""Raw ASGI WebSocket apps (no framework) for tests/asgi_websocket.rs.

The path picks the behaviour; `?out=FILE` names a file the app writes what
it observed to (the disconnect code), so the test can wait for it.
"""
import asyncio
import json
import os
from urllib.parse import parse_qs


def _out(scope):
    q = parse_qs(scope["query_string"].decode())
    return q.get("out", [None])[0]


def _write(path, text):
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)


async def _lifespan(receive, send):
    while True:
        m = await receive()
        if m["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif m["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _echo(scope, receive, send):
    m = await receive()
    assert m["type"] == "websocket.connect", m
    sub = "echo" if "echo" in scope["subprotocols"] else None
    await send({"type": "websocket.accept", "subprotocol": sub,
                "headers": [(b"x-asgi-ws", b"yes")]})
    while True:
        m = await receive()
        if m["type"] == "websocket.disconnect":
            _write(_out(scope), str(m["code"]))
            return
        text = m.get("text")
        if text is None:
            await send({"type": "websocket.send", "bytes": m["bytes"]})
        elif text.startswith("close "):
            _, code, reason = (text + " ").split(" ", 2)
            await send({"type": "websocket.close", "code": int(code),
                        "reason": reason.strip()})
        elif text == "scope":
            keep = ("type", "scheme", "path", "http_version", "subprotocols",
                    "root_path")
            info = {k: scope[k] for k in keep}
            info["query_string"] = scope["query_string"].decode()
            info["has_method"] = "method" in scope
            info["extensions"] = sorted(scope.get("extensions") or {})
            info["in_task"] = asyncio.current_task() is not None
            await send({"type": "websocket.send", "text": json.dumps(info)})
        elif text.startswith("later "):
            # Waits on a real future: the rest runs as an asyncio task.
            await asyncio.sleep(0.01)
            await send({"type": "websocket.send", "text": text[6:]})
        elif text.startswith("burst "):
            for i in range(int(text[6:])):
                await send({"type": "websocket.send", "text": str(i)})
        else:
            await send({"type": "websocket.send", "text": text})


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        return await _lifespan(receive, send)
    if kind == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    path = scope["path"]
    if path == "/echo":
        return await _echo(scope, receive, send)
    if path == "/deny":
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "websocket.http.response.body", "body": b"no ",
                    "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"entry"})
        return
    if path == "/close-before-accept":
        await receive()
        await send({"type": "websocket.close"})
        return
    if path == "/flood":
        # 400 x 64 KiB to a client that may not read: send() must wait.
        await receive()
        await send({"type": "websocket.accept"})
        chunk = b"x" * 65536
        for i in range(400):
            await send({"type": "websocket.send", "bytes": chunk})
            _write(_out(scope), str(i + 1))
        await send({"type": "websocket.send", "text": "done"})
        await receive()
        return
    if path == "/slow-receiver":
        # Takes no message until the file ?go=FILE exists, then counts them.
        go = parse_qs(scope["query_string"].decode())["go"][0]
        await receive()
        await send({"type": "websocket.accept"})
        while not os.path.exists(go):
            await asyncio.sleep(0.01)
        n = 0
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            if m.get("text") == "count":
                await send({"type": "websocket.send", "text": str(n)})
            else:
                n += 1
    if path == "/raise-before-accept":
        raise RuntimeError("refusing by raising")
    if path == "/late-accept":
        await asyncio.sleep(0.01)
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "accepted late"})
        m = await receive()
        _write(_out(scope), str(m.get("code")))
        return
    if path == "/raise-after-accept":
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("failing after the accept")
    if path == "/return-after-accept":
        await receive()
        await send({"type": "websocket.accept"})
        return
    await send({"type": "websocket.close", "code": 1000})
