#!/usr/bin/env python3
"""Shutdown stress (issue #14): cycles of start `ords-guard demo`, a little traffic
(keep-alive and pipelined requests left open, an idle proxy and admin connection), SIGTERM.
Counts the exits that took over 3 s, that logged pingora's accept errors, or that the exit
watchdog had to end (grace + 5 s). Loopback only; each cycle is bounded to 25 s.

    bench/shutdown_stress.py target/debug/ords-guard 80
"""
import os, shutil, socket, subprocess, sys, tempfile, time
binary = sys.argv[1] if len(sys.argv) > 1 else "target/debug/ords-guard"
cycles = int(sys.argv[2]) if len(sys.argv) > 2 else 40
def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
stats = {"ok": 0, "slow": 0, "accept_errors": 0, "watchdog": 0}
worst = 0.0
for c in range(cycles):
    d = tempfile.mkdtemp()
    p, a, b = port(), port(), port()
    log = open(os.path.join(d, "out"), "w")
    child = subprocess.Popen([binary, "--log-format", "json", "demo", "--listen", f"127.0.0.1:{p}",
        "--admin-listen", f"127.0.0.1:{a}", "--backend-listen", f"127.0.0.1:{b}", "--dir", os.path.join(d, "demo")],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", a), timeout=1)
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            if b" 200 " in s.recv(100): s.close(); break
            s.close()
        except OSError: pass
        time.sleep(0.02)
    keep = []
    for i in range(6):
        s = socket.create_connection(("127.0.0.1", p), timeout=2)
        s.sendall(b"GET /ords/hr/example/employees/ HTTP/1.1\r\nHost: a\r\n\r\nGET /ords/hr/x HTTP/1.1\r\nHost: a\r\n\r\n")
        try: s.recv(4096)
        except OSError: pass
        keep.append(s)
    keep.append(socket.create_connection(("127.0.0.1", p)))
    keep.append(socket.create_connection(("127.0.0.1", a)))
    t0 = time.time()
    child.terminate()
    try:
        child.wait(timeout=25)
    except subprocess.TimeoutExpired:
        child.kill(); child.wait()
    el = time.time() - t0
    worst = max(worst, el)
    for s in keep: s.close()
    log.close()
    text = open(os.path.join(d, "out")).read()
    shutil.rmtree(d, ignore_errors=True)
    if "Accept() failed" in text: stats["accept_errors"] += 1
    if "did not stop in time" in text: stats["watchdog"] += 1
    if el > 3: stats["slow"] += 1
    else: stats["ok"] += 1
print(binary, cycles, stats, f"worst {worst:.2f}s")
