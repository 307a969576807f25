//! Digests as the wire spells them, and deterministic test bytes.

use sha2::{Digest as _, Sha256, Sha512};

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha512:<hex>` of `bytes`.
pub fn sha512_digest(bytes: &[u8]) -> String {
    format!("sha512:{}", hex::encode(Sha512::digest(bytes)))
}

/// The hex part of a `sha256:` digest.
pub fn digest_hex(digest: &str) -> &str {
    digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"))
}

/// Deterministic bytes that do not compress (xorshift64*): the same seed
/// gives the same bytes, different seeds give different blobs.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_deterministic_and_seeded() {
        assert_eq!(pseudo_random(7, 1000), pseudo_random(7, 1000));
        assert_ne!(pseudo_random(7, 1000), pseudo_random(8, 1000));
        assert_eq!(pseudo_random(7, 13).len(), 13);
    }

    #[test]
    fn digests_are_spelled_as_on_the_wire() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(sha512_digest(b"").starts_with("sha512:cf83e1357eefb8bd"));
        assert_eq!(digest_hex(&sha256_digest(b"")).len(), 64);
    }
}
