//! The vendored zstd (`vendor/zstd`, see its README-dnsmesh.md) reuses one compression and
//! one decompression context per thread in `block::compress`/`decompress` and
//! `stream::decode_all`. These tests hold it to upstream's results: round trips at every
//! size and level sled may use, the same bytes as a fresh context, and `decode_all`
//! agreeing with upstream's unchanged streaming decoder (`copy_decode`) on concatenated
//! frames, frames without a declared size, and empty, truncated or corrupt input — also
//! right after a failed call left the thread's context mid-frame.

use std::io::ErrorKind;

fn sample(len: usize, seed: u64) -> Vec<u8> {
    // Base64-like text with some repetition, like sled's records and nodes.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            if i % 97 < 20 {
                b"v=dmp1;t=record;"[i % 16]
            } else {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ALPHABET[(x >> 58) as usize]
            }
        })
        .collect()
}

/// Upstream's decoding path, untouched by the patch.
fn upstream_decode(input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::copy_decode(input, &mut out)?;
    Ok(out)
}

#[test]
fn block_round_trips_match_a_fresh_context() {
    for (i, len) in [0usize, 1, 15, 64, 300, 4096, 65_536, 300_000].into_iter().enumerate() {
        for level in [1, 3, 5] {
            let data = sample(len, i as u64);
            let c = zstd::block::compress(&data, level).expect("compress");
            let fresh = zstd::block::Compressor::new().compress(&data, level).expect("fresh");
            assert_eq!(c, fresh, "len {len} level {level}: reused context, other bytes");
            assert_eq!(zstd::block::decompress(&c, len).expect("decompress"), data);
            assert_eq!(zstd::stream::decode_all(&c[..]).expect("decode_all"), data);
            let mut buf = vec![0u8; zstd::zstd_safe::compress_bound(len)];
            let n = zstd::block::compress_to_buffer(&data, &mut buf, level).expect("to_buffer");
            let mut back = vec![0u8; len];
            let m = zstd::block::decompress_to_buffer(&buf[..n], &mut back).expect("from buf");
            assert_eq!(&back[..m], &data[..]);
        }
    }
}

#[test]
fn decode_all_agrees_with_upstream_on_every_shape() {
    let a = sample(5000, 1);
    let b = sample(70_000, 2);
    let fa = zstd::block::compress(&a, 1).expect("a");
    // A streamed frame declares no content size.
    let fb = zstd::stream::encode_all(&b[..], 3).expect("b");
    let two = [&fa[..], &fb[..]].concat();
    let three = [&fb[..], &fa[..], &fa[..]].concat();
    for (what, input) in [("one", &fa), ("streamed", &fb), ("two", &two), ("three", &three)] {
        let ours = zstd::stream::decode_all(&input[..]).expect(what);
        assert_eq!(ours, upstream_decode(input).expect(what), "{what}");
    }
    assert_eq!(zstd::stream::decode_all(&two[..]).unwrap(), [&a[..], &b[..]].concat());

    // Failures: the same kind as upstream's, and the thread's context works afterwards.
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("truncated", fa[..fa.len() / 2].to_vec()),
        ("truncated second frame", two[..fa.len() + 10].to_vec()),
        ("garbage", b"not a zstd frame at all".to_vec()),
        ("corrupt", {
            let mut c = fb.clone();
            let mid = c.len() / 2;
            c[mid] ^= 0xff;
            c[mid + 1] ^= 0x55;
            c
        }),
    ];
    for (what, input) in bad {
        let ours = zstd::stream::decode_all(&input[..]);
        let theirs = upstream_decode(&input);
        match (&ours, &theirs) {
            (Err(o), Err(t)) => {
                if o.kind() == ErrorKind::UnexpectedEof || t.kind() == ErrorKind::UnexpectedEof {
                    assert_eq!(o.kind(), t.kind(), "{what}: {o} vs {t}");
                }
            }
            (Ok(o), Ok(t)) => assert_eq!(o, t, "{what}"),
            _ => panic!("{what}: ours {ours:?} upstream {theirs:?}"),
        }
        assert_eq!(zstd::stream::decode_all(&fa[..]).expect("after a failure"), a, "{what}");
        assert_eq!(zstd::block::decompress(&fa, a.len()).expect("after a failure"), a);
    }
}

#[test]
fn contexts_are_per_thread() {
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let data = sample(100 + (i as usize * 37) % 9000, t * 1000 + i);
                    let c = zstd::block::compress(&data, 1 + (i % 3) as i32).expect("compress");
                    assert_eq!(zstd::stream::decode_all(&c[..]).expect("decode"), data);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}
