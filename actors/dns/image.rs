//! The view image file (format and checks: `dnswire::image`): written at a graceful
//! stop after the store is frozen, read back once by the next start's loader thread,
//! then deleted. Any doubt about it (token, fingerprint, size, checksum, a malformed
//! block) means the loader builds the view from the store as without it.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::dnswire::image::{ImageError, ImageHeader, ImageLoad, HEADER_LEN};
use crate::dnswire::ZoneView;

/// The image's file name in the data dir.
pub const FILE: &str = "view.img";

/// Why an image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the view image: {0}")]
    Io(#[from] std::io::Error),
    #[error("view image refused: {0}")]
    Image(#[from] ImageError),
}

/// Write `view` to `path` (through a temporary file, fsynced, renamed): the caller has
/// stopped every writer. Returns the bytes written.
pub fn write(view: &ZoneView, path: &Path, token: [u8; 16]) -> std::io::Result<u64> {
    let tmp = path.with_extension("img.tmp");
    let r = write_to(view, path, &tmp, token);
    if r.is_err() {
        // A full disk must not keep a half image around until the next stop.
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn write_to(view: &ZoneView, path: &Path, tmp: &Path, token: [u8; 16]) -> std::io::Result<u64> {
    let file = File::create(tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(&[0u8; HEADER_LEN])?;
    let mut body = crc32fast::Hasher::new();
    let mut sections = Vec::with_capacity(crate::dnswire::image::SHARDS);
    for i in 0..crate::dnswire::image::SHARDS {
        view.image_section(i, |n, bytes, blocks| -> std::io::Result<()> {
            sections.push((n as u64, bytes as u64));
            for b in blocks {
                body.update(b);
                w.write_all(b)?;
            }
            Ok(())
        })?;
    }
    let total: u64 = sections.iter().map(|s| s.1).sum();
    let head = ImageHeader { token, fingerprint: view.image_fingerprint(), sections }.encode();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.combine(&body);
    w.write_all(&crc.finalize().to_le_bytes())?;
    let mut file = w.into_inner().map_err(|e| e.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&head)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(HEADER_LEN as u64 + total + 4)
}

/// Read the image at `path` into the empty `view` if it carries `token` and checks out;
/// on any error the view is left empty. Two threads read and index the sections.
pub fn read(view: &ZoneView, path: &Path, token: &[u8; 16]) -> Result<ImageLoad, ReadError> {
    let r = read_into(view, path, token);
    if r.is_err() {
        view.clear();
    }
    r
}

fn read_into(view: &ZoneView, path: &Path, token: &[u8; 16]) -> Result<ImageLoad, ReadError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut head = vec![0u8; HEADER_LEN];
    file.read_exact(&mut head)?;
    let h = ImageHeader::parse(&head, view, token)?;
    // Where each section starts; the sizes must add up to the file.
    let mut starts = Vec::with_capacity(h.sections.len());
    let mut at = HEADER_LEN as u64;
    for (_, bytes) in &h.sections {
        starts.push(at);
        at = at.checked_add(*bytes).ok_or(ImageError::Format)?;
    }
    if at.checked_add(4) != Some(len) {
        return Err(ImageError::Format.into());
    }
    let mut trailer = [0u8; 4];
    file.read_exact_at(&mut trailer, at)?;
    // Each thread reads, checksums and indexes every other section.
    let part = |first: usize| -> Result<(Vec<(usize, crc32fast::Hasher)>, ImageLoad), ReadError> {
        // Its own handle (its own offset): sections are read into reserved, unzeroed room.
        let mut f = File::open(path)?;
        let mut crcs = Vec::new();
        let mut load = ImageLoad::default();
        for i in (first..h.sections.len()).step_by(2) {
            let (n, bytes) = h.sections[i];
            let size = usize::try_from(bytes).map_err(|_| ImageError::TooLarge)?;
            let mut buf = Vec::new();
            buf.try_reserve_exact(size).map_err(|_| ImageError::TooLarge)?;
            f.seek(SeekFrom::Start(starts[i]))?;
            (&mut f).take(bytes).read_to_end(&mut buf)?;
            if buf.len() != size {
                return Err(ImageError::Format.into());
            }
            let mut c = crc32fast::Hasher::new();
            c.update(&buf);
            crcs.push((i, c));
            let l = view.fill_image_section(i, buf, n)?;
            load.names += l.names;
            load.entries += l.entries;
        }
        Ok((crcs, load))
    };
    let (a, b) = std::thread::scope(|s| {
        let other = s.spawn(|| part(1));
        let mine = part(0);
        (mine, other.join().unwrap_or_else(|_| Err(ImageError::Format.into())))
    });
    let ((mut crcs, la), (cb, lb)) = (a?, b?);
    crcs.extend(cb);
    crcs.sort_by_key(|(i, _)| *i);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    for (_, c) in &crcs {
        crc.combine(c);
    }
    if crc.finalize().to_le_bytes() != trailer {
        return Err(ImageError::Checksum.into());
    }
    Ok(ImageLoad { names: la.names + lb.names, entries: la.entries + lb.entries })
}
