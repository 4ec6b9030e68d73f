//! Reading a response's TTLs (for DNS over HTTPS `Cache-Control`, RFC 8484 §5.1).

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Skip a (possibly compressed) name starting at `pos`; the offset after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *msg.get(pos)? as usize;
        if len == 0 {
            return Some(pos + 1);
        }
        if len & 0xC0 == 0xC0 {
            msg.get(pos + 1)?;
            return Some(pos + 2);
        }
        if len & 0xC0 != 0 {
            return None;
        }
        pos += 1 + len;
    }
    None
}

/// The smallest TTL among the answer and authority RRs of a response, `None` when it
/// has none (or does not parse).
pub fn min_ttl(msg: &[u8]) -> Option<u32> {
    let qd = be16(msg, 4)?;
    let rrs = be16(msg, 6)? as usize + be16(msg, 8)? as usize;
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut min: Option<u32> = None;
    for _ in 0..rrs {
        pos = skip_name(msg, pos)?;
        let ttl = msg.get(pos + 4..pos + 8)?;
        let ttl = u32::from_be_bytes([ttl[0], ttl[1], ttl[2], ttl[3]]);
        let rdlen = be16(msg, pos + 8)? as usize;
        pos += 10 + rdlen;
        if pos > msg.len() {
            return None;
        }
        min = Some(min.map_or(ttl, |m| m.min(ttl)));
    }
    min
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnswire::{ZoneConfig, ZoneView};

    #[test]
    fn answers_and_negative_answers() {
        let mut cfg =
            ZoneConfig::new("mesh.test", "ns1.mesh.test", "h.mesh.test", &["ns1.mesh.test"]);
        cfg.ttl = 77;
        cfg.soa_minimum = Some(30);
        let v = ZoneView::new(&cfg).unwrap();
        v.set_txt("a.mesh.test", &[b"x", b"y"]);
        let q = |name: &[u8]| {
            let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
            m.extend_from_slice(name);
            m.extend_from_slice(&[0, 16, 0, 1]);
            m
        };
        let mut out = Vec::new();
        v.answer(&q(b"\x01a\x04mesh\x04test\x00"), &mut out, true);
        assert_eq!(min_ttl(&out), Some(77));
        v.answer(&q(b"\x01b\x04mesh\x04test\x00"), &mut out, true);
        assert_eq!(min_ttl(&out), Some(30));
        v.answer(&q(b"\x01b\x04else\x00"), &mut out, true);
        assert_eq!(min_ttl(&out), None);
        for cut in 0..out.len() {
            let _ = min_ttl(&out[..cut]);
        }
    }
}
