#!/usr/bin/env python3
"""Cluster convergence benchmark: our 3-node cluster vs the reference's, same sync interval.

Starts three dnsmesh-node processes (127.0.0.41-43) peered with each other and three
reference nodes (../shared/interop/ref-cluster.sh, 127.0.0.51-53), writes N records one at a
time to the first node of each cluster over HTTP, and measures how long until every node
answers the record over DNS. Prints p50/p99 per cluster and the ratio.

    python3 benches/cluster/convergence.py [--n 20] [--interval 2] [--node target/release/dnsmesh-node]

Needs the reference venv (REF_VENV or ~/.cache/dnsmesh-reference-venv) for dnspython and
the reference node. Loopback only; stops everything it started.
"""
import argparse, json, os, socket, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
VENV = os.environ.get("REF_VENV", os.path.expanduser("~/.cache/dnsmesh-reference-venv"))
sys.path.insert(0, next(p for p in (os.path.join(VENV, "lib", d, "site-packages") for d in os.listdir(os.path.join(VENV, "lib")))))
import dns.message, dns.query  # noqa: E402  (from the reference venv)


def free_port(ip):
    s = socket.socket(); s.bind((ip, 0)); p = s.getsockname()[1]; s.close(); return p


def txt(ip, port, name):
    try:
        r = dns.query.udp(dns.message.make_query(name, "TXT"), ip, port=port, timeout=0.5)
        return [b"".join(rd.strings).decode() for rr in r.answer for rd in rr]
    except Exception:
        return []


def post(url, token, name, value):
    req = urllib.request.Request(f"{url}/v1/records/{name}", data=json.dumps({"value": value, "ttl": 3600}).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 201, r.status


def measure(label, nodes, write_url, token, zone, n):
    times = []
    for i in range(n):
        name = f"conv-{label}-{i}-{time.time_ns()}.{zone}"
        t0 = time.monotonic()
        post(write_url, token, name, f"v{i}")
        pending = set(range(len(nodes)))
        while pending and time.monotonic() - t0 < 60:
            for j in list(pending):
                if txt(nodes[j][0], nodes[j][1], name) == [f"v{i}"]:
                    pending.discard(j)
            if pending:
                time.sleep(0.01)
        times.append(time.monotonic() - t0 if not pending else float("inf"))
    times.sort()
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return pick(0.5), pick(0.99)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--interval", type=int, default=2)
    ap.add_argument("--node", default=os.path.join(REPO, "target", "release", "dnsmesh-node"))
    a = ap.parse_args()
    zone = "conv.test"
    tmp = tempfile.mkdtemp(prefix="dnsmesh-conv-")
    procs = []
    ours = []
    try:
        ips = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
        hports = [free_port(ip) for ip in ips]
        urls = [f"http://{ip}:{p}" for ip, p in zip(ips, hports)]
        for i, ip in enumerate(ips):
            env = dict(os.environ, DNSMESH_AUTH__OPERATOR_TOKEN="op", DNSMESH_CLUSTER__SYNC_TOKEN="s",
                       DNSMESH_CLUSTER__PEERS=",".join(u for j, u in enumerate(urls) if j != i),
                       DNSMESH_CLUSTER__SYNC_INTERVAL_SECS=str(a.interval), RUST_LOG="warn")
            p = subprocess.Popen([a.node, "--config", os.path.join(REPO, "dnsmesh.toml"), "--zone", zone,
                                  "--data-dir", os.path.join(tmp, f"n{i}"), "--dns-listen", f"{ip}:0",
                                  "--http-listen", f"{ip}:{hports[i]}"], stdout=subprocess.PIPE, env=env, text=True)
            procs.append(p)
            line = p.stdout.readline()
            dns_addr = line.split("dns=")[1].split()[0].split(",")[0]
            ours.append((dns_addr.rsplit(":", 1)[0], int(dns_addr.rsplit(":", 1)[1])))
        cl_dns, cl_http = free_port("127.0.0.51"), free_port("127.0.0.51")
        env = dict(os.environ, CL_IPS="127.0.0.51 127.0.0.52 127.0.0.53", CL_DNS_PORT=str(cl_dns), CL_HTTP_PORT=str(cl_http),
                   REF_LOG_LEVEL="WARNING", REF_HEARTBEAT="0", REF_VENV=VENV)
        out = subprocess.run(["bash", os.path.join(SHARED, "interop", "ref-cluster.sh"), "start", os.path.join(tmp, "ref"), zone, str(a.interval)],
                             env=env, capture_output=True, text=True, check=True).stdout
        refs = [(l.split()[2], int(l.split()[3])) for l in out.strip().splitlines()]
        our = measure("ours", ours, urls[0], "op", zone, a.n)
        ref = measure("ref", refs, f"http://127.0.0.51:{cl_http}", "ref-operator-token", zone, a.n)
        print(f"convergence to 3 nodes, sync interval {a.interval}s, {a.n} writes each")
        print(f"  ours:      p50 {our[0]*1000:8.1f} ms   p99 {our[1]*1000:8.1f} ms")
        print(f"  reference: p50 {ref[0]*1000:8.1f} ms   p99 {ref[1]*1000:8.1f} ms")
        print(f"  ratio reference/ours: p50 {ref[0]/our[0]:.1f}x   p99 {ref[1]/our[1]:.1f}x")
    finally:
        for p in procs:
            p.kill(); p.wait()
        subprocess.run(["bash", os.path.join(SHARED, "interop", "ref-cluster.sh"), "stop", os.path.join(tmp, "ref")],
                       env=dict(os.environ, CL_IPS="127.0.0.51 127.0.0.52 127.0.0.53"), capture_output=True)


if __name__ == "__main__":
    main()
