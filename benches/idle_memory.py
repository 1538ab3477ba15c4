#!/usr/bin/env python3
"""benches/idle_memory.py: what an idle connection costs one ferricorn worker.

Starts `ferricorn --workers 1 --worker-connections N+16 hello` on a free
loopback port, reads the worker's VmRSS (/proc/PID/status), opens N
connections and leaves them idle, reads VmRSS again once the worker holds
them all (counted from its /proc/PID/fd), and prints the difference per
connection. Two kinds of idle connection, each on a fresh server:

  silent      connected, never sent a byte
  keepalive   sent one `GET /` (keep-alive), read the answer, then idle

The second RSS is read after the worker's once-a-second timer has run at
least twice with every connection idle (the worker gives an idle
connection's buffers back there).

Usage: benches/idle_memory.py [N] [BIN]   (defaults: 10000, target/release/ferricorn)
Raises this process's RLIMIT_NOFILE (the server inherits it); needs N+100
descriptors under the hard limit. Every process it starts is killed by pid.
"""
import os
import resource
import signal
import socket
import subprocess
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "target/release/ferricorn")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(p))
    return out


def wait(what, cond, timeout=60):
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def measure(kind):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = subprocess.Popen(
        [BIN, "--bind", f"127.0.0.1:{port}", "--workers", "1", "--backlog", "4096",
         "--worker-connections", str(N + 16), "--keep-alive", "600",
         "--header-timeout", "600", "hello"],
        stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    conns = []
    try:
        def up():
            try:
                c = socket.create_connection(("127.0.0.1", port), timeout=1)
                c.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                ok = c.recv(100).startswith(b"HTTP/1.1 200")
                c.close()
                return ok
            except OSError:
                return False
        wait("the server", up)
        worker = children(srv.pid)[0]
        base_fds = fds(worker)
        rss0 = rss_kib(worker)
        for _ in range(N):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            conns.append(c)
            if kind == "keepalive":
                c.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        if kind == "keepalive":
            for c in conns:
                got = b""
                while not got.endswith(b"Hello, World!"):
                    got += c.recv(4096)
        wait("the worker to hold every connection", lambda: fds(worker) >= base_fds + N)
        # Two timer ticks with everything idle.
        time.sleep(2.5)
        rss1 = rss_kib(worker)
        print(f"{kind:>9}: {N} idle connections on one worker: VmRSS {rss0} -> {rss1} KiB, "
              f"{(rss1 - rss0) * 1024 / N:.0f} bytes per connection")
    finally:
        for c in conns:
            c.close()
        # The master's process group holds its worker too.
        os.killpg(srv.pid, signal.SIGKILL)
        srv.wait()


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, N + 1024)
    if want < N + 100:
        sys.exit(f"RLIMIT_NOFILE hard limit {hard} is too low for {N} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    for kind in ("silent", "keepalive"):
        measure(kind)


if __name__ == "__main__":
    main()
