"""A FastAPI (Starlette) app for tests/asgi_frameworks.rs and benches/asgi.sh.

What a real framework app does to its server: routing with typed path and
query parameters (422 from FastAPI's validation), JSON in and out (pydantic),
a multipart form upload (python-multipart, the file spooled by Starlette), a
streaming response from an async generator, BackgroundTasks run after the
response was sent, a sync view that FastAPI runs on its thread pool (anyio),
a view that raises, a WebSocket echo, and lifespan: startup puts values into
the lifespan state that Starlette copies into every request
(`request.state`), shutdown appends a line to $ASGI_APP_SHUTDOWN_FILE when
that is set.
"""

import asyncio
import contextlib
import contextvars
import os
import threading
import zlib
from typing import List, Optional

from fastapi import BackgroundTasks, FastAPI, File, Form, Request, UploadFile, WebSocket
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

MAIN_THREAD = threading.get_ident()
# What apps keep per request in a ContextVar (a request id for the logs,
# asgiref's ThreadSensitiveContext): each request must start without the
# values other requests set.
REQUEST_ID = contextvars.ContextVar("request_id", default=None)


@contextlib.asynccontextmanager
async def lifespan(app):
    # Runs in the worker before it accepts; the dict is the lifespan state,
    # copied by Starlette into each request's scope["state"].
    yield {"started_pid": os.getpid(), "startup_token": "fastapi-startup-ran"}
    path = os.environ.get("ASGI_APP_SHUTDOWN_FILE")
    if path:
        with open(path, "a") as f:
            f.write("shutdown %d\n" % os.getpid())


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


class Item(BaseModel):
    name: str
    price: float
    tags: List[str] = []


@app.get("/")
async def index():
    return {"hello": "world"}


@app.get("/json")
async def json_bench():
    """Benchmark endpoint (benches/asgi.sh): FastAPI's routing and JSON."""
    return {"message": "Hello, World!"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "price": item.price, "tags": item.tags, "n_tags": len(item.tags)}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form("")):
    crc = 0
    size = 0
    while True:
        chunk = await file.read(65536)
        if not chunk:
            break
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    return {
        "filename": file.filename,
        "content_type": file.content_type,
        "size": size,
        "crc32": crc,
        "note": note,
    }


@app.api_route("/stream", methods=["GET", "HEAD"])
async def stream(n: int = 5, size: int = 0):
    """`n` pieces, each yielded after giving the event loop a turn, so the
    server gets them one `more_body` message at a time."""

    async def pieces():
        for i in range(n):
            await asyncio.sleep(0)
            yield ("piece %d %s\n" % (i, "x" * size)).encode()

    return StreamingResponse(pieces(), media_type="text/plain")


def _write_marker(path: str, text: str):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    # Renamed into place: the test never reads a half-written file.
    os.replace(path + ".tmp", path)


@app.post("/background")
async def background(path: str, tasks: BackgroundTasks):
    tasks.add_task(_write_marker, path, "background task ran in %d" % os.getpid())
    return {"queued": path}


@app.get("/state")
async def state(request: Request):
    return {
        "started_pid": request.state.started_pid,
        "startup_token": request.state.startup_token,
        "pid": os.getpid(),
    }


@app.get("/sync")
def sync_view():
    # A plain `def` endpoint: FastAPI runs it on anyio's worker threads,
    # not on the event loop's thread.
    return {"on_loop_thread": threading.get_ident() == MAIN_THREAD}


@app.get("/request")
async def request_info(request: Request):
    """What the framework made of the ASGI scope."""
    return {
        "method": request.method,
        "scheme": request.url.scheme,
        "path": request.url.path,
        "raw_path": request.scope.get("raw_path", b"").decode("latin-1"),
        "query": request.url.query,
        "root_path": request.scope.get("root_path"),
        "client": list(request.client) if request.client else None,
        "server": list(request.scope["server"]) if request.scope.get("server") else None,
        "http_version": request.scope.get("http_version"),
        "headers": [[k, v] for k, v in request.headers.items()],
    }


@app.get("/ctx/{rid}")
async def ctx(rid: str):
    before = REQUEST_ID.get()
    REQUEST_ID.set(rid)
    await asyncio.sleep(0)
    return {"before": before, "after": REQUEST_ID.get()}


@app.get("/boom")
async def boom():
    raise RuntimeError("fastapi view failed")


@app.get("/text", response_class=PlainTextResponse)
async def text():
    return "plain text from starlette"


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket):
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="echo" if "echo" in offered else None)
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") is not None:
                if msg["text"] == "close-me":
                    await websocket.close(code=4000, reason="asked to")
                    return
                await websocket.send_text(msg["text"])
            elif msg.get("bytes") is not None:
                await websocket.send_bytes(msg["bytes"])
    except WebSocketDisconnect:
        return
