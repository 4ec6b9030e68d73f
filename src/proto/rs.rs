//! Per-chunk Reed–Solomon as `reedsolo.RSCodec(32)` produces it (§6.1): GF(2^8)/0x11d,
//! α = 2, first consecutive root 0, 32 parity symbols, systematic (message ‖ parity).
//!
//! Only the encoder exists. A receiver checks the manifest's `sha256(wire)` before
//! anything else, so a wire that reaches RS decoding is exactly what the sender
//! produced; verifying the 8-byte checksum and taking the message bytes is equivalent
//! on every such wire (§6.1, T30). See `records::chunk::unwrap_block`.

use super::gf256;

/// Number of parity symbols.
pub const PARITY: usize = 32;

/// `g(x) = ∏_{i=0}^{31} (x − α^i)`, highest degree first (monic: `G[0] = 1`).
fn generator() -> [u8; PARITY + 1] {
    let mut g = [0u8; PARITY + 1];
    g[0] = 1;
    for i in 0..PARITY {
        let root = gf256::exp(i);
        // Multiply the degree-i polynomial g[0..=i] by (x + root).
        for j in (1..=i + 1).rev() {
            g[j] ^= gf256::mul(g[j - 1], root);
        }
    }
    g
}

/// Systematic codeword: `message ‖ (message·x^32 mod g(x))`. DMP always encodes
/// 128-byte blocks, giving RS(160, 128).
pub fn encode(message: &[u8]) -> Vec<u8> {
    let g = generator();
    let mut parity = [0u8; PARITY];
    for &m in message {
        let feedback = m ^ parity[0];
        parity.copy_within(1.., 0);
        parity[PARITY - 1] = 0;
        gf256::mul_add(&mut parity, feedback, &g[1..]);
    }
    let mut out = Vec::with_capacity(message.len() + PARITY);
    out.extend_from_slice(message);
    out.extend_from_slice(&parity);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A codeword evaluates to zero at every root α^0..α^31.
    #[test]
    fn codeword_has_all_roots() {
        let msg: Vec<u8> = (0..128u32).map(|i| (i * 37 + 11) as u8).collect();
        let cw = encode(&msg);
        assert_eq!(cw.len(), 160);
        for i in 0..PARITY {
            let x = gf256::exp(i);
            let v = cw.iter().fold(0u8, |acc, &c| gf256::mul(acc, x) ^ c);
            assert_eq!(v, 0, "root α^{i}");
        }
    }
}
