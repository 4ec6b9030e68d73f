//! DNS hot path: query bytes in → response bytes out, from a view with 10k and 1M
//! DMP-shaped TXT records (`slot-N.mb-<hash12>.<zone>`, 250-byte values). Also prints
//! the view's memory against the raw record size.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dnsmesh::dnswire::{Disposition, ZoneConfig, ZoneView};

const ZONE: &str = "mesh.test";
const QUERIES: usize = 4096;

fn mailbox(i: usize) -> String {
    // 12 hex digits spread over the key space, like hash12 of a recipient.
    format!("mb-{:012x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16)
}

fn record_name(i: usize) -> String {
    format!("slot-{}.{}.{ZONE}", i % 10, mailbox(i / 10))
}

fn resident_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn build(n: usize) -> ZoneView {
    let cfg = ZoneConfig::new(
        ZONE,
        &format!("ns1.{ZONE}"),
        &format!("hostmaster.{ZONE}"),
        &[&format!("ns1.{ZONE}")],
    );
    let v = ZoneView::new(&cfg).expect("config");
    let before = resident_bytes();
    let started = std::time::Instant::now();
    let mut raw = 0usize;
    let mut value = vec![0u8; 250];
    for i in 0..n {
        let name = record_name(i);
        let mut x = (i as u64).wrapping_add(1).wrapping_mul(0x2545_F491_4F6C_DD1D);
        for b in value.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = b'A' + (x % 26) as u8;
        }
        raw += name.len() + value.len();
        v.set_txt(&name, &[&value]);
    }
    let rss = resident_bytes().saturating_sub(before);
    eprintln!(
        "{n} records: built in {:.2?}, raw {:.1} MB, RSS growth {:.1} MB ({:.2}x raw), approx_bytes {:.1} MB",
        started.elapsed(),
        raw as f64 / 1e6,
        rss as f64 / 1e6,
        rss as f64 / raw as f64,
        v.approx_bytes() as f64 / 1e6
    );
    v
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 16, 0, 1]);
    q
}

fn bench_size(c: &mut Criterion, n: usize, label: &str) {
    let v = build(n);
    let step = (n / QUERIES).max(1);
    let hits: Vec<Vec<u8>> =
        (0..QUERIES).map(|i| query(i as u16, &record_name((i * step) % n))).collect();
    let nx: Vec<Vec<u8>> =
        (0..QUERIES).map(|i| query(i as u16, &format!("slot-1.mb-nx{:09x}.{ZONE}", i))).collect();
    let nodata: Vec<Vec<u8>> = (0..QUERIES)
        .map(|i| query(i as u16, &format!("{}.{ZONE}", mailbox((i * step) % n / 10))))
        .collect();
    let mut out = Vec::with_capacity(1232);
    for (kind, qs, want) in [("hit", &hits, 0u16), ("nxdomain", &nx, 3), ("nodata", &nodata, 0)] {
        assert_eq!(v.answer(&qs[0], &mut out, false), Disposition::Reply { rcode: want }, "{kind}");
    }
    let mut group = c.benchmark_group(label);
    group.sample_size(20);
    for (kind, qs) in [("hit", &hits), ("nxdomain", &nx), ("nodata", &nodata)] {
        let mut i = 0usize;
        group.bench_function(kind, |b| {
            b.iter(|| {
                i = (i + 1) % QUERIES;
                black_box(v.answer(black_box(&qs[i]), &mut out, false))
            })
        });
    }
    group.finish();
}

fn hotpath(c: &mut Criterion) {
    bench_size(c, 10_000, "answer/10k");
    bench_size(c, 1_000_000, "answer/1M");
}

criterion_group!(benches, hotpath);
criterion_main!(benches);
