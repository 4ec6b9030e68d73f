"""Black-box driver of the reference `dnsmesh` (import `dmp`) for tests/interop_ref_messages.rs.

Uses only the reference's public Python API: DMPClient over an InMemoryDNSStore, and the
record classes' parse_and_verify. Records travel between Rust and Python as JSON files
in a work directory:

  setup <dir>  Bob (reference) creates one prekey; writes setup.json
               {bob_x25519, bob_ed25519, alice_x25519, alice_ed25519, records: [[name, value]]}.
  recv <dir>   Reads rust_records.json {records, claims, identities, manifests}; Bob polls a
               store holding those records (+ setup's) and writes recv.json
               {messages: [{plaintext_hex, msg_id_hex, sender_label, sender_spk_hex}],
                prekey_values_left, replay_cache, parsed: {claims, identities, manifests}}.
  send <dir>   Reads rust_bob.json {bob_x25519, bob_ed25519, identity_txt, identity_name,
               prekey_txt, prekey_name, texts_long_term: [..], texts_prekey: [..]}; Alice (reference) sends each text to
               Bob, long-term texts through a store without prekeys, prekey texts through a
               store with Bob's prekey; writes send.json {stores: [[[name, value]], ...]}.

Keys are deterministic: passphrase "interop <name>", kdf_salt = sha256("dnsmesh/interop/<name>").
"""

import hashlib
import json
import os
import sys

from dmp.client.client import DMPClient
from dmp.core.claim import ClaimRecord
from dmp.core.identity import IdentityRecord
from dmp.core.manifest import SlotManifest
from dmp.network.memory import InMemoryDNSStore

DOMAIN = "mesh.test"


def client(name, store, work):
    salt = hashlib.sha256(("dnsmesh/interop/" + name).encode()).digest()
    return DMPClient(
        name,
        "interop " + name,
        domain=DOMAIN,
        store=store,
        kdf_salt=salt,
        prekey_store_path=os.path.join(work, name + "_prekeys.db"),
        intro_queue_path=os.path.join(work, name + "_intro.db"),
        replay_cache_path=os.path.join(work, name + "_replay_cache.json"),
    )


def dump(store):
    return [[n, v] for n in sorted(store.list_names()) for v in (store.query_txt_record(n) or [])]


def load(work, name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)


def save(work, name, obj):
    with open(os.path.join(work, name), "w") as f:
        json.dump(obj, f)


def setup(work):
    store = InMemoryDNSStore()
    bob = client("bob", store, work)
    alice = client("alice", InMemoryDNSStore(), work)
    assert bob.refresh_prekeys(count=1, ttl_seconds=86400) == 1
    save(work, "setup.json", {
        "bob_x25519": bob.get_public_key_hex(),
        "bob_ed25519": bob.get_signing_public_key_hex(),
        "alice_x25519": alice.get_public_key_hex(),
        "alice_ed25519": alice.get_signing_public_key_hex(),
        "records": dump(store),
    })


def recv(work):
    inp = load(work, "rust_records.json")
    store = InMemoryDNSStore()
    for name, value in load(work, "setup.json")["records"] + inp["records"]:
        store.publish_txt_record(name, value, ttl=3600)
    prekey_names = [n for n, _ in load(work, "setup.json")["records"] if n.startswith("prekeys.")]
    bob = client("bob", store, work)
    alice_keys = load(work, "setup.json")
    bob.add_contact("alice", alice_keys["alice_x25519"], DOMAIN, signing_key_hex=alice_keys["alice_ed25519"])
    msgs = bob.receive_messages()
    with open(os.path.join(work, "bob_replay_cache.json")) as f:
        replay = f.read()
    save(work, "recv.json", {
        "messages": [{
            "plaintext_hex": m.plaintext.hex(),
            "msg_id_hex": m.msg_id.hex(),
            "sender_label": m.sender_label,
            "sender_spk_hex": m.sender_signing_pk.hex(),
        } for m in msgs],
        "prekey_values_left": [v for n in prekey_names for v in (store.query_txt_record(n) or [])],
        "replay_cache": replay,
        "parsed": {
            "claims": [ClaimRecord.parse_and_verify(v) is not None for v in inp["claims"]],
            "identities": [IdentityRecord.parse_and_verify(v) is not None for v in inp["identities"]],
            "manifests": [SlotManifest.parse_and_verify(v) is not None for v in inp["manifests"]],
        },
    })


def send(work):
    inp = load(work, "rust_bob.json")
    stores = []
    for texts, with_prekey in ((inp["texts_long_term"], False), (inp["texts_prekey"], True)):
        store = InMemoryDNSStore()
        store.publish_txt_record(inp["identity_name"], inp["identity_txt"], ttl=3600)
        if with_prekey:
            store.publish_txt_record(inp["prekey_name"], inp["prekey_txt"], ttl=3600)
        alice = client("alice", store, work)
        alice.add_contact("bob", inp["bob_x25519"], DOMAIN, signing_key_hex=inp["bob_ed25519"])
        for text in texts:
            assert alice.send_message("bob", text, ttl=600), "reference send failed"
        stores.append(dump(store))
    save(work, "send.json", {"stores": stores})


if __name__ == "__main__":
    {"setup": setup, "recv": recv, "send": send}[sys.argv[1]](sys.argv[2])
