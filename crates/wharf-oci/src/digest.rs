//! Content digests (`<algorithm>:<encoded>`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

/// The digest algorithms wharf can verify. The image spec registers these two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lower-case hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        Hasher::of(self)
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} is not of the form <algorithm>:<hex>")]
    Malformed(String),
    #[error("digest algorithm {0:?} is not supported (sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error("digest {0:?} does not have the length or lower-case hex its algorithm requires")]
    BadEncoding(String),
}

/// A validated digest. Only algorithms wharf can verify are representable, so
/// holding a `Digest` means the content can be checked against it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self, DigestError> {
        let valid = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(DigestError::BadEncoding(format!("{algorithm}:{hex}")));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lower-case hex part (the spec's "encoded" part).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Digest of a byte slice.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        // The grammar allows `alg+alg` components; anything we cannot verify is
        // "unsupported" rather than "malformed" so callers can answer precisely.
        let alg_ok = !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
        let hex_ok = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
        if !alg_ok || !hex_ok {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Digest::new(alg.parse()?, hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental hashing for one of the supported algorithms. Cloning is cheap
/// (a few hundred bytes), which lets callers checkpoint a running hash.
///
/// The running state can be exported ([`Hasher::export`]) and imported again
/// in another process, so an upload whose bytes are spread over several
/// servers (object-storage multipart uploads) never has to be read back to be
/// verified. The state is the SHA-2 chaining value plus the unprocessed tail
/// of the last block, driven by `sha2`'s own block functions.
#[derive(Clone)]
pub struct Hasher {
    engine: Engine,
}

#[derive(Clone)]
enum Engine {
    Sha256(Running<u32, 64>),
    Sha512(Running<u64, 128>),
}

/// A SHA-2 computation between blocks: the chaining value, the bytes of the
/// current partial block and the total length so far.
#[derive(Clone)]
struct Running<W, const B: usize> {
    chain: [W; 8],
    pending: [u8; B],
    pending_len: usize,
    total: u64,
}

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const SHA512_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];

/// Whole blocks handed to `sha2` per call. The block functions take typed
/// block arrays, so input is copied into this many at a time: large enough
/// that the copy and per-call overhead vanish next to the hashing itself.
const BATCH_BLOCKS: usize = 64;

fn compress256(chain: &mut [u32; 8], blocks: &[u8]) {
    use sha2::digest::generic_array::{typenum::U64, GenericArray};
    let mut batch = [GenericArray::<u8, U64>::default(); BATCH_BLOCKS];
    for group in blocks.chunks(64 * BATCH_BLOCKS) {
        let n = group.len() / 64;
        for (block, src) in batch.iter_mut().zip(group.chunks_exact(64)) {
            block.copy_from_slice(src);
        }
        sha2::compress256(chain, &batch[..n]);
    }
}

fn compress512(chain: &mut [u64; 8], blocks: &[u8]) {
    use sha2::digest::generic_array::{typenum::U128, GenericArray};
    let mut batch = [GenericArray::<u8, U128>::default(); BATCH_BLOCKS / 2];
    for group in blocks.chunks(128 * (BATCH_BLOCKS / 2)) {
        let n = group.len() / 128;
        for (block, src) in batch.iter_mut().zip(group.chunks_exact(128)) {
            block.copy_from_slice(src);
        }
        sha2::compress512(chain, &batch[..n]);
    }
}

impl<W: Copy, const B: usize> Running<W, B> {
    fn new(iv: [W; 8]) -> Self {
        Running {
            chain: iv,
            pending: [0; B],
            pending_len: 0,
            total: 0,
        }
    }

    /// Feed `data`, compressing every block that fills up.
    fn update(&mut self, mut data: &[u8], compress: fn(&mut [W; 8], &[u8])) {
        self.total += data.len() as u64;
        if self.pending_len > 0 {
            let take = (B - self.pending_len).min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            self.pending_len += take;
            data = &data[take..];
            if self.pending_len < B {
                return;
            }
            compress(&mut self.chain, &self.pending);
            self.pending_len = 0;
        }
        let whole = data.len() - data.len() % B;
        if whole > 0 {
            compress(&mut self.chain, &data[..whole]);
        }
        let rest = &data[whole..];
        self.pending[..rest.len()].copy_from_slice(rest);
        self.pending_len = rest.len();
    }

    /// FIPS 180-4 padding: `0x80`, zeros, then the bit length big-endian in
    /// the last `len_bytes` of the final block.
    fn finish(mut self, len_bytes: usize, compress: fn(&mut [W; 8], &[u8])) -> [W; 8] {
        let bits = (self.total as u128) * 8;
        let mut tail = Vec::with_capacity(2 * B);
        tail.extend_from_slice(&self.pending[..self.pending_len]);
        tail.push(0x80);
        while tail.len() % B != B - len_bytes {
            tail.push(0);
        }
        tail.extend_from_slice(&bits.to_be_bytes()[16 - len_bytes..]);
        compress(&mut self.chain, &tail);
        self.chain
    }
}

/// The exported state of a running [`Hasher`]: plain data, safe to store and
/// to hand to another process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HasherState {
    pub algorithm: String,
    /// Bytes hashed so far.
    pub length: u64,
    /// The chaining value, eight big-endian words, hex-encoded.
    pub chain: String,
    /// The bytes of the unfinished block, hex-encoded.
    pub pending: String,
}

impl Hasher {
    fn of(algorithm: Algorithm) -> Hasher {
        let engine = match algorithm {
            Algorithm::Sha256 => Engine::Sha256(Running::new(SHA256_IV)),
            Algorithm::Sha512 => Engine::Sha512(Running::new(SHA512_IV)),
        };
        Hasher { engine }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.engine {
            Engine::Sha256(_) => Algorithm::Sha256,
            Engine::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        match &self.engine {
            Engine::Sha256(r) => r.total,
            Engine::Sha512(r) => r.total,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.engine {
            Engine::Sha256(r) => r.update(bytes, compress256),
            Engine::Sha512(r) => r.update(bytes, compress512),
        }
    }

    pub fn finish(self) -> Digest {
        let algorithm = self.algorithm();
        let out: Vec<u8> = match self.engine {
            Engine::Sha256(r) => r
                .finish(8, compress256)
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect(),
            Engine::Sha512(r) => r
                .finish(16, compress512)
                .iter()
                .flat_map(|w| w.to_be_bytes())
                .collect(),
        };
        Digest {
            algorithm,
            hex: hex::encode(out),
        }
    }

    /// The state to resume this computation elsewhere with [`Hasher::import`].
    pub fn export(&self) -> HasherState {
        let (chain, pending, length) = match &self.engine {
            Engine::Sha256(r) => (
                r.chain
                    .iter()
                    .flat_map(|w| w.to_be_bytes())
                    .collect::<Vec<_>>(),
                &r.pending[..r.pending_len],
                r.total,
            ),
            Engine::Sha512(r) => (
                r.chain
                    .iter()
                    .flat_map(|w| w.to_be_bytes())
                    .collect::<Vec<_>>(),
                &r.pending[..r.pending_len],
                r.total,
            ),
        };
        HasherState {
            algorithm: self.algorithm().to_string(),
            length,
            chain: hex::encode(chain),
            pending: hex::encode(pending),
        }
    }

    /// Resume a computation from [`Hasher::export`]'s output. Refuses states
    /// whose parts do not fit together.
    pub fn import(state: &HasherState) -> Result<Hasher, HasherStateError> {
        let algorithm: Algorithm = state
            .algorithm
            .parse()
            .map_err(|_| HasherStateError(format!("unknown algorithm {:?}", state.algorithm)))?;
        let chain = hex::decode(&state.chain)
            .map_err(|e| HasherStateError(format!("chaining value: {e}")))?;
        let pending = hex::decode(&state.pending)
            .map_err(|e| HasherStateError(format!("pending bytes: {e}")))?;
        let mut hasher = Hasher::of(algorithm);
        match &mut hasher.engine {
            Engine::Sha256(r) => restore(r, &chain, &pending, state.length, |b| {
                u32::from_be_bytes(b.try_into().expect("4-byte word"))
            })?,
            Engine::Sha512(r) => restore(r, &chain, &pending, state.length, |b| {
                u64::from_be_bytes(b.try_into().expect("8-byte word"))
            })?,
        }
        Ok(hasher)
    }
}

fn restore<W: Copy, const B: usize>(
    r: &mut Running<W, B>,
    chain: &[u8],
    pending: &[u8],
    length: u64,
    word: fn(&[u8]) -> W,
) -> Result<(), HasherStateError> {
    let width = std::mem::size_of::<W>();
    if chain.len() != 8 * width {
        return Err(HasherStateError(format!(
            "chaining value has {} bytes, expected {}",
            chain.len(),
            8 * width
        )));
    }
    if pending.len() >= B || length % B as u64 != pending.len() as u64 {
        return Err(HasherStateError(format!(
            "{} pending bytes do not match a length of {length}",
            pending.len()
        )));
    }
    for (slot, bytes) in r.chain.iter_mut().zip(chain.chunks_exact(width)) {
        *slot = word(bytes);
    }
    r.pending[..pending.len()].copy_from_slice(pending);
    r.pending_len = pending.len();
    r.total = length;
    Ok(())
}

/// A [`HasherState`] that cannot be resumed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hash state is invalid: {0}")]
pub struct HasherStateError(String);

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_round_trip() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn sha512_is_supported() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert!(d.hex().starts_with("ddaf35a193617aba"));
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_bad_digests() {
        assert!(matches!(
            "sha256".parse::<Digest>(),
            Err(DigestError::Malformed(_))
        ));
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
                .parse::<Digest>(),
            Err(DigestError::BadEncoding(_))
        ));
        assert!(matches!(
            "sha256:abc".parse::<Digest>(),
            Err(DigestError::BadEncoding(_))
        ));
        assert!("sha256:../../etc/passwd".parse::<Digest>().is_err());
        assert!(":abc".parse::<Digest>().is_err());
    }

    #[test]
    fn incremental_hash_matches_one_shot() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"hello ");
        let checkpoint = h.clone();
        h.update(b"world");
        assert_eq!(h.finish(), Digest::sha256_of(b"hello world"));
        assert_eq!(checkpoint.finish(), Digest::sha256_of(b"hello "));
    }

    fn reference(algorithm: Algorithm, data: &[u8]) -> String {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(data)),
            Algorithm::Sha512 => hex::encode(sha2::Sha512::digest(data)),
        }
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
    }

    #[test]
    fn matches_sha2_for_every_length_around_block_edges() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for len in (0..600).chain([4095, 4096, 4097, 70_000, 262_145]) {
                let data = sample(len);
                let d = Digest::of(algorithm, &data);
                assert_eq!(
                    d.hex(),
                    reference(algorithm, &data),
                    "{algorithm} of {len} bytes"
                );
            }
        }
    }

    #[test]
    fn split_updates_and_exported_states_agree_with_sha2() {
        let data = sample(300_000);
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let expected = reference(algorithm, &data);
            for split in [
                0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 4096, 9999, 299_999,
            ] {
                let mut h = algorithm.hasher();
                h.update(&data[..split]);
                let state = h.export();
                // The state survives a JSON round trip, as it does in storage.
                let json = serde_json::to_string(&state).unwrap();
                let state: HasherState = serde_json::from_str(&json).unwrap();
                let mut resumed = Hasher::import(&state).unwrap();
                assert_eq!(resumed.len(), split as u64);
                for piece in data[split..].chunks(7777) {
                    resumed.update(piece);
                }
                assert_eq!(
                    resumed.finish().hex(),
                    expected,
                    "{algorithm} split at {split}"
                );
            }
        }
    }

    #[test]
    fn inconsistent_states_are_refused() {
        let mut h = Algorithm::Sha256.hasher();
        h.update(b"hello");
        let good = h.export();
        let mut wrong_length = good.clone();
        wrong_length.length = 6;
        assert!(Hasher::import(&wrong_length).is_err());
        let mut short_chain = good.clone();
        short_chain.chain.truncate(10);
        assert!(Hasher::import(&short_chain).is_err());
        let mut unknown = good.clone();
        unknown.algorithm = "md5".into();
        assert!(Hasher::import(&unknown).is_err());
        assert_eq!(
            Hasher::import(&good).unwrap().finish(),
            Digest::sha256_of(b"hello")
        );
    }
}
