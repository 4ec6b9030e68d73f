//! The view's start-up image: the name table's arenas as they are in memory, written at
//! a graceful stop and read back at the next start instead of rebuilding a million
//! answers from the store (issue 18: ready in < 2 s with 1M records).
//!
//! Layout (little-endian): `MAGIC`, a 16-byte token, the view's fingerprint (format,
//! origin, TTL), the shard count, then per shard its entry count and byte length; then
//! each shard's blocks; then a CRC-32 of everything before it. The token ties the image
//! to one state of the store: the store keeps it only from the stop that wrote the image
//! until its next open, which consumes it before any write (`actors::store`), so an
//! image is used only when no record changed since it was written. Whatever is in it is
//! checked block by block before it is used ([`super::table::Table::fill_shard`]).
//!
//! This module encodes and checks; the file itself is the DNS actor's
//! (`actors::dns::image`). A signed zone's image carries the RRSIGs as they were; the
//! loader runs the signer's pass (`ZoneView::dnssec_pass`) before the node is ready, so
//! signatures that aged or were made by a key no longer active are replaced first.

use std::hash::BuildHasher;

use super::table::FillError;
pub(crate) use super::table::SHARDS;
use super::view::ZoneView;

pub const MAGIC: &[u8; 8] = b"DMPVIMG1";

/// Bump when the entry layout or the answer encoding changes.
const FORMAT: u32 = 1;

/// Bytes before the first section.
pub const HEADER_LEN: usize = 8 + 16 + 8 + 4 + SHARDS * 16;

/// An image's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHeader {
    pub token: [u8; 16],
    pub fingerprint: u64,
    /// Per shard: (entries, bytes).
    pub sections: Vec<(u64, u64)>,
}

/// Why an image was not used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("not a view image (bad magic or length)")]
    Format,
    #[error("written for another zone configuration or format")]
    Fingerprint,
    #[error("token differs from the store's: records changed since it was written")]
    Token,
    #[error("checksum mismatch")]
    Checksum,
    #[error("section too large for this machine")]
    TooLarge,
    #[error(transparent)]
    Fill(#[from] FillError),
}

impl ImageHeader {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.token);
        b.extend_from_slice(&self.fingerprint.to_le_bytes());
        b.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        for (n, bytes) in &self.sections {
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(&bytes.to_le_bytes());
        }
        b
    }

    /// Parse a header and check it belongs to `view` and to `token`.
    pub fn parse(b: &[u8], view: &ZoneView, token: &[u8; 16]) -> Result<Self, ImageError> {
        if b.len() != HEADER_LEN || &b[..8] != MAGIC {
            return Err(ImageError::Format);
        }
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]));
        let fingerprint = u64_at(24);
        let shards = u32::from_le_bytes(b[32..36].try_into().unwrap_or([0; 4])) as usize;
        if fingerprint != view.image_fingerprint() || shards != SHARDS {
            return Err(ImageError::Fingerprint);
        }
        if &b[8..24] != token {
            return Err(ImageError::Token);
        }
        let sections = (0..SHARDS).map(|i| (u64_at(36 + 16 * i), u64_at(44 + 16 * i))).collect();
        Ok(ImageHeader { token: *token, fingerprint, sections })
    }
}

/// What an image put into the view.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImageLoad {
    pub names: usize,
    pub entries: usize,
}

impl ZoneView {
    /// What an image must match: the format, the shard count, the origin and the TTL
    /// baked into the answer bytes, and whether the zone is signed.
    pub fn image_fingerprint(&self) -> u64 {
        rustc_hash::FxBuildHasher.hash_one((
            FORMAT,
            SHARDS,
            &self.cfg.origin[..],
            self.cfg.ttl,
            self.sec.is_some(),
        ))
    }

    /// Shard `i`'s section: `f` gets its entry count, byte length and blocks, under the
    /// shard's read lock (the caller keeps writers out for a consistent image).
    pub fn image_section<R>(
        &self,
        i: usize,
        f: impl FnOnce(usize, usize, &mut dyn Iterator<Item = &[u8]>) -> R,
    ) -> R {
        self.map.visit_shard(i, f)
    }

    /// Put section `i` (read back whole) into this empty view.
    pub fn fill_image_section(
        &self,
        i: usize,
        bytes: Vec<u8>,
        entries: u64,
    ) -> Result<ImageLoad, ImageError> {
        let entries = usize::try_from(entries).map_err(|_| ImageError::TooLarge)?;
        let f = self.map.fill_shard(i, bytes, entries)?;
        self.add_loaded(f.names, f.txt_bytes, f.key_bytes, f.entries);
        Ok(ImageLoad { names: f.names, entries: f.entries })
    }

    /// Visit every name holding TXT whose first label starts with `prefix`, as its
    /// dotted name relative to the origin and its values (claims after an image load).
    pub fn for_each_txt_labelled(&self, prefix: &[u8], mut f: impl FnMut(String, Vec<Vec<u8>>)) {
        self.map.for_each(|e| {
            let k = e.key();
            if e.count() == 0 || k.is_empty() || !k[1..].starts_with(prefix) {
                return;
            }
            let mut name = String::new();
            let mut pos = 0;
            while let Some(&l) = k.get(pos) {
                let label = k.get(pos + 1..pos + 1 + l as usize).unwrap_or_default();
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                pos += 1 + l as usize;
            }
            f(name, super::view::decode_rrs(e.rrs()));
        });
    }

    /// Empty the view (an image that failed half-way).
    pub fn clear(&self) {
        let _w = self.write_lock();
        self.map.clear();
        self.reset_counts();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnswire::ZoneConfig;

    fn view(ttl: u32) -> ZoneView {
        let mut cfg =
            ZoneConfig::new("mesh.test", "ns1.mesh.test", "h.mesh.test", &["ns1.mesh.test"]);
        cfg.ttl = ttl;
        ZoneView::new(&cfg).unwrap()
    }

    /// Write `v` as an image (in memory, as the DNS actor writes its file).
    fn image(v: &ZoneView, token: [u8; 16]) -> Vec<u8> {
        let mut sections = Vec::new();
        let mut body = Vec::new();
        for i in 0..SHARDS {
            v.image_section(i, |n, bytes, blocks| {
                sections.push((n as u64, bytes as u64));
                blocks.for_each(|b| body.extend_from_slice(b));
            });
        }
        let head = ImageHeader { token, fingerprint: v.image_fingerprint(), sections };
        let mut out = head.encode();
        out.extend_from_slice(&body);
        out
    }

    fn read(v: &ZoneView, img: &[u8], token: &[u8; 16]) -> Result<ImageLoad, ImageError> {
        let head = ImageHeader::parse(img.get(..HEADER_LEN).ok_or(ImageError::Format)?, v, token)?;
        let mut pos = HEADER_LEN;
        let mut total = ImageLoad::default();
        for (i, (n, bytes)) in head.sections.iter().enumerate() {
            let end = pos + *bytes as usize;
            let sec = img.get(pos..end).ok_or(ImageError::Format)?.to_vec();
            let l = v.fill_image_section(i, sec, *n)?;
            total.names += l.names;
            total.entries += l.entries;
            pos = end;
        }
        Ok(total)
    }

    #[test]
    fn a_view_round_trips_through_its_image() {
        let v = view(60);
        for i in 0..300 {
            let name = format!("slot-{}.mb-{:012x}.mesh.test", i % 10, i / 10);
            v.set_txt(&name, &[format!("value {i}").as_bytes(), b"second"]);
        }
        v.set_txt("slot-3.mb-000000000002.mesh.test", &[]);
        let token = [7u8; 16];
        let img = image(&v, token);
        let back = view(60);
        let got = read(&back, &img, &token).unwrap();
        assert_eq!(got.names, 299);
        assert_eq!((back.len(), back.approx_bytes()), (v.len(), v.approx_bytes()));
        for i in 0..300 {
            let name = format!("slot-{}.mb-{:012x}.mesh.test", i % 10, i / 10);
            assert_eq!(back.txt(&name), v.txt(&name), "{name}");
            let parent = format!("mb-{:012x}.mesh.test", i / 10);
            assert_eq!(back.txt(&parent), v.txt(&parent));
        }
        // Still a working view: a later change keeps the ancestor counts right.
        for i in 0..10 {
            back.set_txt(&format!("slot-{i}.mb-000000000000.mesh.test"), &[]);
        }
        assert_eq!(back.txt("mb-000000000000.mesh.test"), super::super::NameState::NxDomain);
    }

    #[test]
    fn an_image_of_another_zone_token_or_ttl_is_refused() {
        let v = view(60);
        v.set_txt("a.mesh.test", &[b"x"]);
        let img = image(&v, [1; 16]);
        assert_eq!(read(&view(60), &img, &[2; 16]), Err(ImageError::Token));
        assert_eq!(read(&view(30), &img, &[1; 16]), Err(ImageError::Fingerprint));
        let cfg =
            ZoneConfig::new("other.test", "ns1.other.test", "h.other.test", &["ns1.other.test"]);
        let other = ZoneView::new(&cfg).unwrap();
        assert_eq!(read(&other, &img, &[1; 16]), Err(ImageError::Fingerprint));
        assert!(read(&view(60), &img[..img.len() - 1], &[1; 16]).is_err());
    }
}
