# ferricorn's ASGI helpers: run once per worker (src/python/asgi/mod.rs).
# The per-request path is in Rust; what is here runs per worker (loop,
# lifespan) or only for a request that waits on a real future (_resume).
import asyncio
import inspect
import traceback


def is_asgi(app):
    """An `async def` callable, or an object whose `__call__` is one."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(type(app), "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


def new_loop(kind):
    """(loop, name) for --asgi-loop KIND; raises RuntimeError with one line."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError as e:
            if kind == "uvloop":
                raise RuntimeError(
                    "--asgi-loop uvloop: uvloop cannot be imported (%s); install it "
                    "in the app's environment or use --asgi-loop asyncio" % e
                ) from None
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.new_event_loop(), "asyncio"


async def run_app(coro, finished):
    """A request's coroutine as a task; `finished` (Rust) is told how it
    ended. Nothing escapes but what must stop the worker, so no task ends
    with an exception nobody retrieves."""
    try:
        await coro
    except BaseException as e:
        finished(e)
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
    else:
        finished(None)


def _format(e):
    return "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()


class Lifespan:
    """The ASGI lifespan protocol, as uvicorn's LifespanOn runs it."""

    def __init__(self, app, state, mode):
        self.app = app
        self.state = state
        self.mode = mode
        self.unsupported = False
        self.failed = None
        self.error = None
        self.task = None

    async def startup(self):
        """(level, message): level "error" stops the worker, "info" and
        "" (nothing to say) go on."""
        self.queue = asyncio.Queue()
        self.startup_done = asyncio.Event()
        self.shutdown_done = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.queue.put({"type": "lifespan.startup"})
        await self.startup_done.wait()
        if self.failed is not None:
            return ("error", "ASGI lifespan startup failed: %s" % (self.failed or "(no message)"))
        if self.error is not None:
            if self.mode == "auto":
                self.unsupported = True
                return ("info", "ASGI 'lifespan' protocol appears unsupported by the app "
                                "(it raised on the lifespan scope; --asgi-lifespan on makes "
                                "this an error): %s" % self.error.splitlines()[-1])
            return ("error", "ASGI lifespan startup raised:\n%s" % self.error)
        return ("", "")

    async def main(self):
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as e:
            self.error = _format(e)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self.startup_done.set()
            self.shutdown_done.set()

    async def receive(self):
        return await self.queue.get()

    async def send(self, message):
        t = message["type"]
        if t == "lifespan.startup.complete":
            self.startup_done.set()
        elif t == "lifespan.startup.failed":
            self.failed = message.get("message", "")
            self.startup_done.set()
        elif t == "lifespan.shutdown.complete":
            self.shutdown_done.set()
        elif t == "lifespan.shutdown.failed":
            self.failed = message.get("message", "")
            self.shutdown_done.set()
        else:
            raise RuntimeError("unexpected ASGI lifespan message %r" % (t,))

    async def shutdown(self, timeout):
        """(level, message) as for startup."""
        if self.task is None or self.unsupported or self.task.done():
            return ("", "")
        self.failed = None
        self.error = None
        await self.queue.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.shutdown_done.wait(), timeout)
        except asyncio.TimeoutError:
            return ("error", "ASGI lifespan shutdown did not finish in %s s" % timeout)
        if self.failed is not None:
            return ("error", "ASGI lifespan shutdown failed: %s" % (self.failed or "(no message)"))
        if self.error is not None:
            return ("error", "ASGI lifespan shutdown raised:\n%s" % self.error)
        return ("", "")


def wait_tasks(loop, timeout, keep):
    """A graceful stop: let the tasks still running (work an app does after
    its response, such as Starlette's BackgroundTasks) finish, for up to
    `timeout` seconds; `keep` (the lifespan's task) is not waited for.
    Returns how many are left."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done() and t is not keep]
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=timeout))
    return sum(1 for t in tasks if not t.done())


def cancel_all(loop):
    """Cancel what is left (tasks of requests whose clients are gone) and
    let them unwind."""
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
