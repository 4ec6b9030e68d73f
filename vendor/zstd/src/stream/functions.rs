use std::io;

use super::{Decoder, Encoder};

/// Decompress from the given source as if using a `Decoder`.
///
/// The input data must be in the zstd frame format.
pub fn decode_all<R: io::Read>(mut source: R) -> io::Result<Vec<u8>> {
    // dnsmesh patch (see README-dnsmesh.md): decode into the result directly
    // with this thread's reused decompression context, instead of a `Decoder`
    // with a fresh context and a fresh 128 KiB input buffer per call. Same
    // results and errors as upstream's `copy_decode` into a `Vec`: frames are
    // concatenated until the input ends; empty or truncated input is an
    // "incomplete frame" error.
    let mut input = Vec::new();
    source.read_to_end(&mut input)?;
    crate::block::with_dctx(|dctx| decode_frames(dctx, &input))
}

/// `decode_all` of `input` with `dctx`.
fn decode_frames(
    dctx: &mut zstd_safe::DCtx<'static>,
    input: &[u8],
) -> io::Result<Vec<u8>> {
    let incomplete =
        || io::Error::new(io::ErrorKind::UnexpectedEof, "incomplete frame");
    if input.is_empty() {
        return Err(incomplete());
    }
    dctx.reset().map_err(crate::map_error_code)?;
    // The first frame's declared size (sled's frames carry it), bounded: it
    // is a hint, not trusted.
    let declared = zstd_safe::get_frame_content_size(input);
    let hint = if declared <= (input.len() as u64).saturating_mul(64) {
        declared as usize
    } else {
        input.len().saturating_mul(4)
    };
    let mut out: Vec<u8> = Vec::with_capacity(hint.max(64));
    let mut src = zstd_safe::InBuffer::around(input);
    let mut frame_done = false;
    loop {
        if frame_done {
            if src.pos() == input.len() {
                return Ok(out);
            }
            // Another frame follows: a fresh session, as upstream's reader.
            dctx.reset().map_err(crate::map_error_code)?;
            frame_done = false;
        }
        if out.len() == out.capacity() {
            let more = out.capacity().max(zstd_safe::DCtx::out_size());
            out.reserve(more);
        }
        let start = out.len();
        let (left, written) = {
            let mut dst = zstd_safe::OutBuffer::around_pos(&mut out, start);
            let left = dctx
                .decompress_stream(&mut dst, &mut src)
                .map_err(crate::map_error_code)?;
            (left, dst.pos())
        };
        if left == 0 {
            frame_done = true;
        } else if src.pos() == input.len() && written < out.capacity() {
            // All input given, room left in the output, frame not done.
            return Err(incomplete());
        }
    }
}

/// Decompress from the given source as if using a `Decoder`.
///
/// Decompressed data will be appended to `destination`.
pub fn copy_decode<R, W>(source: R, mut destination: W) -> io::Result<()>
where
    R: io::Read,
    W: io::Write,
{
    let mut decoder = Decoder::new(source)?;
    io::copy(&mut decoder, &mut destination)?;
    Ok(())
}

/// Compress all data from the given source as if using an `Encoder`.
///
/// Result will be in the zstd frame format.
///
/// A level of `0` uses zstd's default (currently `3`).
pub fn encode_all<R: io::Read>(source: R, level: i32) -> io::Result<Vec<u8>> {
    let mut result = Vec::<u8>::new();
    copy_encode(source, &mut result, level)?;
    Ok(result)
}

/// Compress all data from the given source as if using an `Encoder`.
///
/// Compressed data will be appended to `destination`.
///
/// A level of `0` uses zstd's default (currently `3`).
pub fn copy_encode<R, W>(
    mut source: R,
    destination: W,
    level: i32,
) -> io::Result<()>
where
    R: io::Read,
    W: io::Write,
{
    let mut encoder = Encoder::new(destination, level)?;
    io::copy(&mut source, &mut encoder)?;
    encoder.finish()?;
    Ok(())
}

#[cfg(tests)]
mod tests {}
