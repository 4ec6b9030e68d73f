#!/usr/bin/env python3
"""Abuse benchmark (issue 12): the worst UDP amplification factor and the DNS/TCP fd flood.

Starts one `dnsmesh-node` (release build) configured as a public node runs: per-IP limits
applied to loopback (`[limits] limit_loopback = true`), the default RRL, and a soft *and*
hard limit of 1024 open files. It loads a worst-case name (30 TXT values of 2,000 bytes:
the largest answer that still fits one 65535-byte EDNS message), then:

1. amplification — for each query shape (EDNS 65535, DO, QCLASS ANY, qtype ANY, RRSIG,
   no EDNS, NXDOMAIN, apex types…) one source /24 sends a bounded burst of identical
   queries back to back; prints the largest single response / query size and the flood's
   bytes out / bytes in with RRL on. The worst of each is the headline figure.
2. tcp-flood — opens N idle DNS-over-TCP connections from many loopback sources (each
   sends one query every 4 s, as the attack in issue 12 did) and holds them for S seconds,
   while probing from other addresses: UDP queries, new TCP connections, HTTP /health.
   Prints connections the node holds (its open fds), probes answered, node CPU.
   Also times how fast a zero-length and a one-byte frame get closed.

    python3 benches/abuse/abuse.py [--node PATH] [--burst 1000] [--conns 1100] [--secs 20]

Only plain Python 3 (no dnspython). Loopback only; every phase is bounded in count and
time; the node is killed on exit.
"""
import argparse, http.client, json, os, random, resource, select, shutil, socket, struct, subprocess
import sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ZONE = "abuse.test"


def query(name, qtype=16, qclass=1, edns=None, do=False, qid=None):
    """Raw DNS query bytes. edns = advertised UDP size or None (no OPT)."""
    qid = random.randrange(65536) if qid is None else qid
    hdr = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 1 if edns is not None else 0)
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    q += struct.pack(">HH", qtype, qclass)
    if edns is not None:
        q += b"\0" + struct.pack(">HHIH", 41, edns, 0x8000 if do else 0, 0)
    return hdr + q


def start_node(binary, tmp):
    env = dict(os.environ, RUST_LOG="warn", DNSMESH_LIMITS__LIMIT_LOOPBACK="true",
               DNSMESH_AUTH__OPERATOR_TOKEN="op-token")

    def limit_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    p = subprocess.Popen([binary, "--config", os.path.join(REPO, "dnsmesh.toml"), "--zone", ZONE,
                          "--data-dir", os.path.join(tmp, "data"), "--dns-listen", "127.0.0.1:0",
                          "--http-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, env=env, text=True,
                         stderr=open(os.path.join(tmp, "node.log"), "w"),
                         preexec_fn=limit_fds)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"node exited before ready: {p.wait()}")
        if line.startswith("dnsmesh-node ready"):
            break
    parts = dict(x.split("=", 1) for x in line.split() if "=" in x)
    d = parts["dns"].split(",")[0]
    h = parts["http"]
    return p, (d.rsplit(":", 1)[0], int(d.rsplit(":", 1)[1])), (h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]))


def http_req(addr, method, path, body=None, src="127.0.0.2", timeout=5):
    c = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout, source_address=(src, 0))
    try:
        hdrs = {"Authorization": "Bearer op-token", "Content-Type": "application/json"}
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def load_worst_case(haddr):
    rnd = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for i in range(30):  # ~60 KB: fits one 65535-byte EDNS answer
        v = "v=dmp1;t=junk;" + "".join(rnd.choice(alphabet) for _ in range(1986))
        st, body = http_req(haddr, "POST", f"/v1/records/big.{ZONE}", {"value": v, "ttl": 3600})
        if st != 201:
            raise SystemExit(f"loading big.{ZONE} value {i}: HTTP {st} {body[:200]!r}")
    for i in range(5):  # ~1,100 bytes: the largest answer that still fits 1232 bytes
        v = f"v=dmp1;t=junk;{i};" + "".join(rnd.choice(alphabet) for _ in range(190))
        st, body = http_req(haddr, "POST", f"/v1/records/mid.{ZONE}", {"value": v, "ttl": 3600})
        assert st == 201, (st, body)
    st, _ = http_req(haddr, "POST", f"/v1/records/small.{ZONE}", {"value": "v=dmp1;t=x;hello", "ttl": 3600})
    assert st == 201, st


SHAPES = [
    ("TXT mid (~1.1 KB), EDNS 65535", dict(name=f"mid.{ZONE}", edns=65535)),
    ("TXT mid, QCLASS ANY, EDNS 65535", dict(name=f"mid.{ZONE}", qclass=255, edns=65535)),
    ("ANY mid, EDNS 4096 +DO", dict(name=f"mid.{ZONE}", qtype=255, edns=4096, do=True)),
    ("TXT big, EDNS 65535", dict(name=f"big.{ZONE}", edns=65535)),
    ("TXT big, EDNS 65535 +DO", dict(name=f"big.{ZONE}", edns=65535, do=True)),
    ("TXT big, EDNS 4096", dict(name=f"big.{ZONE}", edns=4096)),
    ("TXT big, no EDNS", dict(name=f"big.{ZONE}")),
    ("ANY big, EDNS 65535", dict(name=f"big.{ZONE}", qtype=255, edns=65535)),
    ("TXT big, QCLASS ANY, EDNS 65535", dict(name=f"big.{ZONE}", qclass=255, edns=65535)),
    ("ANY big, QCLASS ANY, EDNS 65535", dict(name=f"big.{ZONE}", qtype=255, qclass=255, edns=65535)),
    ("RRSIG big, EDNS 65535", dict(name=f"big.{ZONE}", qtype=46, edns=65535)),
    ("TXT big, QCLASS CH, EDNS 65535", dict(name=f"big.{ZONE}", qclass=3, edns=65535)),
    ("NXDOMAIN, EDNS 65535", dict(name=f"nope.{ZONE}", edns=65535)),
    ("ANY apex, EDNS 65535", dict(name=ZONE, qtype=255, edns=65535)),
    ("NS apex, EDNS 65535", dict(name=ZONE, qtype=2, edns=65535)),
    ("DNSKEY apex, EDNS 65535 +DO", dict(name=ZONE, qtype=48, edns=65535, do=True)),
]


def amplification(daddr, burst):
    rows = []
    for i, (label, kw) in enumerate(SHAPES):
        name = kw.pop("name")
        q = query(name, **kw)
        kw["name"] = name
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((f"127.0.{10 + i}.1", 0))  # a fresh /24 per shape: RRL state is per /24
        s.setblocking(False)
        sent = out = got = biggest = 0
        t_end = time.monotonic() + 10
        while sent < burst and time.monotonic() < t_end:
            try:
                s.sendto(q, daddr)
                sent += 1
            except BlockingIOError:
                pass
            while True:
                try:
                    r = s.recv(70000)
                except BlockingIOError:
                    break
                got += 1; out += len(r); biggest = max(biggest, len(r))
        drain = time.monotonic() + 1.0
        while time.monotonic() < drain:
            if select.select([s], [], [], 0.1)[0]:
                try:
                    r = s.recv(70000)
                    got += 1; out += len(r); biggest = max(biggest, len(r))
                except BlockingIOError:
                    pass
        s.close()
        rows.append((label, len(q), biggest, sent, got, out, biggest / len(q), out / (sent * len(q))))
    print(f"\n== UDP amplification ({burst} identical queries back to back per shape, RRL on, limit_loopback) ==")
    print(f"{'shape':36} {'query B':>7} {'max resp B':>10} {'single x':>8} {'answered':>9} {'flood out/in':>12}")
    for label, ql, big, sent, got, out, single, flood in rows:
        print(f"{label:36} {ql:7d} {big:10d} {single:8.1f} {got:5d}/{sent:<4d} {flood:12.2f}")
    w1 = max(rows, key=lambda r: r[6]); w2 = max(rows, key=lambda r: r[7])
    print(f"worst single response: {w1[6]:.1f}x ({w1[0]}); worst flood bytes out/in: {w2[7]:.2f}x ({w2[0]})")
    return w1[6], w2[7]


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_query(daddr, src, name, timeout=2.0):
    try:
        c = socket.create_connection(daddr, timeout=timeout, source_address=(src, 0))
        q = query(name)
        c.sendall(struct.pack(">H", len(q)) + q)
        hdr = b""
        while len(hdr) < 2:
            b = c.recv(2 - len(hdr))
            if not b:
                return False
            hdr += b
        c.close()
        return True
    except OSError:
        return False


def udp_query(daddr, src, name, timeout=1.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0)); s.settimeout(timeout)
    try:
        s.sendto(query(name), daddr)
        s.recv(4096)
        return True
    except OSError:
        return False
    finally:
        s.close()


def health(haddr, src):
    try:
        st, _ = http_req(haddr, "GET", "/health", src=src, timeout=2)
        return st == 200
    except OSError:
        return False


def close_time(daddr, payload):
    """Seconds until the node closes a connection that sent `payload` (None = not within 5 s)."""
    c = socket.create_connection(daddr, timeout=5, source_address=("127.0.6.1", 0))
    t0 = time.monotonic()
    c.sendall(payload)
    try:
        while True:
            b = c.recv(100)
            if not b:
                return time.monotonic() - t0
    except (socket.timeout, ConnectionResetError):
        return time.monotonic() - t0 if time.monotonic() - t0 < 4.9 else None
    finally:
        c.close()


def tcp_flood(pid, daddr, haddr, conns, secs):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, conns + 256)), hard))
    print(f"\n== DNS/TCP fd flood: {conns} idle connections from 50 sources, held {secs}s; node fd limit 1024 ==")
    zero, one = close_time(daddr, b"\0\0"), close_time(daddr, b"\0\1\0")
    fmt = lambda t: "not closed within 5 s" if t is None else f"{t*1000:.0f} ms"
    print(f"zero-length frame closed after {fmt(zero)}; one-byte frame closed after {fmt(one)}")
    fds0, cpu0, t0 = proc_fds(pid), proc_cpu(pid), time.monotonic()
    socks, refused = [], 0
    for i in range(conns):
        try:
            c = socket.create_connection(daddr, timeout=1, source_address=(f"127.0.{100 + i % 50}.1", 0))
            c.setblocking(False)
            socks.append(c)
        except OSError:
            refused += 1
    q = query(f"small.{ZONE}")
    frame = struct.pack(">H", len(q)) + q
    probes = {"udp": [0, 0], "tcp": [0, 0], "health": [0, 0]}
    max_fds, last_ping, end = 0, 0.0, time.monotonic() + secs
    while time.monotonic() < end:
        if time.monotonic() - last_ping >= 4:
            last_ping = time.monotonic()
            for c in socks:
                try:
                    c.send(frame)
                except OSError:
                    pass
        for c in socks:  # drain answers so the node's writes never block on us
            try:
                c.recv(65536)
            except (BlockingIOError, OSError):
                pass
        for kind, fn in (("udp", lambda: udp_query(daddr, "127.0.7.1", f"small.{ZONE}")),
                         ("tcp", lambda: tcp_query(daddr, "127.0.8.1", f"small.{ZONE}")),
                         ("health", lambda: health(haddr, "127.0.9.1"))):
            probes[kind][1] += 1
            probes[kind][0] += 1 if fn() else 0
        max_fds = max(max_fds, proc_fds(pid))
        time.sleep(0.2)
    cpu = (proc_cpu(pid) - cpu0) / (time.monotonic() - t0)
    alive = 0
    for c in socks:
        try:
            b = c.recv(65536)
            alive += 1 if b else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        c.close()
    print(f"node fds: {fds0} before, {max_fds} at most during the flood (limit 1024)")
    print(f"flood connections: {len(socks)} opened, {refused} refused at connect, {alive} still open at the end")
    for k, (ok, n) in probes.items():
        print(f"probe {k:6}: {ok}/{n} answered during the flood")
    print(f"node CPU during the flood: {cpu*100:.0f} % of one core")
    return probes


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def random_label(n=12):
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


def flood_udp_names(daddr, end):
    """Random names (NXDOMAIN) and random qtypes from 200 source /24s: RRL state grows per prefix."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(200)]
    for i, s in enumerate(socks):
        s.bind((f"127.{1 + i // 250}.{i % 250}.9", 0)); s.setblocking(False)
    sent = 0
    while time.monotonic() < end:
        for s in socks:
            try:
                s.sendto(query(f"{random_label()}.{ZONE}", qtype=random.choice([1, 16, 28, 255, 46])), daddr)
                sent += 1
            except OSError:
                pass
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
    for s in socks:
        s.close()
    return f"{sent} queries"


def flood_update_junk(daddr, end):
    """Unsigned UPDATEs (opcode 5) adding junk TXT at random names: none may be stored."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.40.1", 0)); s.setblocking(False)
    enc = lambda n: b"".join(bytes([len(l)]) + l.encode() for l in n.split(".") if l) + b"\0"
    sent = 0
    while time.monotonic() < end:
        name = f"claim-{random.randrange(100)}.mb-{random_label(12)}.{ZONE}"
        rdata = bytes([200]) + random_label(200).encode()
        upd = struct.pack(">HHHHHH", random.randrange(65536), 5 << 11, 1, 0, 1, 0)
        upd += enc(ZONE) + struct.pack(">HH", 6, 1)
        upd += enc(name) + struct.pack(">HHIH", 16, 1, 86400, len(rdata)) + rdata
        try:
            s.sendto(upd, daddr); sent += 1
        except OSError:
            pass
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
    s.close()
    return f"{sent} UPDATEs"


def flood_http_junk(haddr, end):
    """Made-up methods and random paths over keep-alive connections from one client."""
    sent = statuses = 0
    seen = {}
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection(haddr[0], haddr[1], timeout=2, source_address=("127.0.41.1", 0))
            for _ in range(100):
                if time.monotonic() >= end:
                    break
                c.request(random_label(20).upper(), "/" + random_label(40))
                r = c.getresponse(); r.read(); sent += 1
                seen[r.status] = seen.get(r.status, 0) + 1
            c.close()
        except (OSError, http.client.HTTPException):
            pass
    return f"{sent} requests, statuses {dict(sorted(seen.items()))}"


def flood_tcp_churn(daddr, end):
    """New DNS/TCP connections as fast as possible from 50 sources, each one query, closed."""
    n = 0
    while time.monotonic() < end:
        n += 1 if tcp_query(daddr, f"127.0.{150 + n % 50}.1", f"{random_label()}.{ZONE}", timeout=1) else 0
    return f"{n} connections answered"


def floods(pid, daddr, haddr, data_dir, secs):
    print(f"\n== unauthenticated floods, {secs} s each: node RSS and data-dir growth ==")
    print(f"{'flood':34} {'RSS KiB':>16} {'data dir KiB':>18}  offered")
    for label, fn in (("UDP random names/types, 200 /24s", lambda e: flood_udp_names(daddr, e)),
                      ("unsigned UPDATE junk claims", lambda e: flood_update_junk(daddr, e)),
                      ("HTTP made-up methods/paths", lambda e: flood_http_junk(haddr, e)),
                      ("DNS/TCP connection churn", lambda e: flood_tcp_churn(daddr, e))):
        r0, d0 = rss_kib(pid), dir_bytes(data_dir)
        what = fn(time.monotonic() + secs)
        time.sleep(2)  # let the store's group commit and sweep settle before measuring
        r1, d1 = rss_kib(pid), dir_bytes(data_dir)
        print(f"{label:34} {r0:7d} -> {r1 - r0:+7d} {d0 // 1024:8d} -> {(d1 - d0) // 1024:+8d}  {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")),
                                                   "release", "dnsmesh-node"))
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=1100)
    ap.add_argument("--secs", type=int, default=20)
    ap.add_argument("--flood-secs", type=int, default=60, help="length of each unauthenticated flood (0 = skip)")
    a = ap.parse_args()
    if not os.path.exists(a.node):
        subprocess.run(["cargo", "build", "--release", "--bin", "dnsmesh-node"], cwd=REPO, check=True)
    tmp = tempfile.mkdtemp(prefix="dnsmesh-abuse-")
    p = None
    try:
        p, daddr, haddr = start_node(a.node, tmp)
        load_worst_case(haddr)
        amplification(daddr, a.burst)
        tcp_flood(p.pid, daddr, haddr, a.conns, a.secs)
        if a.flood_secs > 0:
            floods(p.pid, daddr, haddr, os.path.join(tmp, "data"), a.flood_secs)
        print(f"\nnode still running: {p.poll() is None}")
    finally:
        if p:
            p.kill(); p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
