//! The generator's only source of randomness, and the random IDs drawn from it.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; constants of Vigna's reference implementation).
///
/// The state is a counter advanced by the golden-ratio increment; each output
/// is the counter passed through a 64-bit finaliser ([`mix`]). It passes
/// BigCrush, needs no warm-up and costs a handful of instructions, and since
/// [`mix`] is a good hash, [`SplitMix64::stream`] derives independent streams
/// from a key. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// What a stream is for (the `tag` of [`SplitMix64::stream`]).
pub(super) const TAG_WORLD: u64 = 1;
pub(super) const TAG_PARTNER: u64 = 2;
pub(super) const TAG_CUSTOMER: u64 = 3;
pub(super) const TAG_SLOT: u64 = 4;
pub(super) const TAG_ROW: u64 = 5;
pub(super) const TAG_DESIGNATION: u64 = 6;

/// The SplitMix64 finaliser (a variant of MurmurHash3's `fmix64`): a bijection
/// on `u64` that spreads every input bit over every output bit.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// An independent stream for one thing to generate: `tag` says what kind of
    /// thing (see the `TAG_*` constants), `index` which one.
    pub fn stream(seed: u64, tag: u64, index: u64) -> SplitMix64 {
        SplitMix64::new(mix(seed ^ mix(tag ^ mix(index.wrapping_add(GOLDEN_GAMMA)))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n` = 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index into `weights`, with probability proportional to the weight.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// A GUID in lower-case text form.
pub(super) type Guid = [u8; 36];

/// A random (version 4, RFC 4122 variant) GUID.
pub(super) fn guid(rng: &mut SplitMix64) -> Guid {
    let hi = rng.next_u64();
    let lo = rng.next_u64();
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & !(0xC << 60)) | (0x8 << 60);
    crate::text::guid_text(u128::from(hi) << 64 | u128::from(lo))
}

/// `N` characters of `[0-9A-Za-z]`, like Partner Center order IDs.
pub(super) fn alphanumeric<const N: usize>(rng: &mut SplitMix64) -> [u8; N] {
    const ABC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [0u8; N];
    for c in out.iter_mut() {
        *c = ABC[rng.below(62) as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prng_is_splitmix64() {
        // First outputs of Vigna's reference splitmix64.c seeded with 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        let mut r = SplitMix64::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn guids_are_version_4() {
        let g = guid(&mut SplitMix64::new(1));
        let s = std::str::from_utf8(&g).unwrap();
        let parts: Vec<&str> = s.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4') && parts[3].starts_with(['8', '9', 'a', 'b']));
    }
}
