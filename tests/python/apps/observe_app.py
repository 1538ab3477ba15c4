"""App for tests/observe_python.rs, dispatched on PATH_INFO.

- importing waits while the file named by $OBSERVE_HOLD exists (start-up
  readiness: the test removes it when it has seen /readyz say 503);
- /sleep?s=N sleeps N seconds (a --timeout);
- /leak keeps 512 KiB more per request, up to 256 MiB (memory recycling);
- anything else: 200 "ok".
"""

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
    elif path == "/leak" and len(LEAK) < 512:
        LEAK.append(bytearray(os.urandom(16)) * (512 * 1024 // 16))
    body = b"ok\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [body]
