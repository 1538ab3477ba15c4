"""Start-up and memory of the pip-installed ferricorn next to gunicorn.

    VENV/bin/python benches/pip_start.py VENV PROJECT [WORKERS] [ROUNDS]

VENV has both commands installed (pip install ferricorn gunicorn django);
PROJECT holds manage.py and the package `app` (django-admin startproject
app .). Each round starts each command in turn, empty environment, on a free
port: `CMD --bind 127.0.0.1:PORT --workers WORKERS app.wsgi`, and reports

- first 200: time from exec to the first 200 answer to GET /;
- master RSS and mean worker RSS (ps -o rss) once every worker has booted
  (the master has WORKERS children and the CPU they use has stopped growing);
- boot CPU: user+system time of all workers by then (/proc/PID/stat).

Medians over the rounds. The processes are killed by process group.
"""

import os
import signal
import socket
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
            return data.split(b" ", 2)[1] == b"200"
    except (OSError, IndexError):
        return False


def children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(x) for x in out.stdout.split()]


def rss_kib(pid):
    return int(subprocess.check_output(["ps", "-o", "rss=", "-p", str(pid)]))


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def one(venv, project, cmd, workers):
    port = free_port()
    argv = [os.path.join(venv, "bin", cmd), "--bind", "127.0.0.1:%d" % port,
            "--workers", str(workers), "app.wsgi"]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=project, env={"PATH": "/usr/bin:/bin"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        while not ok(port):
            if p.poll() is not None:
                raise SystemExit("%s exited with %s" % (cmd, p.returncode))
            time.sleep(0.002)
        first = time.monotonic() - t0
        # Booted: all workers there and their CPU no longer growing.
        last = -1.0
        while True:
            time.sleep(0.25)
            ws = children(p.pid)
            used = sum(cpu_s(w) for w in ws)
            if len(ws) == workers and used == last:
                break
            last = used
        return first, rss_kib(p.pid), sum(rss_kib(w) for w in ws) / len(ws), used
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def main():
    venv, project = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 9
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    results = {"ferricorn": [], "gunicorn": []}
    for _ in range(rounds):
        for cmd in results:
            results[cmd].append(one(venv, project, cmd, workers))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    for cmd, rs in results.items():
        print("%-9s workers=%d first 200 %.2f s (%.2f-%.2f)  master RSS %.1f MB  worker RSS %.1f MB  boot CPU %.2f s"
              % (cmd, workers, med([r[0] for r in rs]), min(r[0] for r in rs), max(r[0] for r in rs),
                 med([r[1] for r in rs]) / 1024, med([r[2] for r in rs]) / 1024, med([r[3] for r in rs])))


if __name__ == "__main__":
    main()
