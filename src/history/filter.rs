//! A Bloom filter of one close's charge keys, stored with the close, so that
//! a credit line's look-up skips the closed periods that cannot hold its
//! charge instead of seeking each one's key table.
//!
//! With 12 closed 1M-row months, a month's 13,800 credit lines made 165,000
//! seeks into key tables on disk, most of them finding nothing; the filter
//! answers "not here" from memory for all but ~1 % of those. It never says
//! "not here" for a key that was inserted, so a charge is never missed. The
//! hash is written out here (FNV-1a, then a SplitMix64 step for the second
//! probe) so a filter stored by one build reads the same in every other.

/// Bits per key: with [`PROBES`] probes, about 0.8 % false positives.
const BITS_PER_KEY: usize = 10;
const PROBES: u32 = 7;

/// The filter. Keys are a few text parts (reference ID; or subscription,
/// product, SKU), hashed with a separator that UTF-8 text never contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFilter {
    bits: Vec<u64>,
}

impl KeyFilter {
    /// An empty filter sized for `keys` keys.
    pub fn with_capacity(keys: usize) -> KeyFilter {
        let words = (keys.max(1) * BITS_PER_KEY).div_ceil(64);
        KeyFilter {
            bits: vec![0; words],
        }
    }

    #[cfg(test)]
    pub fn insert(&mut self, key: &[&str]) {
        let m = self.bits.len() as u64 * 64;
        for bit in probes(key, m) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Inserts a key given as its parts joined by the byte 0xff (the same
    /// key as `insert` of the parts).
    pub fn insert_joined(&mut self, key: &[u8]) {
        let m = self.bits.len() as u64 * 64;
        for bit in probes_of(fnv(key.iter().copied()), m) {
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// `false`: the key was never inserted. `true`: it may have been.
    #[cfg(test)]
    pub fn may_contain(&self, key: &[&str]) -> bool {
        let m = self.bits.len() as u64 * 64;
        probes(key, m).all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// `false`: the key, given as its parts joined by the byte 0xff (as
    /// [`KeyFilter::insert_joined`] takes it), was never inserted. `true`:
    /// it may have been.
    pub fn may_contain_joined(&self, key: &[u8]) -> bool {
        let m = self.bits.len() as u64 * 64;
        probes_of(fnv(key.iter().copied()), m)
            .all(|bit| self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// The stored form: the words, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bits.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// `None` for bytes no filter was stored as (empty, or not whole words).
    pub fn from_bytes(bytes: &[u8]) -> Option<KeyFilter> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(8) {
            return None;
        }
        let bits = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Some(KeyFilter { bits })
    }
}

/// The bit positions of `key` in a filter of `m` bits (double hashing).
#[cfg(test)]
fn probes(key: &[&str], m: u64) -> impl Iterator<Item = u64> {
    let joined = key
        .iter()
        .enumerate()
        .flat_map(|(i, part)| (i > 0).then_some(0xff).into_iter().chain(part.bytes()));
    probes_of(fnv(joined), m)
}

/// FNV-1a of the key's bytes (its parts joined by 0xff).
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn probes_of(h: u64, m: u64) -> impl Iterator<Item = u64> {
    let h1 = h;
    let h2 = splitmix64(h) | 1;
    (0..u64::from(PROBES)).map(move |j| h1.wrapping_add(j.wrapping_mul(h2)) % m)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_inserted_key_is_found_and_few_others_are() {
        let n = 50_000;
        let mut f = KeyFilter::with_capacity(n);
        for i in 0..n {
            f.insert(&[&format!("ref-{i}")]);
        }
        assert!((0..n).all(|i| f.may_contain(&[&format!("ref-{i}")])));
        let false_positives = (n..2 * n)
            .filter(|i| f.may_contain(&[&format!("ref-{i}")]))
            .count();
        assert!(false_positives < n / 50, "{false_positives} of {n}");
    }

    #[test]
    fn parts_are_separated_and_the_stored_form_round_trips() {
        let mut f = KeyFilter::with_capacity(10);
        f.insert(&["sub-1", "CFQ7", "0001"]);
        assert!(f.may_contain(&["sub-1", "CFQ7", "0001"]));
        let g = KeyFilter::from_bytes(&f.to_bytes()).unwrap();
        assert_eq!(f, g);
        assert!(KeyFilter::from_bytes(&[]).is_none());
        assert!(KeyFilter::from_bytes(&[1, 2, 3]).is_none());
        let mut j = KeyFilter::with_capacity(10);
        j.insert_joined(b"sub-1\xffCFQ7\xff0001");
        assert_eq!(f, j, "a joined key is the same key as its parts");
        assert!(f.may_contain_joined(b"sub-1\xffCFQ7\xff0001"));
        assert!(!f.may_contain_joined(b"sub-1\xffcfq7\xff0001"));
    }

    #[test]
    fn the_hash_is_fixed() {
        // A filter stored by one build must read the same in the next.
        let p: Vec<u64> = probes(&["REF-1"], 1 << 20).collect();
        assert_eq!(p.len(), PROBES as usize);
        assert_eq!(p, probes(&["REF-1"], 1 << 20).collect::<Vec<_>>());
        let mut h = 0xcbf2_9ce4_8422_2325_u64;
        for b in "REF-1".bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(p[0], h % (1 << 20));
    }

    proptest! {
        #[test]
        fn no_false_negative(keys in proptest::collection::vec(("[a-z0-9-]{0,12}", "[A-Z0-9]{0,6}"), 1..200)) {
            let mut f = KeyFilter::with_capacity(keys.len());
            for (a, b) in &keys {
                f.insert(&[a, b]);
            }
            for (a, b) in &keys {
                prop_assert!(f.may_contain(&[a, b]));
            }
        }
    }
}
