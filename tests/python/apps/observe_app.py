"""App for tests/observe_python.rs, dispatched on PATH_INFO.

- importing waits while the file named by $OBSERVE_HOLD exists (start-up
  readiness: the test removes it when it has seen /readyz say 503);
- /sleep?s=N sleeps N seconds (a --timeout);
- /leak keeps 512 KiB more per request, up to 256 MiB (memory recycling);
- /meta answers the request id and queue time keys of the environ (JSON);
- /boom raises (an error-log line about the request);
- anything else: 200 "ok".
"""

import json
import os
import time

_hold = os.environ.get("OBSERVE_HOLD")
if _hold:
    while os.path.exists(_hold):
        time.sleep(0.02)

LEAK = []


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/sleep":
        secs = float(environ.get("QUERY_STRING", "s=1").split("=", 1)[1])
        time.sleep(secs)
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/meta":
        keys = ("ferricorn.request_id", "ferricorn.request_start", "ferricorn.queue_time")
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    elif path == "/leak" and len(LEAK) < 512:
        LEAK.append(bytearray(os.urandom(16)) * (512 * 1024 // 16))
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [body]
