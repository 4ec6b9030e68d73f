//! Cross-chunk k-of-n erasure coding, byte-compatible with `zfec` as the reference uses
//! it (§6.2): the message gets a 4-byte big-endian length prefix, is zero-padded to k
//! 128-byte data blocks, and n − k parity shares are added; any k distinct shares
//! rebuild it.
//!
//! zfec works over GF(2^8) with one evaluation point per share, so it cannot produce
//! more than 256 shares; the reference's encoder raises for n > 256 even though the
//! manifest format allows up to 1024. [`encode`] refuses such sizes up front.

use super::gf256;
use super::ProtoError;

/// Size of every data block and share.
pub const BLOCK: usize = 128;
/// Most shares zfec can produce (one per field element).
pub const MAX_SHARES: usize = 256;
/// Bytes of the big-endian length prefix.
const LEN_PREFIX: usize = 4;

/// `(k, n)` for a message of `len` bytes: `k = max(1, ceil((len + 4) / 128))`,
/// `n = k + max(1, ceil(k · 0.3))` (the 0.3 product in f64, as Python computes it).
pub fn choose_kn(len: usize) -> (usize, usize) {
    let k = len.saturating_add(LEN_PREFIX).div_ceil(BLOCK).max(1);
    let parity = ((k as f64) * 0.3).ceil().max(1.0) as usize;
    (k, k.saturating_add(parity))
}

/// `uint32_be(len) ‖ data ‖ zeros` up to `k · 128` bytes. Errors when the data does not
/// fit in k blocks or is longer than a u32 can describe.
pub fn pad(data: &[u8], k: usize) -> Result<Vec<u8>, ProtoError> {
    let len = u32::try_from(data.len()).map_err(|_| ProtoError::field("data", "too long"))?;
    let total = k.checked_mul(BLOCK).ok_or(ProtoError::field("k", "too large"))?;
    if data.len().saturating_add(LEN_PREFIX) > total {
        return Err(ProtoError::field("k", "too small for the data"));
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    out.resize(total, 0);
    Ok(out)
}

/// Row `r` of zfec's n×k Vandermonde matrix: `[1, 0, …, 0]` for r = 0, else
/// `α^((r−1)·c mod 255)` for c in 0..k.
fn vandermonde_row(r: usize, k: usize) -> Vec<u8> {
    if r == 0 {
        let mut row = vec![0u8; k];
        row[0] = 1;
        row
    } else {
        (0..k).map(|c| gf256::exp(((r - 1) % 255) * c % 255)).collect()
    }
}

/// Invert a k×k row-major matrix by Gauss–Jordan elimination; `None` if singular.
fn invert(mut m: Vec<u8>, k: usize) -> Option<Vec<u8>> {
    let mut inv = vec![0u8; k * k];
    for i in 0..k {
        inv[i * k + i] = 1;
    }
    for col in 0..k {
        let pivot = (col..k).find(|&r| m[r * k + col] != 0)?;
        if pivot != col {
            for c in 0..k {
                m.swap(pivot * k + c, col * k + c);
                inv.swap(pivot * k + c, col * k + c);
            }
        }
        let f = gf256::inv(m[col * k + col])?;
        for c in 0..k {
            m[col * k + c] = gf256::mul(m[col * k + c], f);
            inv[col * k + c] = gf256::mul(inv[col * k + c], f);
        }
        let (prow, pinv) = (m[col * k..col * k + k].to_vec(), inv[col * k..col * k + k].to_vec());
        for r in (0..k).filter(|&r| r != col) {
            let factor = m[r * k + col];
            if factor != 0 {
                gf256::mul_add(&mut m[r * k..r * k + k], factor, &prow);
                gf256::mul_add(&mut inv[r * k..r * k + k], factor, &pinv);
            }
        }
    }
    Some(inv)
}

/// The systematic encoding matrix `E = V · T⁻¹` restricted to the requested rows
/// (rows < k are unit vectors). Each returned row has k coefficients.
fn encoding_rows(rows: &[usize], k: usize) -> Option<Vec<Vec<u8>>> {
    let t_inv = if rows.iter().any(|&r| r >= k) {
        let top: Vec<u8> = (0..k).flat_map(|r| vandermonde_row(r, k)).collect();
        invert(top, k)?
    } else {
        Vec::new()
    };
    Some(
        rows.iter()
            .map(|&r| {
                if r < k {
                    let mut row = vec![0u8; k];
                    row[r] = 1;
                    row
                } else {
                    let v = vandermonde_row(r, k);
                    let mut row = vec![0u8; k];
                    for (j, &vj) in v.iter().enumerate() {
                        gf256::mul_add(&mut row, vj, &t_inv[j * k..j * k + k]);
                    }
                    row
                }
            })
            .collect(),
    )
}

/// Raw zfec encode: k equal-length data blocks to n shares (shares 0..k−1 are the
/// blocks themselves). Refuses an empty block list, unequal blocks and n outside k..=256.
pub fn encode_blocks(blocks: &[&[u8]], n: usize) -> Result<Vec<Vec<u8>>, ProtoError> {
    let k = blocks.len();
    if k == 0 || n < k || n > MAX_SHARES {
        return Err(ProtoError::field("total_chunks", format!("need 1 <= k <= n <= {MAX_SHARES}")));
    }
    let size = blocks[0].len();
    if blocks.iter().any(|b| b.len() != size) {
        return Err(ProtoError::field("blocks", "must all have the same length"));
    }
    let rows: Vec<usize> = (k..n).collect();
    let matrix = encoding_rows(&rows, k).ok_or(ProtoError::Malformed("singular zfec matrix"))?;
    let mut shares: Vec<Vec<u8>> = blocks.iter().map(|b| b.to_vec()).collect();
    for row in matrix {
        let mut share = vec![0u8; size];
        for (coef, block) in row.iter().zip(blocks) {
            gf256::mul_add(&mut share, *coef, block);
        }
        shares.push(share);
    }
    Ok(shares)
}

/// Encode `data` into n shares of 128 bytes; shares 0..k−1 are the padded data blocks.
/// Returns `(shares, k, n)`. Refuses n > 256 (zfec's limit).
pub fn encode(data: &[u8]) -> Result<(Vec<Vec<u8>>, usize, usize), ProtoError> {
    let (k, n) = choose_kn(data.len());
    if n > MAX_SHARES {
        return Err(ProtoError::field(
            "total_chunks",
            format!("{n} shares exceed zfec's {MAX_SHARES}"),
        ));
    }
    let padded = pad(data, k)?;
    let blocks: Vec<&[u8]> = padded.chunks(BLOCK).collect();
    Ok((encode_blocks(&blocks, n)?, k, n))
}

/// Raw zfec decode: the k data blocks from shares `(index, bytes)`. As the reference
/// does, the k lowest distinct indices are used. `None` on too few shares, an index
/// ≥ n, n > 256, or shares of unequal length.
pub fn decode_blocks(shares: &[(usize, &[u8])], k: usize, n: usize) -> Option<Vec<Vec<u8>>> {
    if k == 0 || k > n || n > MAX_SHARES {
        return None;
    }
    let mut chosen: Vec<(usize, &[u8])> = shares.to_vec();
    chosen.sort_by_key(|(i, _)| *i);
    chosen.dedup_by_key(|(i, _)| *i);
    if chosen.iter().any(|(i, _)| *i >= n) {
        return None;
    }
    chosen.truncate(k);
    if chosen.len() < k {
        return None;
    }
    let size = chosen[0].1.len();
    if chosen.iter().any(|(_, s)| s.len() != size) {
        return None;
    }
    let indices: Vec<usize> = chosen.iter().map(|(i, _)| *i).collect();
    let decode_matrix = invert(encoding_rows(&indices, k)?.concat(), k)?;
    Some(
        (0..k)
            .map(|c| {
                let mut block = vec![0u8; size];
                for (j, (_, share)) in chosen.iter().enumerate() {
                    gf256::mul_add(&mut block, decode_matrix[c * k + j], share);
                }
                block
            })
            .collect(),
    )
}

/// Rebuild the message from shares `(index, bytes)`: [`decode_blocks`], then read the
/// 4-byte length prefix and return that many bytes (`None` if it overruns the blocks).
pub fn decode(shares: &[(usize, &[u8])], k: usize, n: usize) -> Option<Vec<u8>> {
    let padded = decode_blocks(shares, k, n)?.concat();
    let len = u32::from_be_bytes(padded.get(..LEN_PREFIX)?.try_into().ok()?) as usize;
    padded.get(LEN_PREFIX..LEN_PREFIX.checked_add(len)?).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kn_table() {
        assert_eq!(choose_kn(0), (1, 2));
        assert_eq!(choose_kn(124), (1, 2));
        assert_eq!(choose_kn(125), (2, 3));
        assert_eq!(choose_kn(360), (3, 4));
        // Largest message zfec can carry: k = 196, n = 255; one more block needs n = 257.
        assert_eq!(choose_kn(196 * 128 - 4), (196, 255));
        assert_eq!(choose_kn(196 * 128 - 3), (197, 257));
        for k in 1..=1024usize {
            assert_eq!(((k as f64) * 0.3).ceil() as usize, (3 * k).div_ceil(10), "k={k}");
        }
    }

    #[test]
    fn k1_parity_equals_block() {
        let (shares, k, n) = encode(b"hello").unwrap();
        assert_eq!((k, n), (1, 2));
        assert_eq!(shares[0], shares[1]);
        assert_eq!(decode(&[(1, &shares[1])], 1, 2).unwrap(), b"hello");
    }

    #[test]
    fn too_large_refused_and_bad_inputs() {
        assert!(encode(&vec![0u8; 196 * 128 - 3]).is_err());
        assert!(encode(&vec![0u8; 196 * 128 - 4]).is_ok());
        assert_eq!(decode(&[], 1, 2), None);
        assert_eq!(decode(&[(0, &[0u8; 3][..])], 1, 2), None);
        assert_eq!(decode(&[(5, &[0u8; 8][..])], 1, 2), None);
        assert_eq!(decode(&[(0, &[0, 0, 0, 9, 1][..])], 1, 2), None);
        assert_eq!(decode(&[(0, &[0, 0, 0, 1, 7][..])], 1, 2), Some(vec![7]));
    }
}
