#!/usr/bin/env python3
"""watch_latency.py — send -> displayed latency of `dnsmesh recv --watch`, stream vs polling.

    benches/load/watch_latency.py [N]          (default 100 messages)

Starts our node (release build, the shipped dnsmesh.toml) on loopback, sets up two users of
our CLI (alice, bob; HTTP bearer writes), copies bob's config home to a second home
"bob-poll" with `watch_stream: false`, and runs `recv --watch --json` in both homes at the
default interval (5 s): the first is woken by the node's /v1/watch stream, the second
polls. Alice then sends N messages to bob, one every GAP seconds (default 0.5), each by
one `dnsmesh send` process. For each message and each receiver it takes the time from the
moment `send` returned (the message's records acknowledged by the node) to the moment the
receiver printed it, and reports p50/p99/max (and the same from the start of the `send`
process). Both receivers see the same sends, so the two modes are compared in one run.
Loopback only; every process it starts is stopped by PID at exit.
Environment: GAP, INTERVAL (default 5, the CLI's default), KEEP=1.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ZONE = "mesh.test"
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
GAP = float(os.environ.get("GAP", "0.5"))
INTERVAL = os.environ.get("INTERVAL", "5")
procs = []


def build():
    out = subprocess.run(
        ["cargo", "build", "--release", "--bin", "dnsmesh-node", "--bin", "dnsmesh",
         "--message-format=json"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    bins = {}
    for line in out.stdout.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable"):
            bins[m["target"]["name"]] = m["executable"]
    return bins["dnsmesh-node"], bins["dnsmesh"]


def cleanup(*_):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    node_bin, cli = build()
    work = tempfile.mkdtemp(prefix="dnsmesh-watchlat.")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        run(node_bin, cli, work)
    finally:
        cleanup()
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * p))] if xs else float("nan")


def run(node_bin, cli, work):
    env = dict(os.environ, RUST_LOG="warn")
    node = subprocess.Popen(
        [node_bin, "--config", f"{ROOT}/dnsmesh.toml", "--zone", ZONE, "--data-dir",
         f"{work}/node", "--dns-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    procs.append(node)
    ready = ""
    deadline = time.time() + 60
    while not ready.startswith("dnsmesh-node ready"):
        ready = node.stdout.readline()
        if not ready or time.time() > deadline:
            sys.exit("node did not start")
    threading.Thread(target=lambda: [None for _ in node.stdout], daemon=True).start()
    parts = dict(p.split("=", 1) for p in ready.split() if "=" in p)
    dns, http = parts["dns"].split(",")[0], parts["http"]
    url = f"http://{http}"

    def dm(home, *args, check=True):
        e = dict(os.environ, DMP_PASSPHRASE=f"pass of {home}")
        e.pop("DMP_PROVIDER_DNS_PORT", None)
        r = subprocess.run([cli, "--config-home", home, *args], capture_output=True, text=True,
                           env=e)
        if check and r.returncode != 0:
            sys.exit(f"dnsmesh {args}: {r.stdout}\n{r.stderr}")
        return r

    users = {}
    for name in ("alice", "bob"):
        home = f"{work}/{name}"
        uname = f"{name}{os.getpid()}"
        dm(home, "init", uname, "--domain", ZONE, "--endpoint", url, "--dns-resolvers", dns,
           "--no-default-resolvers")
        dm(home, "register", "--node", http, "--scheme", "http")
        dm(home, "identity", "publish")
        dm(home, "identity", "refresh-prekeys")
        users[name] = (home, uname)
    (ahome, _), (bhome, bname) = users["alice"], users["bob"]
    dm(ahome, "identity", "fetch", f"{bname}@{ZONE}", "--add")
    dm(bhome, "identity", "fetch", f"{users['alice'][1]}@{ZONE}", "--add")
    # The polling receiver: the same identity and state (bob's passphrase), stream off.
    phome = f"{work}/bob-poll"
    shutil.copytree(bhome, phome)
    with open(f"{phome}/config.yaml", "a") as f:
        f.write("watch_stream: false\n")

    seen = {"stream": {}, "poll": {}}
    status = {"stream": "", "poll": ""}

    def watcher(mode, home):
        e = dict(os.environ, DMP_PASSPHRASE=f"pass of {bhome}")
        e.pop("DMP_PROVIDER_DNS_PORT", None)
        p = subprocess.Popen([cli, "--config-home", home, "recv", "--watch", "--json",
                              "--interval", INTERVAL], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=e)
        procs.append(p)

        def out():
            for line in p.stdout:
                t = time.monotonic()
                try:
                    m = json.loads(line)
                except ValueError:
                    continue
                if m.get("kind") == "message":
                    seen[mode].setdefault(m["text"], t)

        def err():
            while True:
                c = p.stderr.read(1)
                if not c:
                    break
                status[mode] = (status[mode] + c)[-300:]

        threading.Thread(target=out, daemon=True).start()
        threading.Thread(target=err, daemon=True).start()

    watcher("stream", bhome)
    watcher("poll", phome)
    deadline = time.time() + 60
    while "stream: live" not in status["stream"] or "(polling)" not in status["poll"]:
        if time.time() > deadline:
            sys.exit(f"receivers not up: {status}")
        time.sleep(0.05)

    sends = {}
    t_start = time.time()
    for i in range(N):
        text = f"latency probe {i} {os.getpid()}"
        t0 = time.monotonic()
        dm(ahome, "send", f"{bname}@{ZONE}", text)
        t1 = time.monotonic()
        sends[text] = (t0, t1)
        time.sleep(GAP)
    deadline = time.time() + 3 * float(INTERVAL) + 30
    while time.time() < deadline and any(len(seen[m]) < N for m in seen):
        time.sleep(0.1)

    print(f"## recv --watch latency, {N} messages, {time.strftime('%Y-%m-%d', time.gmtime())}, "
          f"{os.cpu_count()} CPUs; one send every {GAP} s (took {time.time() - t_start:.0f} s); "
          f"poll interval {INTERVAL} s")
    print(f"{'mode':<8}{'got':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
          f"{'p50 from send start':>22}{'p99 from send start':>22}")
    for mode in ("stream", "poll"):
        after_ack = [1000 * (seen[mode][t] - s[1]) for t, s in sends.items() if t in seen[mode]]
        from_start = [1000 * (seen[mode][t] - s[0]) for t, s in sends.items() if t in seen[mode]]
        print(f"{mode:<8}{len(after_ack):>6}{pct(after_ack, .5):>10.0f}{pct(after_ack, .99):>10.0f}"
              f"{max(after_ack, default=float('nan')):>10.0f}{pct(from_start, .5):>22.0f}"
              f"{pct(from_start, .99):>22.0f}")
    send_ms = [1000 * (s[1] - s[0]) for s in sends.values()]
    print(f"dnsmesh send process (start -> exit): p50 {pct(send_ms, .5):.0f} ms, "
          f"p99 {pct(send_ms, .99):.0f} ms")
    print("latency = receiver printed the message - `send` returned (negative: printed before"
          " the sender's process had exited, the stream named the manifest as it landed)")


if __name__ == "__main__":
    main()
