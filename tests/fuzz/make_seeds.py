#!/usr/bin/env python3
"""Write the seed corpora in seeds/<target>/ from the shared vectors and hand-built DNS
messages. Deterministic: re-running it rewrites the same files. Input formats are the
harnesses' (src/harness.rs, src/dns_slow.rs).

Usage: python3 tests/fuzz/make_seeds.py [VECTORS_DIR]   (default: ../shared/vectors
beside the repository)."""

import base64
import hashlib
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VECTORS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "vectors")
SEEDS = os.path.join(HERE, "seeds")

NOW = 1_795_879_342  # harness::NOW, the extra vectors' generation time
# Index in RecordKind::ALL, for the records target's signed-body mode (0x80 | index).
KINDS = ["chunk", "manifest", "identity", "prekey", "claim", "cluster", "bootstrap",
         "rotation", "revocation", "heartbeat"]
PREFIX = {
    "chunk": "v=dmp1;t=chunk;d=", "manifest": "v=dmp1;t=manifest;d=",
    "identity": "v=dmp1;t=identity;d=", "prekey": "v=dmp1;t=prekey;d=",
    "claim": "v=dmp1;t=claim;", "cluster": "v=dmp1;t=cluster;",
    "bootstrap": "v=dmp1;t=bootstrap;", "rotation": "v=dmp1;t=rotation;",
    "revocation": "v=dmp1;t=revocation;", "heartbeat": "v=dmp1;t=heartbeat;",
}
SIGS = {"rotation": 2, "chunk": 0}

seeds = {}


def add(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    seeds.setdefault(target, {})[name] = data


def load(rel):
    with open(os.path.join(VECTORS, rel)) as f:
        return json.load(f)


def kind_of(txt):
    for k, p in PREFIX.items():
        if txt.startswith(p):
            return k
    return None


def record_seeds(label, txt, nows):
    """Raw TXT at each `now`, plus the signed-body form of the same record."""
    for now in sorted(set(n for n in nows if n is not None)):
        add("records", f"{label}-now{now}", b"\x00" + struct.pack(">Q", now) + txt.encode())
    kind = kind_of(txt)
    if kind is None:
        return
    try:
        blob = base64.b64decode(txt[len(PREFIX[kind]):])
    except ValueError:
        return
    sigs = SIGS.get(kind, 1)
    body = blob[: len(blob) - 64 * sigs] if sigs else blob
    head = bytes([0x80 | KINDS.index(kind)]) + struct.pack(">Q", max(n or 0 for n in nows))
    add("records", f"{label}-signed", head + body)
    add("b64_txt", f"{label}-b64", txt[len(PREFIX[kind]):])


# --- upstream record vectors -----------------------------------------------------------
for fname in sorted(os.listdir(os.path.join(VECTORS, "upstream"))):
    if not fname.endswith(".json") or fname == "dmpv2_envelope.json":
        continue
    stem = fname[:-5]
    for i, case in enumerate(load(f"upstream/{fname}")):
        wire = case.get("expected_wire_hex")
        if not wire:
            continue
        txt = bytes.fromhex(wire).decode()
        inputs = case.get("inputs", {})
        nows = [case.get("verify_with_now"), inputs.get("ts"), NOW]
        if inputs.get("exp"):
            nows.append(inputs["exp"] - 1)
        record_seeds(f"{stem}-{i}", txt, nows)
        add("http_json", f"{stem}-{i}", json.dumps({"value": txt, "ttl": 300}))

# --- extra vectors ---------------------------------------------------------------------
extra = load("extra/protocol-extra-vectors.json")
for key in ["alice_identity", "bob_identity", "bob_prekey", "heartbeat_example"]:
    record_seeds(f"extra-{key}", extra[key]["txt"], [NOW, extra[key].get("ts")])
    add("http_json", f"extra-{key}", json.dumps({"name": extra[key]["owner"],
                                                 "value": extra[key]["txt"]}))
for name, ex in extra["message_examples"].items():
    record_seeds(f"msg-{name}-manifest", ex["manifest_txt"], [NOW])
    record_seeds(f"msg-{name}-claim", ex["claim_txt"], [NOW])
    for j, ch in enumerate(ex["chunks"]):
        record_seeds(f"msg-{name}-chunk{j}", ch["txt"], [NOW])
    add("message", f"header-{name}", b"\x00" + ex["outer_header_json"].encode())
    add("message", f"outer-{name}",
        b"\x01" + struct.pack(">Q", NOW) + bytes.fromhex(ex["outer_message_hex"]))
    add("message", f"envelope-{name}", b"\x02" + bytes.fromhex(ex["aead_plaintext_hex"]))
    chunk_lines = "\n".join(ch["txt"] for ch in ex["chunks"]).encode()
    add("message", f"assembly-foreign-{name}", b"\x03\x00" + chunk_lines)
    shares = b"".join(bytes.fromhex(s) for s in ex["shares_hex"])
    add("message", f"shares-{name}",
        b"\x04" + bytes([ex["erasure_k"] - 1, 1]) + b"\xff" * 8 + struct.pack(">Q", NOW) + shares)
for case in load("upstream/dmpv2_envelope.json"):
    hx = case.get("expected_plaintext_hex") or case.get("inputs", {}).get("plaintext_hex")
    if hx:
        add("message", f"envelope-{case['description'][:40]}", b"\x02" + bytes.fromhex(hx))
    addr = case.get("inputs", {}).get("sender_addr")
    if addr:
        add("registration", f"addr-{addr}", addr)
# A canonical address whose envelope header is 255 bytes: one character below §5.4's cap.
long_addr = "l" * 64 + "@" + ".".join(["a" * 63, "a" * 63, "b" * 52])
add("message", "envelope-long-address", b"\x02" + long_addr.encode())
add("message", "assembly-all", b"\x03\xff")
add("message", "assembly-some", b"\x03\x0b")
add("message", "assembly-prekey-all", b"\x09\xff")
add("message", "assembly-prekey-junk", b"\x09\x05v=dmp1;t=chunk;d=AAAA\nv=dmp1;t=chunk")
add("message", "replay", b"\x05" + json.dumps([["00" * 32, "11" * 16, NOW], [1, 2, 3]]).encode())
zf = extra["zfec_example_k3_n4"]
add("message", "shares-zfec", b"\x04\x02\x00" + b"\x0f" * 8 + struct.pack(">Q", NOW)
    + b"".join(bytes.fromhex(s) for s in zf["shares_hex"]))

# --- b64 / txt -------------------------------------------------------------------------
for i, s in enumerate(["aGk=aGk=", "aGl=", "aG=k=", "a===", "aGk", "aG k=", "=aGk=", "aGk==",
                       "aGVsbG8=x", "", "aGVsbG8h", "aGk\u00e9="]):
    add("b64_txt", f"cpython-{i}", s)
add("b64_txt", "rdata-two", b"\x05hello\x00\x03abc")
add("b64_txt", "rdata-overrun", b"\xffabc")
add("b64_txt", "rs-wire", base64.b64encode(bytes.fromhex(extra["rs_wrap_block_example"]["wire_hex"])))

# --- registration ----------------------------------------------------------------------
reg = extra["registration_example"]
add("registration", "vector-subject",
    "\0".join([reg["subject"], "mesh.example.com"] + reg["tsig_allowed_suffixes_default_scope"][3:5]))
for name in ["DMP.Alice.Example.COM..", "id-2bd806c97f0e00af.example.com",
             "prekeys.id-2bd806c97f0e.a.com", "rotate.dmp.id-2bd806c97f0e.a.com",
             "rotate.dmp.bob.a.com", "pk-01.2bd806c97f0e.a.com",
             "slot-33.mb-2bd806c97f0e.a.com.", "chunk-1-2bd806c97f0e.a.com",
             "claim-1.mb-2bd806c97f0e.a.com", "_dmp.example.com", "a..b.com"]:
    add("registration", f"name-{name}", name + "\0z.test\0slot-*.mb-*.a.com\0id-abc.a.com")
for ep in ["https://node.example.com", "HTTP://[2606:4700::1]:8053", "http://127.0.0.1:8053",
           "https://[fe80::1%eth0]", "https://a.localhost."]:
    add("registration", f"endpoint-{ep}", ep)
add("registration", "glob", "chunk-0001-abc.mesh.test\0\0chunk-*-*.mesh.test\0a*b*c.mesh.test")
add("registration", "unicode", "\u212aim@b.com\0Z.T\u0130\0*\0\u03a3.com")

# --- http_json -------------------------------------------------------------------------
alice = extra["identities"]["alice"]
add("http_json", "register-vector", json.dumps({
    "subject": reg["subject"], "ed25519_spk": alice["ed25519_pub_hex"],
    "challenge": reg["challenge_hex"], "signature": reg["ed25519_signature_hex"],
    "x25519_pub": alice["x25519_pub_hex"], "x25519_pop": reg["x25519_pop_hex"]}))
add("http_json", "register-bad", json.dumps({"subject": " Bob@Example.COM ",
                                             "ed25519_spk": "zz", "challenge": 5}))
add("http_json", "record-plain", '{"value": "hello", "ttl": 60}')
add("http_json", "record-ttl-float", '{"value": "hello", "ttl": 1.5}')
add("http_json", "delete-null", '{"value": null}')
add("http_json", "revoke", '{"what": "alice@mesh.example.com"}')
add("http_json", "sync-pull", json.dumps({"names": ["a.mesh.test", "x.y.z.deep.mesh.test",
                                                    "MESH.TEST.", "nope.example", ""]}))

h64 = "ab" * 32
add("http_json", "sync-digest", json.dumps({"records": [{"ts": 5, "name": "a.mesh.test", "hash": h64}],
                                            "has_more": True, "next_cursor": f"5:a.mesh.test:{h64}"}))
add("http_json", "sync-pull-answer", json.dumps({"records": [
    {"name": "slot-1.mb-6a152ac86c49.mesh.test",
     "value": extra["message_examples"]["long_term_key_v1_plaintext"]["manifest_txt"], "ttl": 300},
    {"name": "www.mesh.test", "value": "hello", "ttl": 60},
    {"name": "id-abc.mesh.test", "value": "plain", "ttl": 60}]}))
add("http_json", "sync-tombstones", json.dumps({"tombstones": [
    {"stamp": 1, "name": "a.mesh.test", "value": "hello", "ttl": 60}]}))

# --- DNS messages ----------------------------------------------------------------------


def wire_name(name):
    out = b""
    for label in name.split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def query(name, qtype, edns=None, flags=0x0100, qid=0x1234):
    q = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns is not None else 0)
    q += wire_name(name) + struct.pack(">HH", qtype, 1)
    if edns is not None:
        payload, version, options = edns
        q += b"\x00" + struct.pack(">HHBBHH", 41, payload, 0, version, 0, len(options)) + options
    return q


def rr(name, rtype, rclass, ttl, rdata):
    return wire_name(name) + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def txt_rdata(value):
    value = value.encode()
    parts = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
    return b"".join(bytes([len(p)]) + p for p in parts)


def update(zone, prereqs, updates):
    h = struct.pack(">HHHHHH", 0xbeef, 0x2800, 1, len(prereqs), len(updates), 0)
    return h + wire_name(zone) + struct.pack(">HH", 6, 1) + b"".join(prereqs) + b"".join(updates)


dns = {
    "txt": query("a.mesh.test", 16),
    "txt-0x20-edns": query("A.MeSh.TeSt", 16, (1232, 0, b"")),
    "txt-long": query("slot-1.mb-x.mesh.test", 16),
    "txt-long-edns": query("slot-1.mb-x.mesh.test", 16, (4096, 0, b"")),
    "big-tc": query("big.mesh.test", 16, (65535, 0, b"")),
    "ent": query("mb-x.mesh.test", 16, (512, 0, b"")),
    "deep-ent": query("z.deep.mesh.test", 16),
    "empty-value": query("x.y.z.deep.mesh.test", 16),
    "nx": query("nope.mesh.test", 1),
    "apex-ns": query("mesh.test", 2, (1232, 0, b"")),
    "apex-soa": query("mesh.test", 6),
    "apex-any": query("mesh.test", 255),
    "apex-a": query("mesh.test", 1),
    "apex-aaaa": query("mesh.test", 28),
    "host-a": query("ns1.mesh.test", 1, (1232, 0, b"")),
    "host-below": query("sub.mesh.test", 28),
    "host-aaaa": query("h.sub.mesh.test", 28),
    "refused": query("example.com", 16),
    "badvers": query("a.mesh.test", 16, (1232, 1, b"")),
    "edns-option": query("a.mesh.test", 16, (1232, 0, struct.pack(">HH", 10, 8) + b"\x01" * 8)),
    "axfr": query("mesh.test", 252),
    "qr-set": query("a.mesh.test", 16, flags=0x8100),
    "notify": query("mesh.test", 6, flags=0x2000),
    "root": query("", 2),
}
for name, q in dns.items():
    add("dns_answer", name, q)
    add("dns_slow", name, q)

claim_txt = extra["message_examples"]["long_term_key_v1_plaintext"]["claim_txt"]
claim_owner = "claim-0.mb-6a152ac86c49.mesh.test"
add("dns_slow", "update-claim", update("mesh.test", [], [rr(claim_owner, 16, 1, 300, txt_rdata(claim_txt))]))
add("dns_slow", "update-delete", update(
    "mesh.test",
    [rr("a.mesh.test", 16, 1, 0, txt_rdata("hello")), rr("nope.mesh.test", 255, 254, 0, b"")],
    [rr("a.mesh.test", 16, 254, 0, txt_rdata("hello")), rr("a.mesh.test", 255, 255, 0, b"")]))
add("dns_slow", "update-wrong-zone", update("example.com", [], [rr("x.example.com", 16, 1, 60, txt_rdata("v"))]))

# --- write -----------------------------------------------------------------------------
if os.path.isdir(SEEDS):
    shutil.rmtree(SEEDS)
total = 0
for target, files in sorted(seeds.items()):
    d = os.path.join(SEEDS, target)
    os.makedirs(d)
    for name, data in sorted(files.items()):
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
        digest = hashlib.sha1(data).hexdigest()[:8]
        with open(os.path.join(d, f"{safe}-{digest}"), "wb") as f:
            f.write(data)
        total += 1
    print(f"{target}: {len(files)} seeds")
print(f"total: {total}")
