//! Message chunk, `v=dmp1;t=chunk;d=<b64(wire)>` (§4.1). Unsigned: integrity comes from
//! the manifest's `sha256(wire)`. A current wire is 168 bytes:
//! `sha256(block)[0:8] ‖ block(128) ‖ RS parity(32)`.

use super::PREFIX_CHUNK;
use crate::proto::erasure::BLOCK;
use crate::proto::keys::sha256;
use crate::proto::{b64, rs};

/// Length of the per-block checksum.
pub const CHECKSUM_LEN: usize = 8;
/// Length of a wire chunk: checksum + block + parity.
pub const WIRE_LEN: usize = CHECKSUM_LEN + BLOCK + rs::PARITY;

/// A chunk TXT record: just the wire bytes it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecord {
    pub wire: Vec<u8>,
}

impl ChunkRecord {
    /// Wrap one 128-byte share: checksum over the block, then its RS(160, 128) codeword.
    pub fn from_block(block: &[u8; BLOCK]) -> Self {
        let mut wire = Vec::with_capacity(WIRE_LEN);
        wire.extend_from_slice(&sha256(block)[..CHECKSUM_LEN]);
        wire.extend_from_slice(&rs::encode(block));
        ChunkRecord { wire }
    }

    /// The TXT value (241 chars for a 168-byte wire).
    pub fn to_txt(&self) -> String {
        format!("{PREFIX_CHUNK}{}", b64::encode(&self.wire))
    }

    /// Receiver-side parse, as lenient as the reference's `DMPDNSRecord.from_txt_record`
    /// (behaviour probed on the reference): the value must start with `v=dmp`; it is split
    /// on `;`, each part on its first `=` with key and value whitespace-stripped (parts
    /// without `=` are ignored, a later key wins); the last `v` minus its `dmp` must be
    /// an integer (the reference raises otherwise; ASCII digits only here); `t` must be
    /// `chunk`; `d` is decoded leniently, and a missing or undecodable `d` gives an empty
    /// wire (which no manifest hash will match). Any `m=` part is ignored.
    pub fn parse(txt: &str) -> Option<Self> {
        if !txt.starts_with("v=dmp") {
            return None;
        }
        let (mut v, mut t, mut d) = (None, None, None);
        for part in txt.split(';') {
            let Some((key, value)) = part.split_once('=') else {
                continue;
            };
            let value = py_strip(value);
            match py_strip(key) {
                "v" => v = Some(value),
                "t" => t = Some(value),
                "d" => d = Some(value),
                _ => {}
            }
        }
        if !v.is_some_and(|v| py_int_ok(v.strip_prefix("dmp").unwrap_or(v))) || t != Some("chunk") {
            return None;
        }
        let wire = d.and_then(b64::decode_lenient).unwrap_or_default();
        Some(ChunkRecord { wire })
    }

    /// The block inside a wire whose `sha256` already matched the manifest: requires the
    /// 168-byte shape and `sha256(block)[0:8] == checksum`. No RS correction is attempted:
    /// a wire that matched the manifest hash is the sender's exact codeword (§6.1, T30).
    pub fn unwrap_block(&self) -> Option<[u8; BLOCK]> {
        if self.wire.len() != WIRE_LEN {
            return None;
        }
        let (checksum, rest) = self.wire.split_at(CHECKSUM_LEN);
        let block: [u8; BLOCK] = rest.get(..BLOCK)?.try_into().ok()?;
        (sha256(&block)[..CHECKSUM_LEN] == *checksum).then_some(block)
    }
}

/// Whether Python's `int(s)` accepts `s` (ASCII digits, optional sign, single `_`
/// between digits, surrounding whitespace).
fn py_int_ok(s: &str) -> bool {
    let s = py_strip(s);
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty()
        && digits.split('_').all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()))
}

/// Python's `str.strip()`: Unicode whitespace plus the ASCII separators 0x1c–0x1f.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse() {
        let rec = ChunkRecord::from_block(&[0xab; BLOCK]);
        let txt = rec.to_txt();
        assert_eq!(txt.len(), 241);
        assert_eq!(ChunkRecord::parse(&txt), Some(rec.clone()));
        assert_eq!(rec.unwrap_block(), Some([0xab; BLOCK]));
        let spaced = format!("v=dmp1; t = chunk ;m=e30=; d = {}", &txt[17..]);
        assert_eq!(ChunkRecord::parse(&spaced), Some(rec.clone()));
        assert_eq!(ChunkRecord::parse("v=dmp1;t=chunk;d=!!"), Some(ChunkRecord { wire: vec![] }));
        assert_eq!(ChunkRecord::parse("v=dmp1;t=manifest;d=AAAA"), None);
        assert_eq!(ChunkRecord::parse("x=dmp1;t=chunk;d=AAAA"), None);
        let hi = Some(ChunkRecord { wire: b"hi".to_vec() });
        // Cases probed on the reference's DMPDNSRecord.from_txt_record.
        for (txt, want) in [
            ("v=dmp1;junk;t=chunk;d=aGk=", hi.clone()),
            ("v=dmp1; t = chunk ; d = aGk= ", hi.clone()),
            ("v=dmp1;t=chunk;d=aGk=;d=aGVsbG8=", Some(ChunkRecord { wire: b"hello".to_vec() })),
            ("v=dmp2;t=chunk;d=aGk=", hi.clone()),
            ("v=dmp 1 ;t=chunk;d=aGk=", hi.clone()),
            ("v=dmp+1;t=chunk;d=aGk=", hi.clone()),
            ("v=dmp1_0;t=chunk;d=aGk=", hi.clone()),
            ("v=dmpx;v=dmp1;t=chunk;d=aGk=", hi.clone()),
            ("v=dmp1;t=chunk", Some(ChunkRecord { wire: vec![] })),
            ("v=dmp1;t=chunk;d=a=b", Some(ChunkRecord { wire: vec![] })),
            ("v=dmpx;t=chunk;d=aGk=", None),
            ("v=dmp1.5;t=chunk;d=aGk=", None),
            ("v=dmp;t=chunk;d=aGk=", None),
            ("v=dmp1;v=abc2;t=chunk;d=aGk=", None),
            ("v=dmp1;t=CHUNK;d=aGk=", None),
            ("v=dmp1;t=chunk;d=aGk=;t=x", None),
        ] {
            assert_eq!(ChunkRecord::parse(txt), want, "{txt:?}");
        }
        let mut bad = rec;
        bad.wire[0] ^= 1;
        assert_eq!(bad.unwrap_block(), None);
    }
}
