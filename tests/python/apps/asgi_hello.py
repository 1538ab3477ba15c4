"""Benchmark app (benches/asgi.sh), raw ASGI 3, no framework.

http: `Hello, World!` (13 bytes, text/plain, with Content-Length) for any path.
websocket: an echo of every text or binary message (the WebSocket round-trip
benchmark). lifespan: answered, so that every server runs it the same way.
"""

BODY = b"Hello, World!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
BODY_MSG = {"type": "http.response.body", "body": BODY}


async def application(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await send(START)
        await send(BODY_MSG)
    elif kind == "websocket":
        msg = await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.receive":
                if msg.get("text") is not None:
                    await send({"type": "websocket.send", "text": msg["text"]})
                else:
                    await send({"type": "websocket.send", "bytes": msg["bytes"]})
            else:  # websocket.disconnect
                return
    elif kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
