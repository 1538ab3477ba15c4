import threading
import zlib

from django.http import HttpResponse, JsonResponse
from django.template import engines
from django.views.decorators.csrf import csrf_exempt

FORM = engines["django"].from_string(
    '<form method="post">{% csrf_token %}<input name="name"></form>'
)
PAGE = engines["django"].from_string(
    "{% load static %}<!doctype html><title>ferricorn</title>"
    '<link rel="stylesheet" href="{% static \'ferricorn/app.css\' %}">'
    "<p>rendered by Django for {{ remote_addr }}</p>"
)


def index(request):
    return JsonResponse(
        {
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META.get("SCRIPT_NAME"),
            "host": request.get_host(),
            "absolute": request.build_absolute_uri(),
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
            "secure": request.is_secure(),
        }
    )


def page(request):
    return HttpResponse(PAGE.render({"remote_addr": request.META.get("REMOTE_ADDR")}, request))


def hello(request):
    """Benchmark view (benches/python.sh): through the middleware, no template."""
    return HttpResponse(b"Hello, World!", content_type="text/plain")


def form(request):
    if request.method == "POST":
        return HttpResponse("hello %s" % request.POST.get("name", ""), content_type="text/plain")
    return HttpResponse(FORM.render({}, request))


@csrf_exempt
def upload(request):
    f = request.FILES["file"]
    crc = 0
    size = 0
    for chunk in f.chunks():
        crc = zlib.crc32(chunk, crc)
        size += len(chunk)
    return JsonResponse(
        {
            "name": f.name,
            "size": size,
            "crc32": crc,
            "class": type(f).__name__,
            "on_disk": hasattr(f, "temporary_file_path"),
            "field": request.POST.get("note"),
        }
    )


def boom(request):
    raise RuntimeError("django view failed")


# A barrier in the database: each participant takes a number from a
# sequence (nextval is not transactional: every session sees it at once)
# and waits until the whole group of N it belongs to has arrived, 60 s at
# most. Monotonic, so no participant can miss the release. The sequence is
# created under an advisory lock (concurrent CREATE ... IF NOT EXISTS can
# fail). Only an int is formatted in.
BARRIER_SEQUENCE = """DO $$
BEGIN
  PERFORM pg_advisory_xact_lock(7243);
  CREATE SEQUENCE IF NOT EXISTS ferricorn_barrier;
END $$"""
BARRIER = """DO $$
DECLARE
  me bigint := nextval('ferricorn_barrier');
  deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
  WHILE (SELECT last_value FROM ferricorn_barrier) < ((me + %(n)d - 1) / %(n)d) * %(n)d
        AND clock_timestamp() < deadline LOOP
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$"""


def db(request):
    """One query on this thread's connection (tests/threads_python.rs,
    benches/threads.sh); ?sleep=S makes the database take S seconds, and
    ?together=N waits in the database until N such requests' queries are
    there at once (their proof of running in parallel, whatever the
    machine's speed)."""
    from django.db import connection

    together = int(request.GET.get("together", "0"))
    with connection.cursor() as c:
        if together:
            c.execute(BARRIER_SEQUENCE)
            c.execute(BARRIER % {"n": together})
        c.execute(
            "SELECT pg_backend_pid(), pg_sleep(%s)", [float(request.GET.get("sleep", "0"))]
        )
        (backend,) = c.fetchone()[:1]
    return JsonResponse({"backend_pid": backend, "thread": threading.get_ident()})


# Async views: under djangoproject.asgi they run on the server's event loop
# (Django still runs MiddlewareMixin's process_request/process_response hooks
# through sync_to_async, its own thread hop, the same on every server); under
# WSGI Django runs them through async_to_sync.


async def async_hello(request):
    """Benchmark view (benches/asgi.sh): the async twin of hello()."""
    return HttpResponse(b"Hello, World!", content_type="text/plain")


async def async_info(request):
    import asyncio

    await asyncio.sleep(0)  # a real suspension on the server's loop
    return JsonResponse(
        {
            "path": request.path,
            "method": request.method,
            "query": request.GET.dict(),
            "host": request.get_host(),
            "scheme": request.scheme,
            "remote_addr": request.META.get("REMOTE_ADDR"),
            "script_name": request.META.get("SCRIPT_NAME"),
            "in_task": asyncio.current_task() is not None,
            "on_main_thread": threading.current_thread() is threading.main_thread(),
        }
    )


@csrf_exempt
async def async_echo(request):
    body = request.body
    return JsonResponse(
        {"method": request.method, "size": len(body), "crc32": zlib.crc32(body)}
    )


async def async_db(request):
    """The ORM from an async view: the query runs through sync_to_async on a
    thread (Django forbids database calls on the event loop's thread);
    ?sleep=S makes the database take S seconds."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    def query(secs):
        with connection.cursor() as c:
            c.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [secs])
            (backend,) = c.fetchone()[:1]
        return backend, threading.get_ident()

    backend, thread = await sync_to_async(query)(float(request.GET.get("sleep", "0")))
    return JsonResponse(
        {
            "backend_pid": backend,
            "query_thread": thread,
            "loop_thread": threading.get_ident(),
        }
    )
