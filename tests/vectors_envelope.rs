//! Upstream `dmpv2_envelope.json` (protocol §5.4, §12.2 step 5): encode cases byte-exact,
//! every case decodes to the expected body and sender.

use dnsmesh::proto::envelope;
use serde_json::Value;

#[test]
fn dmpv2_envelope_vectors() {
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/upstream/dmpv2_envelope.json");
    let cases: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cases.len(), 8);
    for (idx, c) in cases.iter().enumerate() {
        let desc = format!("envelope[{idx}] {}", c["description"].as_str().unwrap());
        let inputs = &c["inputs"];
        let plaintext = match inputs.get("body_hex") {
            Some(body_hex) => {
                let body = hex::decode(body_hex.as_str().unwrap()).unwrap();
                let sender = inputs["sender_addr"].as_str();
                let want = hex::decode(c["expected_plaintext_hex"].as_str().unwrap()).unwrap();
                let got = envelope::encode(&body, sender);
                assert_eq!(hex::encode(&got), hex::encode(&want), "{desc}: encode");
                got
            }
            None => hex::decode(inputs["plaintext_hex"].as_str().unwrap()).unwrap(),
        };
        let (body, from) = envelope::decode(&plaintext);
        let want_body = hex::decode(c["expected_decode_body_hex"].as_str().unwrap()).unwrap();
        assert_eq!(hex::encode(body), hex::encode(want_body), "{desc}: decoded body");
        assert_eq!(from.as_deref(), c["expected_decode_from"].as_str(), "{desc}: decoded from");
    }
}

#[test]
fn header_window_is_256_bytes() {
    // A 256-byte header still decodes; 257 bytes means "no terminator": v1 plaintext.
    let header = |pad: usize| {
        let mut h = br#"{"from":"a@b.co","x":""#.to_vec();
        h.extend(std::iter::repeat_n(b'y', pad));
        h.extend_from_slice(b"\"}");
        h
    };
    let base = header(0).len();
    for (len, ok) in [(256, true), (257, false)] {
        let mut pt = b"DMPV2:".to_vec();
        pt.extend(header(len - base));
        pt.extend_from_slice(b"\nbody");
        let (body, from) = envelope::decode(&pt);
        if ok {
            assert_eq!((body.as_slice(), from.as_deref()), (&b"body"[..], Some("a@b.co")), "{len}");
        } else {
            assert_eq!((body, from), (pt.clone(), None), "{len}");
        }
    }
    // Non-object JSON and non-ASCII headers fall back to the whole plaintext.
    for pt in [&b"DMPV2:[1]\nbody"[..], "DMPV2:{\"from\":\"é\"}\nx".as_bytes()] {
        assert_eq!(envelope::decode(pt), (pt.to_vec(), None));
    }
    // A valid object with a bad or missing `from` still splits, with no sender.
    assert_eq!(envelope::decode(b"DMPV2:{\"from\":\"nope\"}\nx"), (b"x".to_vec(), None));
    assert_eq!(envelope::decode(b"DMPV2:{}\nx"), (b"x".to_vec(), None));
}

#[test]
fn extra_message_plaintexts() {
    // The two reference-decrypted messages of the extra vectors: the prekey path carries
    // alice's envelope, the long-term-key path a bare v1 body.
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/extra/protocol-extra-vectors.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (case, from) in [
        ("prekey_v2_envelope", Some("alice@mesh.example.com")),
        ("long_term_key_v1_plaintext", None),
    ] {
        let ex = &all["message_examples"][case];
        let pt = hex::decode(ex["aead_plaintext_hex"].as_str().unwrap()).unwrap();
        let text = ex["reference_client_decrypts_to"].as_str().unwrap();
        assert_eq!(envelope::encode(text.as_bytes(), from), pt, "{case}: encode");
        assert_eq!(
            envelope::decode(&pt),
            (text.as_bytes().to_vec(), from.map(String::from)),
            "{case}: decode"
        );
    }
}
