//! Short strings kept inline, so hash-map keys compare without following a
//! pointer.
//!
//! The designation index's and customer names' keys are IDs: GUIDs (36 bytes) and
//! MPN IDs (a few digits). With a key on the heap, every look-up in a map of
//! 200,000 groups costs two cache misses (the bucket, then the key's text);
//! inline, one. Longer text falls back to the heap, so any input still works.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Text of at most `N` bytes stored inline, longer text on the heap.
#[derive(Clone)]
pub enum Text<const N: usize> {
    Inline { len: u8, buf: [u8; N] },
    Heap(Box<str>),
}

impl<const N: usize> Text<N> {
    /// The concatenation of `parts`.
    pub fn concat(parts: &[&str]) -> Text<N> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= N && len <= u8::MAX as usize {
            let mut buf = [0u8; N];
            let mut at = 0;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p.as_bytes());
                at += p.len();
            }
            Text::Inline {
                len: len as u8,
                buf,
            }
        } else {
            Text::Heap(parts.concat().into_boxed_str())
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Text::Inline { len, buf } => &buf[..*len as usize],
            Text::Heap(s) => s.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Built only from `&str` parts, so always valid UTF-8.
            Text::Inline { len, buf } => {
                std::str::from_utf8(&buf[..*len as usize]).expect("inline text is UTF-8")
            }
            Text::Heap(s) => s,
        }
    }
}

impl<const N: usize> From<&str> for Text<N> {
    fn from(s: &str) -> Text<N> {
        Text::concat(&[s])
    }
}

impl<const N: usize> PartialEq for Text<N> {
    fn eq(&self, o: &Text<N>) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl<const N: usize> Eq for Text<N> {}

/// Hashes like `str`, so that maps keyed by `Text` are searched with a `&str`.
impl<const N: usize> Hash for Text<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl<const N: usize> Borrow<str> for Text<N> {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Room for a GUID (36 bytes).
pub type IdText = Text<40>;

/// Each byte's value as a hex digit (any case); [`NOT_HEX`] for any other
/// byte.
const HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xFF;

/// Where the 32 hex digits of the 8-4-4-4-12 form are.
const GUID_DIGITS: [usize; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29,
    30, 31, 32, 33, 34, 35,
];

/// The value of a GUID in its 8-4-4-4-12 form, hex digits of any case.
///
/// Two GUIDs of every ledger line are read on the run's hot path: a table
/// look-up per digit, each half in a 64-bit word, and one check for a bad
/// digit at the end (not a branch per digit).
pub fn guid_value(s: &str) -> Option<u128> {
    let b: &[u8; 36] = s.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let half = |at: &[usize]| {
        let (mut n, mut seen) = (0u64, 0u8);
        for &i in at {
            let v = HEX_VALUE[usize::from(b[i])];
            seen |= v;
            n = n << 4 | u64::from(v & 15);
        }
        (n, seen)
    };
    let (hi, seen_hi) = half(&GUID_DIGITS[..16]);
    let (lo, seen_lo) = half(&GUID_DIGITS[16..]);
    // A digit's value is at most 15; NOT_HEX has the high bits set.
    if (seen_hi | seen_lo) & !15 != 0 {
        return None;
    }
    Some(u128::from(hi) << 64 | u128::from(lo))
}

/// The 8-4-4-4-12 text of a GUID's value, lower case ([`guid_value`] read
/// back).
pub fn guid_text(n: u128) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut digit = 0;
    for (i, c) in out.iter_mut().enumerate() {
        if !matches!(i, 8 | 13 | 18 | 23) {
            *c = HEX[(n >> (124 - 4 * digit)) as usize & 15];
            digit += 1;
        }
    }
    out
}

/// `str::trim`, without its Unicode search when the text starts and ends with
/// a printable ASCII character (white space is at most U+0020 in ASCII and
/// multi-byte otherwise): every field of every input row is trimmed.
pub fn trim(t: &str) -> &str {
    let printable = |b: &u8| (0x21..0x7f).contains(b);
    let b = t.as_bytes();
    match (b.first(), b.last()) {
        // Empty fields are common (a third of a usual row's): nothing to trim.
        (None, _) => t,
        (Some(first), Some(last)) if printable(first) && printable(last) => t,
        _ => t.trim(),
    }
}

/// Shared text in one pointer: 8 bytes where an `Arc<str>` takes 16 (a
/// pointer and a length). A run holds a statement's detail lines by the
/// million, each naming its program and subscription with text shared by
/// many lines: the length is read through the pointer instead of being
/// carried by every line.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shared(std::sync::Arc<Box<str>>);

impl Shared {
    pub fn new(s: &str) -> Shared {
        Shared(std::sync::Arc::new(Box::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Shared {
    fn default() -> Shared {
        Shared::new("")
    }
}

impl std::ops::Deref for Shared {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Shared {
    fn from(s: &str) -> Shared {
        Shared::new(s)
    }
}

impl From<String> for Shared {
    fn from(s: String) -> Shared {
        Shared(std::sync::Arc::new(s.into_boxed_str()))
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Shared {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Shared {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Shared, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Shared::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `guid_value` reads what a digit-by-digit reading of the
        /// 8-4-4-4-12 form reads, and refuses what it refuses: GUIDs of any
        /// case, and texts of 36 bytes with any byte anywhere.
        #[test]
        fn guid_value_reads_as_digit_by_digit(
            n in proptest::num::u128::ANY,
            upper in proptest::bool::ANY,
            at in 0usize..36,
            byte in proptest::num::u8::ANY,
        ) {
            fn by_digit(s: &str) -> Option<u128> {
                let b = s.as_bytes();
                if b.len() != 36 {
                    return None;
                }
                let mut n: u128 = 0;
                for (i, &c) in b.iter().enumerate() {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        if c != b'-' {
                            return None;
                        }
                        continue;
                    }
                    n = n << 4 | u128::from(char::from(c).to_digit(16)?);
                }
                Some(n)
            }
            let mut text = guid_text(n).to_vec();
            if upper {
                text.make_ascii_uppercase();
            }
            let g = String::from_utf8(text.clone()).unwrap();
            proptest::prop_assert_eq!(guid_value(&g), Some(n));
            text[at] = byte;
            if let Ok(t) = String::from_utf8(text) {
                proptest::prop_assert_eq!(guid_value(&t), by_digit(&t));
            }
        }

        /// The fast path of `trim` trims exactly what `str::trim` trims.
        #[test]
        fn trim_matches_str_trim(t in "[ \t\r\n\u{0b}\u{a0}\u{2003}a-z0-9é,\"-]{0,8}") {
            proptest::prop_assert_eq!(trim(&t), t.trim());
        }
    }

    #[test]
    fn shared_text_is_one_pointer_and_reads_and_writes_as_a_string() {
        assert_eq!(std::mem::size_of::<Shared>(), 8);
        let s = Shared::from("CFQ7TTC0LF8Q");
        assert_eq!(&*s, "CFQ7TTC0LF8Q");
        assert_eq!(format!("{s} {s:?}"), "CFQ7TTC0LF8Q \"CFQ7TTC0LF8Q\"");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"CFQ7TTC0LF8Q\"");
        assert_eq!(serde_json::from_str::<Shared>(&json).unwrap(), s);
        // Escaped text cannot be borrowed from the input: read all the same.
        assert_eq!(
            &*serde_json::from_str::<Shared>("\"a\\\"b\"").unwrap(),
            "a\"b"
        );
        assert!(Shared::default().is_empty());
    }

    #[test]
    fn guids_read_and_written_back() {
        let g = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let n = guid_value(g).unwrap();
        assert_eq!(n, 0x0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0);
        assert_eq!(&guid_text(n), g.as_bytes());
        assert_eq!(guid_value(&g.to_uppercase()), Some(n));
        for other in [
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c-4b5a-6978-8796_a5b4c3d2e1f0",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
            "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f}",
        ] {
            assert_eq!(guid_value(other), None, "{other}");
        }
    }

    #[test]
    fn short_text_is_inline_long_text_on_the_heap() {
        let t = Text::<8>::concat(&["ab", "cd"]);
        assert!(matches!(t, Text::Inline { len: 4, .. }));
        assert_eq!(t.as_str(), "abcd");
        let long = Text::<8>::concat(&["abcdef", "ghijk"]);
        assert!(matches!(long, Text::Heap(_)));
        assert_eq!(long.as_str(), "abcdefghijk");
        assert_eq!(Text::<8>::from("abcdefghijk"), long);
    }

    #[test]
    fn maps_keyed_by_text_are_searched_with_str() {
        let mut m: hashbrown::HashMap<IdText, u32> = hashbrown::HashMap::new();
        m.insert("71adb96f-6821-417f-b5c4-21c407c62906".into(), 1);
        m.insert("x".repeat(100).as_str().into(), 2);
        assert_eq!(m.get("71adb96f-6821-417f-b5c4-21c407c62906"), Some(&1));
        assert_eq!(m.get("x".repeat(100).as_str()), Some(&2));
        assert_eq!(m.get("y"), None);
    }
}
