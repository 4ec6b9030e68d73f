//! GF(2^8) with primitive polynomial 0x11d and generator α = 2: the field of both the
//! per-chunk Reed–Solomon code (§6.1) and the zfec k-of-n erasure code (§6.2).

/// `EXP[i] = α^i`, doubled in length so `EXP[log a + log b]` needs no reduction.
const EXP: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        t[i] = x as u8;
        t[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    t[510] = t[0];
    t[511] = t[1];
    t
};

/// `LOG[a]` = i with α^i = a, for a ≠ 0 (`LOG[0]` is unused).
const LOG: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        t[EXP[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// α^e for any exponent (reduced mod 255).
pub fn exp(e: usize) -> u8 {
    EXP[e % 255]
}

/// Product in GF(2^8).
pub fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        EXP[LOG[a as usize] as usize + LOG[b as usize] as usize]
    }
}

/// Multiplicative inverse; `None` for 0.
pub fn inv(a: u8) -> Option<u8> {
    (a != 0).then(|| EXP[255 - LOG[a as usize] as usize])
}

/// `dst[i] ^= c · src[i]`, the inner loop of both codes.
pub fn mul_add(dst: &mut [u8], c: u8, src: &[u8]) {
    if c == 0 {
        return;
    }
    let lc = LOG[c as usize] as usize;
    for (d, &s) in dst.iter_mut().zip(src) {
        if s != 0 {
            *d ^= EXP[lc + LOG[s as usize] as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_laws() {
        assert_eq!(exp(8), 0x1d);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a).unwrap()), 1, "inverse of {a}");
        }
        assert_eq!(inv(0), None);
        assert_eq!(mul(0, 7), 0);
        let mut d = [1u8, 2, 3];
        mul_add(&mut d, 2, &[0x80, 0, 1]);
        assert_eq!(d, [1 ^ 0x1d, 2, 3 ^ 2]);
    }
}
