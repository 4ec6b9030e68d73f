//! Compress and decompress individual blocks.
//!
//! These methods process all the input data at once.
//! It is therefore best used with relatively small blocks
//! (like small network packets).

mod compressor;
mod decompressor;

pub use self::compressor::Compressor;
pub use self::decompressor::Decompressor;

use std::cell::RefCell;
use std::io;

// dnsmesh patch (see README-dnsmesh.md): the free functions below reuse one
// compression and one decompression context per thread instead of creating
// (allocating and initialising) a fresh zstd context on every call. Callers
// such as sled compress every log message with `compress`, and the context
// set-up cost more than the compression of those small messages.
thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor>> = RefCell::new(None);
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = RefCell::new(None);
}

/// Runs `f` with this thread's reused `Compressor` (or a fresh one if the
/// thread-local one is unavailable: re-entrant use or thread teardown).
fn with_compressor<T>(f: impl FnOnce(&mut Compressor) -> T) -> T {
    let mut f = Some(f);
    let reused = COMPRESSOR.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let compressor = slot.get_or_insert_with(Compressor::new);
        Some((f.take().expect("called once"))(compressor))
    });
    match reused {
        Ok(Some(out)) => out,
        _ => (f.take().expect("called once"))(&mut Compressor::new()),
    }
}

/// Runs `f` with this thread's reused `Decompressor` (or a fresh one, as
/// `with_compressor`).
fn with_decompressor<T>(f: impl FnOnce(&mut Decompressor) -> T) -> T {
    let mut f = Some(f);
    let reused = DECOMPRESSOR.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let decompressor = slot.get_or_insert_with(Decompressor::new);
        Some((f.take().expect("called once"))(decompressor))
    });
    match reused {
        Ok(Some(out)) => out,
        _ => (f.take().expect("called once"))(&mut Decompressor::new()),
    }
}

/// Runs `f` with this thread's reused decompression context (shared with
/// `decompress`); used by `stream::decode_all`.
pub(crate) fn with_dctx<T>(
    f: impl FnOnce(&mut zstd_safe::DCtx<'static>) -> T,
) -> T {
    with_decompressor(|d| f(d.context_mut()))
}

/// Compresses a single block of data to the given destination buffer.
///
/// Returns the number of bytes written, or an error if something happened
/// (for instance if the destination buffer was too small).
///
/// A level of `0` uses zstd's default (currently `3`).
pub fn compress_to_buffer(
    source: &[u8],
    destination: &mut [u8],
    level: i32,
) -> io::Result<usize> {
    with_compressor(|c| c.compress_to_buffer(source, destination, level))
}

/// Compresses a block of data and returns the compressed result.
///
/// A level of `0` uses zstd's default (currently `3`).
pub fn compress(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    with_compressor(|c| c.compress(data, level))
}

/// Deompress a single block of data to the given destination buffer.
///
/// Returns the number of bytes written, or an error if something happened
/// (for instance if the destination buffer was too small).
pub fn decompress_to_buffer(
    source: &[u8],
    destination: &mut [u8],
) -> io::Result<usize> {
    with_decompressor(|d| d.decompress_to_buffer(source, destination))
}

/// Decompresses a block of data and returns the decompressed result.
///
/// The decompressed data should be less than `capacity` bytes,
/// or an error will be returned.
pub fn decompress(data: &[u8], capacity: usize) -> io::Result<Vec<u8>> {
    with_decompressor(|d| d.decompress(data, capacity))
}

#[cfg(test)]
mod tests {
    use super::{compress, decompress};

    #[test]
    fn test_direct() {
        // Can we include_str!("assets/example.txt")?
        // It's excluded from the packaging step, so maybe not.
        let text = include_str!("../../assets/example.txt");
        crate::test_cycle_unwrap(
            text.as_bytes(),
            |data| compress(data, 1),
            |data| decompress(data, text.len()),
        );
    }
}
