//! Fold: mergeable aggregates of accruals and row counts.
//!
//! Workers add their accruals to one set of groups shared by all of them
//! ([`SharedDetails`]) and keep the customer names they saw in a [`Fold`] of
//! their own, merged at the end. Sums are exact decimal additions at a pinned
//! scale, and customer names keep the earliest input position, so one thread or
//! many, one file or ten, in whatever order the adds and merges happen, the
//! result is the same. Memory grows with the number of distinct
//! (partner, customer, program, accrual month, association, subscription, rate,
//! share, currency) groups, never with the number of rows; past a budget the
//! stream writes them to disk ([`crate::spill`], in the binary form of
//! `encode_group`) and merges them back at the end.

use std::collections::BTreeMap;

use hashbrown::HashMap;
use rust_decimal::Decimal;

use crate::accrue::{Accrual, Reason};
use crate::attribute::MatchedId;
use crate::config::Association;
use crate::dates::Month;
use crate::model::TierNotes;
use crate::money::Currency;
use crate::text::IdText;

/// The finest grouping of accruals that statements show: (partner, customer,
/// program, accrual month, currency, association, subscription, rate, share).
///
/// The three IDs are stored together inline (`PackedIds`: a GUID in 17
/// bytes instead of 36), and the key carries 32 bits of its hash, so a
/// look-up touches one bucket and folds merge and tables grow without hashing
/// again (hashing normalises the two decimals). The rate and share take 16
/// bytes (`RateShare`). 80 bytes: a run holds one key per group, millions
/// of them.
#[derive(Clone, Debug)]
pub struct DetailKey {
    ids: PackedIds,
    hash32: u32,
    pub program: u32,
    /// The accrual month ([`Accrual::month`]).
    pub month: Month,
    pub currency: Currency,
    pub association: Association,
    rate_share: RateShare,
}

/// A group's rate and share ([`DetailKey::rate`], [`DetailKey::share`]) in
/// 16 bytes instead of two decimals' 32: both mantissas fit 32 bits for
/// every rate and share but a computed split such as 1/3 (28 digits), kept
/// whole in a box. The form is a function of the two decimals alone.
#[derive(Clone, Debug)]
enum RateShare {
    Small {
        rate: i32,
        share: i32,
        rate_scale: u8,
        share_scale: u8,
    },
    Big(Box<(Decimal, Decimal)>),
}

impl RateShare {
    fn new(rate: Decimal, share: Decimal) -> RateShare {
        // A negative zero would come back positive: kept whole.
        let small = |d: Decimal| {
            let m = i32::try_from(d.mantissa()).ok()?;
            (m != 0 || d.is_sign_positive()).then_some((m, d.scale() as u8))
        };
        match (small(rate), small(share)) {
            (Some((rate, rate_scale)), Some((share, share_scale))) => RateShare::Small {
                rate,
                share,
                rate_scale,
                share_scale,
            },
            _ => RateShare::Big(Box::new((rate, share))),
        }
    }

    /// Whether the two hold equal values (`0.15` equals `0.150`).
    fn same(&self, o: &RateShare) -> bool {
        match (self, o) {
            (
                RateShare::Small {
                    rate,
                    share,
                    rate_scale,
                    share_scale,
                },
                RateShare::Small {
                    rate: r2,
                    share: s2,
                    rate_scale: rs2,
                    share_scale: ss2,
                },
            ) if rate_scale == rs2 && share_scale == ss2 => rate == r2 && share == s2,
            _ => self.get() == o.get(),
        }
    }

    fn get(&self) -> (Decimal, Decimal) {
        match self {
            // A scale taken from a decimal: at most 28.
            &RateShare::Small {
                rate,
                share,
                rate_scale,
                share_scale,
            } => (
                Decimal::new(rate.into(), rate_scale.into()),
                Decimal::new(share.into(), share_scale.into()),
            ),
            RateShare::Big(b) => **b,
        }
    }
}

impl DetailKey {
    #[allow(clippy::too_many_arguments)]
    fn new(
        partner_id: &str,
        customer_id: &str,
        program: u32,
        month: Month,
        currency: Currency,
        association: Association,
        subscription_id: &str,
        rate: Decimal,
        share: Decimal,
    ) -> DetailKey {
        let ids = PackedIds::new([partner_id, customer_id, subscription_id]);
        DetailKey::of_packed(ids, program, month, currency, association, rate, share)
    }

    /// A key from IDs packed already: its hash is a function of the packed
    /// IDs and the values, so a key read back from a spilled run hashes as
    /// the one written.
    fn of_packed(
        ids: PackedIds,
        program: u32,
        month: Month,
        currency: Currency,
        association: Association,
        rate: Decimal,
        share: Decimal,
    ) -> DetailKey {
        let hash32 = {
            use std::hash::{BuildHasher, Hash, Hasher};
            let mut h = foldhash::fast::FixedState::with_seed(0x005e_ed0f_901d).build_hasher();
            ids.bytes().hash(&mut h);
            (ids.ends(), program, month, currency).hash(&mut h);
            (association, rate, share).hash(&mut h);
            (h.finish() >> 32) as u32
        };
        DetailKey {
            ids,
            hash32,
            program,
            month,
            currency,
            association,
            rate_share: RateShare::new(rate, share),
        }
    }

    /// The rate the group's accruals were computed at.
    pub fn rate(&self) -> Decimal {
        self.rate_share.get().0
    }

    /// The rate and the partner's share of the group's accruals.
    pub fn rate_and_share(&self) -> (Decimal, Decimal) {
        self.rate_share.get()
    }

    /// The key's hash for the tables: its 32 kept bits spread over 64 (an
    /// odd multiplier: one-to-one), so the tables' bucket bits (low) and tag
    /// bits (top seven) both vary.
    fn hash(&self) -> u64 {
        u64::from(self.hash32).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    pub fn partner_id(&self) -> Id<'_> {
        Id::unpack(self.ids.part(0))
    }

    pub fn customer_id(&self) -> Id<'_> {
        Id::unpack(self.ids.part(1))
    }

    pub fn subscription_id(&self) -> Id<'_> {
        Id::unpack(self.ids.part(2))
    }

    /// The IDs packed: equal exactly when the IDs are (see `PackedIds`), and
    /// cheaper to compare than the text.
    pub fn packed_partner(&self) -> &[u8] {
        self.ids.part(0)
    }

    pub fn packed_customer(&self) -> &[u8] {
        self.ids.part(1)
    }

    pub fn packed_subscription(&self) -> &[u8] {
        self.ids.part(2)
    }
}

impl PartialEq for DetailKey {
    fn eq(&self, o: &DetailKey) -> bool {
        self.hash32 == o.hash32
            && self.program == o.program
            && self.month == o.month
            && self.currency == o.currency
            && self.association == o.association
            && self.ids == o.ids
            && self.rate_share.same(&o.rate_share)
    }
}

impl Eq for DetailKey {}

impl PartialOrd for DetailKey {
    fn partial_cmp(&self, o: &DetailKey) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// In output order: (partner, customer, program, currency, month,
/// association, subscription, rate, share), IDs in the order of their text;
/// each statement line's groups (customer, program, currency, month) are one
/// run of the sorted groups.
impl Ord for DetailKey {
    fn cmp(&self, o: &DetailKey) -> std::cmp::Ordering {
        cmp_packed(self.ids.part(0), o.ids.part(0))
            .then_with(|| cmp_packed(self.ids.part(1), o.ids.part(1)))
            .then_with(|| {
                (self.program, self.currency, self.month, self.association).cmp(&(
                    o.program,
                    o.currency,
                    o.month,
                    o.association,
                ))
            })
            .then_with(|| cmp_packed(self.ids.part(2), o.ids.part(2)))
            .then_with(|| self.rate_share.get().cmp(&o.rate_share.get()))
    }
}

/// Marks a packed GUID: no UTF-8 text starts with this byte, so a packed
/// GUID never equals an ID kept as text.
const GUID_TAG: u8 = 0xFF;
/// The tag and a GUID's 16 bytes.
const PACKED_GUID: usize = 17;
/// The text of a GUID: `8-4-4-4-12` lower-case hex digits.
const GUID_TEXT: usize = 36;

/// A lower-case GUID in its canonical text form as its 16 bytes, after
/// [`GUID_TAG`]; `None` for any other text (kept as it is).
///
/// Tenant and subscription IDs are GUIDs, and the fold's keys hold two of
/// them: packed, a statement group takes 38 bytes less. Packing is
/// one-to-one (only the canonical form is packed, upper case or braces are
/// kept as text), so packed keys are equal exactly when the IDs are, and two
/// packed GUIDs compare as their text does (the value's bytes big-endian:
/// hex digits in order, dashes in the same places).
fn pack_guid(id: &str) -> Option<[u8; PACKED_GUID]> {
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let n = crate::text::guid_value(id)?;
    let mut out = [GUID_TAG; PACKED_GUID];
    out[1..].copy_from_slice(&n.to_be_bytes());
    Some(out)
}

/// The text of a packed GUID.
fn unpack_guid(p: &[u8]) -> [u8; GUID_TEXT] {
    let bytes: [u8; 16] = p[1..PACKED_GUID].try_into().expect("a packed GUID");
    crate::text::guid_text(u128::from_be_bytes(bytes))
}

/// Two packed IDs in the order of their text.
fn cmp_packed(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let guid = |p: &[u8]| p.first() == Some(&GUID_TAG);
    match (guid(a), guid(b)) {
        (true, false) => unpack_guid(a)[..].cmp(b),
        (false, true) => a.cmp(&unpack_guid(b)[..]),
        _ => a.cmp(b),
    }
}

/// A key's ID: borrowed text, or a packed GUID's text.
pub struct Id<'a>(IdRepr<'a>);

enum IdRepr<'a> {
    Text(&'a str),
    Guid([u8; GUID_TEXT]),
}

impl Id<'_> {
    fn unpack(p: &[u8]) -> Id<'_> {
        if p.first() == Some(&GUID_TAG) {
            Id(IdRepr::Guid(unpack_guid(p)))
        } else {
            // Parts not packed are copies of `&str`s.
            Id(IdRepr::Text(
                std::str::from_utf8(p).expect("an ID kept as text is UTF-8"),
            ))
        }
    }
}

impl std::ops::Deref for Id<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.0 {
            IdRepr::Text(s) => s,
            IdRepr::Guid(b) => std::str::from_utf8(b).expect("hex digits and dashes"),
        }
    }
}

impl std::fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Id<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// The partner, customer and subscription IDs of a [`DetailKey`], each a
/// GUID packed to 17 bytes ([`pack_guid`]) or its text, concatenated, with
/// where the partner's and the customer's parts end; inline up to
/// [`IDS_INLINE`] bytes (an MPN ID and two GUIDs take 7 + 17 + 17), on the
/// heap beyond, so any input still works. 48 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PackedIds {
    bytes: IdBytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum IdBytes {
    Inline {
        len: u8,
        ends: [u8; 2],
        buf: [u8; IDS_INLINE],
    },
    Heap {
        ends: [u32; 2],
        bytes: Box<[u8]>,
    },
}

const IDS_INLINE: usize = 44;

impl PackedIds {
    fn new(ids: [&str; 3]) -> PackedIds {
        let packed = ids.map(pack_guid);
        let part = |i: usize| -> &[u8] {
            match &packed[i] {
                Some(p) => p,
                None => ids[i].as_bytes(),
            }
        };
        PackedIds::from_parts([part(0), part(1), part(2)])
    }

    /// The IDs from their packed parts (each a packed GUID or an ID's text).
    fn from_parts(parts: [&[u8]; 3]) -> PackedIds {
        let part = |i: usize| parts[i];
        let lens = [part(0).len(), part(1).len(), part(2).len()];
        let len: usize = lens.iter().sum();
        let ends = [lens[0], lens[0] + lens[1]];
        let bytes = if len <= IDS_INLINE {
            let mut buf = [0u8; IDS_INLINE];
            let mut at = 0;
            for i in 0..3 {
                buf[at..at + lens[i]].copy_from_slice(part(i));
                at += lens[i];
            }
            IdBytes::Inline {
                len: len as u8,
                ends: ends.map(|e| e as u8),
                buf,
            }
        } else {
            IdBytes::Heap {
                ends: ends.map(|e| u32::try_from(e).expect("IDs shorter than 4 GB")),
                bytes: [part(0), part(1), part(2)].concat().into_boxed_slice(),
            }
        };
        PackedIds { bytes }
    }

    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            IdBytes::Inline { len, buf, .. } => &buf[..*len as usize],
            IdBytes::Heap { bytes, .. } => bytes,
        }
    }

    /// Where the partner's and the customer's parts end.
    fn ends(&self) -> [usize; 2] {
        match &self.bytes {
            IdBytes::Inline { ends, .. } => ends.map(usize::from),
            IdBytes::Heap { ends, .. } => ends.map(|e| e as usize),
        }
    }

    fn part(&self, i: usize) -> &[u8] {
        let (b, [p, c]) = (self.bytes(), self.ends());
        match i {
            0 => &b[..p],
            1 => &b[p..c],
            _ => &b[c..],
        }
    }
}

/// The fold's groups: a dense vector of (key, sums) in insertion order, and a
/// hash index of positions into it.
///
/// A hash map holding the entries themselves spreads them over all of its
/// buckets, so every page of a table at most 7/8 full is touched, and each
/// doubling (at 229,377 groups, say) adds its full size to the resident memory.
/// Here only the 4-byte positions live in the table; the entries are packed,
/// so memory follows the number of groups.
#[derive(Debug, Default)]
pub struct DetailMap {
    index: hashbrown::HashTable<u32>,
    /// Fixed-size segments, never reallocated: growing one vector by doubling
    /// would copy it, and the freed copy stays resident in the allocator.
    segments: Vec<Vec<(DetailKey, Sums)>>,
    len: usize,
}

/// Groups per segment (about 2.5 MB).
const SEGMENT: usize = 1 << 14;

impl DetailMap {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every group, in insertion order (sort before output).
    pub fn iter(&self) -> impl Iterator<Item = (&DetailKey, &Sums)> {
        self.segments.iter().flatten().map(|(k, v)| (k, v))
    }

    fn at(segments: &[Vec<(DetailKey, Sums)>], i: u32) -> &(DetailKey, Sums) {
        let i = i as usize;
        &segments[i / SEGMENT][i % SEGMENT]
    }

    /// The sums of the group with this hash for which `eq` holds.
    fn find_mut(&mut self, hash: u64, eq: impl Fn(&DetailKey) -> bool) -> Option<&mut Sums> {
        let i = *self
            .index
            .find(hash, |&i| eq(&Self::at(&self.segments, i).0))? as usize;
        Some(&mut self.segments[i / SEGMENT][i % SEGMENT].1)
    }

    /// Appends a group not in the map yet.
    fn insert_new(&mut self, hash: u64, k: DetailKey, s: Sums) {
        if self.segments.last().is_none_or(|g| g.len() == SEGMENT) {
            self.segments.push(Vec::with_capacity(SEGMENT));
        }
        let n = self.segments.len() - 1;
        let last = &mut self.segments[n];
        let i = u32::try_from(n * SEGMENT + last.len()).expect("fewer than 2^32 groups");
        last.push((k, s));
        self.len += 1;
        let segments = &self.segments;
        self.index
            .insert_unique(hash, i, |&j| Self::at(segments, j).0.hash());
    }

    /// Adds the groups of `other`, which holds none of this map's keys,
    /// without moving them: its segments (full or not) are appended and only
    /// the index learns their positions (a group's position is its segment's
    /// number x [`SEGMENT`] + its place in the segment).
    fn absorb(&mut self, other: DetailMap) {
        let segments = &mut self.segments;
        let index = &mut self.index;
        index.reserve(other.len, |&j| Self::at(segments, j).0.hash());
        for g in other.segments.into_iter().filter(|g| !g.is_empty()) {
            let n = segments.len();
            u32::try_from(n * SEGMENT + g.len()).expect("fewer than 2^32 groups");
            segments.push(g);
            let segments = &*segments;
            for (off, (k, _)) in segments[n].iter().enumerate() {
                index.insert_unique(k.hash(), (n * SEGMENT + off) as u32, |&j| {
                    Self::at(segments, j).0.hash()
                });
            }
        }
        self.len += other.len;
    }

    fn add_key(&mut self, k: DetailKey, s: Sums) {
        self.add_hashed(k.hash(), k, s);
    }

    /// [`DetailMap::add_key`] with the key's hash computed already; whether
    /// the group is new.
    fn add_hashed(&mut self, hash: u64, k: DetailKey, s: Sums) -> bool {
        match self.find_mut(hash, |x| *x == k) {
            Some(v) => {
                v.add(&s);
                false
            }
            None => {
                self.insert_new(hash, k, s);
                true
            }
        }
    }

    /// Removes every group, returning them in insertion order (each segment
    /// is freed once its groups are taken).
    pub fn take_all(&mut self) -> impl Iterator<Item = (DetailKey, Sums)> {
        self.index = hashbrown::HashTable::new();
        self.len = 0;
        std::mem::take(&mut self.segments).into_iter().flatten()
    }
}

fn accrual_key(
    a: &Accrual<'_>,
    customer_key: &str,
    subscription_key: &str,
    currency: Currency,
) -> (DetailKey, Sums) {
    let r = DetailKey::new(
        a.partner_id,
        customer_key,
        a.program as u32,
        a.month,
        currency,
        a.association,
        subscription_key,
        a.rate,
        a.share,
    );
    let s = Sums {
        lines: 1,
        basis: ExactSum::of(a.basis),
        accrual: ExactSum::of(a.amount),
    };
    (r, s)
}

/// The groups of a run, shared by all workers: [`SHARDS`] maps, each behind a
/// lock, a group's shard chosen by its hash.
///
/// Each worker keeping a fold of its own would hold nearly every group once
/// per worker (customers' lines are spread over all chunks), so memory would
/// grow with groups x threads. Shared, each group is held once. With two
/// workers and 16 shards, two adds rarely meet on one lock. Sums are exact and
/// order-free ([`sum_exact`]), so which worker adds first does not matter.
///
/// To bound memory the groups can be taken out while workers still add
/// ([`SharedDetails::drain`], see [`crate::spill`]): a group added after that
/// starts again from zero, and the two partial sums are added when the runs
/// are merged, which gives the same exact sum.
pub struct SharedDetails {
    shards: Vec<std::sync::Mutex<DetailMap>>,
    /// Groups held by all shards, kept under the shards' locks (bumped by an
    /// add that makes a group, lowered by a drain), so that reading it is
    /// one load instead of sixteen locks.
    len: std::sync::atomic::AtomicUsize,
}

/// Shards of [`SharedDetails`].
pub const SHARDS: usize = 16;

impl Default for SharedDetails {
    fn default() -> Self {
        SharedDetails {
            shards: (0..SHARDS).map(|_| Default::default()).collect(),
            len: Default::default(),
        }
    }
}

impl SharedDetails {
    /// Adds one accrual (see [`Fold::add`]).
    pub fn add(
        &self,
        a: &Accrual<'_>,
        customer_key: &str,
        subscription_key: &str,
        currency: Currency,
    ) {
        let (k, s) = accrual_key(a, customer_key, subscription_key, currency);
        self.add_keyed(k, s);
    }

    /// The group and sums [`SharedDetails::add`] adds for `a`, to be added
    /// later with [`SharedDetails::add_keyed`] (a credit of a closed charge
    /// is added once the collector has settled it against the run's earlier
    /// credits of that charge).
    pub fn keyed(
        a: &Accrual<'_>,
        customer_key: &str,
        subscription_key: &str,
        currency: Currency,
    ) -> (DetailKey, Sums) {
        accrual_key(a, customer_key, subscription_key, currency)
    }

    /// Adds a group's sums kept from [`SharedDetails::keyed`].
    #[inline]
    pub fn add_keyed(&self, k: DetailKey, s: Sums) {
        // Bits the shard's own table does not use: it indexes by the low bits
        // and tags by the top seven.
        let hash = k.hash();
        let shard = &self.shards[(hash >> 40) as usize % SHARDS];
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.add_hashed(hash, k, s) {
            self.len.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How many groups the shards hold: one atomic load, cheap enough to
    /// ask after every chunk. Exact once the adds are done; while workers
    /// add, it may lag their last few.
    pub fn len(&self) -> usize {
        self.len.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every group out, in no particular order, leaving the shards
    /// empty for the adds still to come (workers may keep adding meanwhile).
    /// Each shard's lock is held only to swap its map for an empty one; the
    /// groups are moved into one vector after.
    pub fn drain(&self) -> Vec<(DetailKey, Sums)> {
        let maps: Vec<DetailMap> = self
            .shards
            .iter()
            .map(|shard| {
                let mut map = shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let taken = std::mem::take(&mut *map);
                self.len
                    .fetch_sub(taken.len(), std::sync::atomic::Ordering::Relaxed);
                taken
            })
            .collect();
        let mut all = Vec::with_capacity(maps.iter().map(DetailMap::len).sum());
        for mut m in maps {
            all.extend(m.take_all());
        }
        all
    }

    /// All groups in one map (the shards hold disjoint groups).
    pub fn into_map(self) -> DetailMap {
        let mut shards: Vec<DetailMap> = self
            .shards
            .into_iter()
            .map(|s| {
                s.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            })
            .collect();
        // The largest shard is kept as it is, the others' groups stay where
        // they are (moving ~200-byte groups into fresh memory cost 0.8 s per
        // million groups).
        let Some(big) = (0..shards.len()).max_by_key(|&i| shards[i].len()) else {
            return DetailMap::default();
        };
        let mut all = shards.swap_remove(big);
        for m in shards {
            all.absorb(m);
        }
        all
    }
}

/// Sums for one group: exact ([`ExactSum`]), so the same whatever the order
/// of the additions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub lines: u64,
    pub basis: ExactSum,
    pub accrual: ExactSum,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.lines += o.lines;
        self.basis.add(&o.basis);
        self.accrual.add(&o.accrual);
    }
}

/// An exact sum of decimals: an `i128` mantissa at the largest scale of its
/// terms.
///
/// `Decimal` addition rounds when the result needs more than 28 significant
/// digits (`1e6 + 1e-23`), and then the order of the additions changes the
/// result: threads finishing in another order gave other statements. Here
/// every addition is an exact integer addition after aligning both terms to
/// the larger scale, so any order, split or merge of the same terms gives the
/// same sum (the scale is pinned to the largest seen, as before: `58.00 +
/// 0.000000` is `58.000000` in any order). When the terms' absolute values,
/// aligned, add up to more than `i128::MAX` (38 digits), the sum is marked
/// overflowed, whatever the order; overflow is sticky, and
/// [`ExactSum::to_decimal`] reports it.
///
/// Held in 24 bytes: a sum whose mantissa and magnitude fit 64 bits (every
/// sum of money amounts below 92 billion at six decimals) is kept inline, a
/// larger or overflowed one in a box. The form is a function of the value
/// alone, so equal sums are equal whatever their history. A run holds two
/// per statement group (millions of them): 48 bytes each in the wide form
/// were a third of a group's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactSum(Repr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Repr {
    Small {
        mantissa: i64,
        magnitude: u64,
        scale: u8,
    },
    Wide(Box<Wide>),
}

impl Default for ExactSum {
    fn default() -> ExactSum {
        ExactSum(Repr::Small {
            mantissa: 0,
            magnitude: 0,
            scale: 0,
        })
    }
}

/// The value of an [`ExactSum`], whatever its form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wide {
    mantissa: i128,
    /// The sum of the terms' absolute values at `scale`: overflow is decided
    /// on it (above `i128::MAX`), so it does not depend on the order of the
    /// terms either (a partial sum of signed terms could overflow in one
    /// order and not in another).
    magnitude: u128,
    scale: u32,
    overflow: bool,
}

/// Why an [`ExactSum`] cannot be shown as a `Decimal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SumError {
    /// The terms' absolute values, aligned, add up to more than `i128::MAX`.
    Overflow,
    /// The sum's integer part has more than 28 digits (above `Decimal::MAX`).
    TooLarge,
}

impl std::fmt::Display for SumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SumError::Overflow => {
                "the terms, at the finest scale among them, need more than 38 digits"
            }
            SumError::TooLarge => "the sum is larger than the largest decimal (about 7.9e28)",
        })
    }
}

impl ExactSum {
    pub fn of(d: Decimal) -> ExactSum {
        ExactSum::from_wide(Wide {
            mantissa: d.mantissa(),
            magnitude: d.mantissa().unsigned_abs(),
            scale: d.scale(),
            overflow: false,
        })
    }

    fn wide(&self) -> Wide {
        match &self.0 {
            &Repr::Small {
                mantissa,
                magnitude,
                scale,
            } => Wide {
                mantissa: mantissa.into(),
                magnitude: magnitude.into(),
                scale: scale.into(),
                overflow: false,
            },
            Repr::Wide(w) => **w,
        }
    }

    /// The one form of a value: inline when it fits, boxed otherwise.
    fn from_wide(w: Wide) -> ExactSum {
        match (
            i64::try_from(w.mantissa),
            u64::try_from(w.magnitude),
            u8::try_from(w.scale),
        ) {
            (Ok(mantissa), Ok(magnitude), Ok(scale)) if !w.overflow => ExactSum(Repr::Small {
                mantissa,
                magnitude,
                scale,
            }),
            _ => ExactSum(Repr::Wide(Box::new(w))),
        }
    }

    /// `self + o`, exact at the larger scale (or overflowed).
    #[must_use]
    pub fn plus(&self, o: &ExactSum) -> ExactSum {
        let (a, b) = (self.wide(), o.wide());
        let scale = a.scale.max(b.scale);
        let sum = (|| {
            if a.overflow || b.overflow {
                return None;
            }
            let (fa, fb) = (
                10u128.checked_pow(scale - a.scale)?,
                10u128.checked_pow(scale - b.scale)?,
            );
            let magnitude = a
                .magnitude
                .checked_mul(fa)?
                .checked_add(b.magnitude.checked_mul(fb)?)?;
            if magnitude > i128::MAX as u128 {
                return None;
            }
            // |each aligned term| <= magnitude <= i128::MAX: no overflow below.
            let x = a.mantissa * fa as i128;
            let y = b.mantissa * fb as i128;
            Some((x + y, magnitude))
        })();
        ExactSum::from_wide(match sum {
            Some((mantissa, magnitude)) => Wide {
                mantissa,
                magnitude,
                scale,
                overflow: false,
            },
            None => Wide {
                mantissa: 0,
                magnitude: 0,
                scale,
                overflow: true,
            },
        })
    }

    /// Adds `o` in place.
    pub fn add(&mut self, o: &ExactSum) {
        // The common case, two inline sums at one scale, without widening.
        if let (
            Repr::Small {
                mantissa,
                magnitude,
                scale,
            },
            Repr::Small {
                mantissa: m2,
                magnitude: g2,
                scale: s2,
            },
        ) = (&mut self.0, &o.0)
        {
            if *scale == *s2 {
                if let (Some(g), Some(m)) = (magnitude.checked_add(*g2), mantissa.checked_add(*m2))
                {
                    // |m| <= g: a magnitude that fits i64 keeps the mantissa in range too.
                    if g <= i64::MAX as u64 {
                        *magnitude = g;
                        *mantissa = m;
                        return;
                    }
                }
            }
        }
        *self = self.plus(o);
    }

    /// Adds a decimal.
    #[must_use]
    pub fn plus_decimal(&self, d: Decimal) -> ExactSum {
        self.plus(&ExactSum::of(d))
    }

    /// The sum as a `Decimal` at its scale when it fits (at most 28 digits,
    /// at most `Decimal::MAX`), which is always the case for sums of amounts
    /// with few decimals. A sum with more significant digits than that is
    /// rounded once, half to even, to the largest scale at which it fits: a
    /// function of the exact sum alone, so still the same for any order (see
    /// "Precision" in docs/accruals.md).
    pub fn to_decimal(&self) -> Result<Decimal, SumError> {
        let w = self.wide();
        if w.overflow {
            return Err(SumError::Overflow);
        }
        let (m, scale) = (w.mantissa, w.scale);
        for drop in 0..=scale {
            // One rounding of the exact sum, half to even, `drop` decimals fewer.
            let Some(p) = 10i128.checked_pow(drop) else {
                break;
            };
            let (q, r) = (m / p, m % p);
            let twice = r.unsigned_abs() * 2;
            let up = twice > p.unsigned_abs() || (twice == p.unsigned_abs() && q % 2 != 0);
            let q = if up { q + r.signum() } else { q };
            if let Ok(d) = Decimal::try_from_i128_with_scale(q, scale - drop) {
                return Ok(d);
            }
        }
        Err(SumError::TooLarge)
    }
}

/// `a + b` at the larger of the two scales, exact, or `None` when the exact
/// sum is not a `Decimal` of that scale (see [`ExactSum`]).
///
/// `Decimal` addition returns the other operand unchanged when one is zero, so
/// the scale of a running sum (`58.00` or `58.000000`) would depend on the order
/// of the additions, and folds are merged in whatever order threads finish.
/// Pinning the scale to the largest seen makes the exact sums, and the
/// statements that print them, the same whatever the order.
pub fn sum_exact(a: Decimal, b: Decimal) -> Option<Decimal> {
    let s = ExactSum::of(a).plus_decimal(b);
    let d = s.to_decimal().ok()?;
    (d.scale() == s.wide().scale).then_some(d)
}

/// Why a spilled group could not be read back (see `decode_group`): the
/// run file is truncated or not one porledger wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a spilled statement group is corrupt: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Appends one group in the binary form of the spilled runs
/// ([`crate::spill`]); [`decode_group`] reads it back.
///
/// A run holds millions of groups, so the form is compact: integers as
/// LEB128 varints (signed ones zigzagged first), no padding, no field names.
/// In order: the three packed IDs (each its length and bytes: a GUID stays
/// its 17 packed bytes), the program, the month, the currency's three
/// letters, the association's index in [`Association::ALL`], the rate and
/// the share ([`put_decimal`]), then the line count and the two sums
/// ([`put_exact`]). The key's hash and the inline or boxed forms are not
/// written: each is a function of the values, so decoding rebuilds them as
/// they were (an MPN ID and two GUIDs take about 70 bytes, against 136 in
/// memory).
pub(crate) fn encode_group(k: &DetailKey, s: &Sums, out: &mut Vec<u8>) {
    for i in 0..3 {
        let p = k.ids.part(i);
        put_varint(out, p.len() as u128);
        out.extend_from_slice(p);
    }
    put_varint(out, k.program.into());
    put_varint(out, zigzag(k.month.0.into()));
    out.extend_from_slice(k.currency.as_str().as_bytes());
    let association = Association::ALL
        .iter()
        .position(|a| *a == k.association)
        .unwrap_or_default();
    out.push(association as u8);
    let (rate, share) = k.rate_share.get();
    put_decimal(out, rate);
    put_decimal(out, share);
    put_varint(out, s.lines.into());
    put_exact(out, &s.basis);
    put_exact(out, &s.accrual);
}

/// Reads one group written by [`encode_group`] from the front of `buf`,
/// advancing it. Every field is checked (lengths, ranges, UTF-8, the
/// invariants of the sums), so a damaged run gives an error and never a key
/// that would panic or compare wrongly later.
pub(crate) fn decode_group(buf: &mut &[u8]) -> Result<(DetailKey, Sums), DecodeError> {
    let mut parts: [&[u8]; 3] = [&[]; 3];
    for part in &mut parts {
        let len = usize::try_from(get_varint(buf)?)
            .ok()
            .filter(|&n| n <= buf.len())
            .ok_or(DecodeError("an ID runs past the end of the group"))?;
        let (p, rest) = buf.split_at(len);
        *buf = rest;
        if p.first() == Some(&GUID_TAG) {
            if p.len() != PACKED_GUID {
                return Err(DecodeError("a packed GUID of the wrong length"));
            }
        } else {
            // Text, and not a GUID the fold would have packed: otherwise the
            // key would not equal the one made from the same ID.
            let text = std::str::from_utf8(p).map_err(|_| DecodeError("an ID is not UTF-8"))?;
            if pack_guid(text).is_some() {
                return Err(DecodeError("a GUID kept as text"));
            }
        }
        *part = p;
    }
    if parts.iter().map(|p| p.len()).sum::<usize>() > u32::MAX as usize {
        return Err(DecodeError("IDs longer than 4 GB"));
    }
    let program = u32::try_from(get_varint(buf)?)
        .map_err(|_| DecodeError("a program index beyond 32 bits"))?;
    let month = i32::try_from(unzigzag(get_varint(buf)?))
        .map_err(|_| DecodeError("a month beyond 32 bits"))?;
    let code = take(buf, 3)?;
    let currency = std::str::from_utf8(code)
        .ok()
        .and_then(Currency::parse)
        .filter(|c| c.as_str().as_bytes() == code)
        .ok_or(DecodeError("not a currency code"))?;
    let association = *Association::ALL
        .get(usize::from(take(buf, 1)?[0]))
        .ok_or(DecodeError("not an association"))?;
    let rate = get_decimal(buf)?;
    let share = get_decimal(buf)?;
    let lines =
        u64::try_from(get_varint(buf)?).map_err(|_| DecodeError("a line count beyond 64 bits"))?;
    let basis = get_exact(buf)?;
    let accrual = get_exact(buf)?;
    let key = DetailKey::of_packed(
        PackedIds::from_parts(parts),
        program,
        Month(month),
        currency,
        association,
        rate,
        share,
    );
    let sums = Sums {
        lines,
        basis,
        accrual,
    };
    Ok((key, sums))
}

/// The first `n` bytes of `buf`, which advances past them.
fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if buf.len() < n {
        return Err(DecodeError("the group is cut short"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// LEB128: seven bits a byte, low first, the top bit set on all but the last.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint written by [`put_varint`]; at most 19 bytes, none beyond 128 bits.
pub(crate) fn get_varint(buf: &mut &[u8]) -> Result<u128, DecodeError> {
    let mut v = 0u128;
    for i in 0..19 {
        let b = take(buf, 1)?[0];
        let bits = u128::from(b & 0x7f);
        if i == 18 && bits > 0b11 {
            return Err(DecodeError("a number beyond 128 bits"));
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("a number beyond 128 bits"))
}

/// A signed number as an unsigned one, small magnitudes small: 0, -1, 1, -2 ...
fn zigzag(n: i128) -> u128 {
    ((n << 1) ^ (n >> 127)) as u128
}

fn unzigzag(u: u128) -> i128 {
    (u >> 1) as i128 ^ -((u & 1) as i128)
}

/// A decimal as one byte (its scale, the top bit its sign: a negative zero
/// stays negative) and its mantissa's magnitude as a varint.
fn put_decimal(out: &mut Vec<u8>, d: Decimal) {
    // A decimal's scale is at most 28: the top bit is free.
    out.push(d.scale() as u8 | u8::from(d.is_sign_negative()) << 7);
    put_varint(out, d.mantissa().unsigned_abs());
}

fn get_decimal(buf: &mut &[u8]) -> Result<Decimal, DecodeError> {
    let b = take(buf, 1)?[0];
    let m = i128::try_from(get_varint(buf)?).map_err(|_| DecodeError("a decimal too large"))?;
    let mut d = Decimal::try_from_i128_with_scale(m, u32::from(b & 0x7f))
        .map_err(|_| DecodeError("a decimal out of range"))?;
    d.set_sign_negative(b & 0x80 != 0);
    Ok(d)
}

/// Flags of a written [`ExactSum`].
const SUM_OVERFLOW: u8 = 1;
/// The magnitude is the mantissa's (no term of the other sign): not written.
const SUM_ONE_SIGN: u8 = 2;

/// An exact sum as a flag byte, its scale, its mantissa (zigzagged) and,
/// when terms of both signs met, the sum of their magnitudes: all of
/// [`Wide`], so the overflow flag and the magnitude that decides it come
/// back too.
fn put_exact(out: &mut Vec<u8>, s: &ExactSum) {
    let w = s.wide();
    let one_sign = w.magnitude == w.mantissa.unsigned_abs();
    out.push(if w.overflow { SUM_OVERFLOW } else { 0 } | if one_sign { SUM_ONE_SIGN } else { 0 });
    put_varint(out, w.scale.into());
    put_varint(out, zigzag(w.mantissa));
    if !one_sign {
        put_varint(out, w.magnitude);
    }
}

fn get_exact(buf: &mut &[u8]) -> Result<ExactSum, DecodeError> {
    let flags = take(buf, 1)?[0];
    if flags & !(SUM_OVERFLOW | SUM_ONE_SIGN) != 0 {
        return Err(DecodeError("unknown flags on a sum"));
    }
    let scale =
        u32::try_from(get_varint(buf)?).map_err(|_| DecodeError("a sum's scale beyond 32 bits"))?;
    let mantissa = unzigzag(get_varint(buf)?);
    let magnitude = if flags & SUM_ONE_SIGN != 0 {
        mantissa.unsigned_abs()
    } else {
        get_varint(buf)?
    };
    let overflow = flags & SUM_OVERFLOW != 0;
    // What `ExactSum::plus` relies on: |mantissa| <= magnitude <= i128::MAX.
    if !overflow && (magnitude > i128::MAX as u128 || mantissa.unsigned_abs() > magnitude) {
        return Err(DecodeError("a sum larger than its terms"));
    }
    Ok(ExactSum::from_wide(Wide {
        mantissa,
        magnitude,
        scale,
        overflow,
    }))
}

/// Where the records of one input file (billing or usage) went.
/// `rows = accrued + not eligible + rejected`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileCounts {
    pub rows: u64,
    pub accrued: u64,
    pub not_eligible: u64,
    /// Indexed by `reason as usize` ([`Reason::ALL`]).
    pub not_eligible_by_reason: [u64; Reason::ALL.len()],
    pub rejected: u64,
    /// Data-quality warning: charges dated after the end of the period.
    pub dated_after_period: u64,
    /// Accrued billing lines credited through a subscription designation, by
    /// the billing column that named the subscription (indexed by
    /// `MatchedId as usize`, [`MatchedId::ALL`]). A line credited through
    /// several columns counts once under each.
    pub matched_on: [u64; MatchedId::ALL.len()],
    /// `run --history`: credit lines (negative, not tax) that reversed a
    /// charge of a closed period, those refused against closed charges
    /// (rejected: an over-credit, two candidate charges, a charge restated
    /// away ...), and those that matched nothing (accrued as any other line).
    pub credits_matched: u64,
    pub credits_refused: u64,
    pub credits_unmatched: u64,
}

impl FileCounts {
    pub fn add(&mut self, o: &FileCounts) {
        self.rows += o.rows;
        self.accrued += o.accrued;
        self.not_eligible += o.not_eligible;
        for (a, b) in self
            .not_eligible_by_reason
            .iter_mut()
            .zip(o.not_eligible_by_reason)
        {
            *a += b;
        }
        self.rejected += o.rejected;
        self.dated_after_period += o.dated_after_period;
        self.credits_matched += o.credits_matched;
        self.credits_refused += o.credits_refused;
        self.credits_unmatched += o.credits_unmatched;
        for (a, b) in self.matched_on.iter_mut().zip(o.matched_on) {
            *a += b;
        }
    }

    /// Counts the billing columns (a bit per `MatchedId as usize`) through
    /// which subscription designations credited one accrued line.
    pub fn note_matched_on(&mut self, columns: u8) {
        for m in MatchedId::ALL {
            if columns & (1 << m as u8) != 0 {
                self.matched_on[m as usize] += 1;
            }
        }
    }

    /// [`FileCounts::matched_on`] by billing column name.
    pub fn matched_on_report(&self) -> BTreeMap<&'static str, u64> {
        MatchedId::ALL
            .iter()
            .map(|m| (m.column(), self.matched_on[*m as usize]))
            .collect()
    }

    pub fn balanced(&self) -> bool {
        self.rows == self.accrued + self.not_eligible + self.rejected
            && self.not_eligible == self.not_eligible_by_reason.iter().sum::<u64>()
    }

    pub fn note_not_eligible(&mut self, r: Reason) {
        self.not_eligible += 1;
        self.not_eligible_by_reason[r as usize] += 1;
    }

    /// How many records were not eligible for reason `r`.
    pub fn by_reason(&self, r: Reason) -> u64 {
        self.not_eligible_by_reason[r as usize]
    }

    /// The counts as reported (summary.json, validate), with the reasons of the
    /// file's kind ([`Reason::BILLING`] or [`Reason::USAGE`]) by name.
    pub fn report(&self, file: String, format: String, reasons: &[Reason]) -> CountsReport {
        CountsReport {
            file,
            format,
            rows: self.rows,
            accrued: self.accrued,
            not_eligible: self.not_eligible,
            not_eligible_by_reason: reasons
                .iter()
                .map(|r| (r.as_str(), self.by_reason(*r)))
                .collect(),
            rejected: self.rejected,
            balanced: self.balanced(),
            credits_against_history: (self.credits_matched
                + self.credits_refused
                + self.credits_unmatched
                > 0)
            .then_some(CreditCounts {
                matched: self.credits_matched,
                refused: self.credits_refused,
                unmatched: self.credits_unmatched,
            }),
        }
    }
}

/// Credit lines looked up in the history (`run --history`): how many
/// reversed a charge of a closed period, how many were refused against
/// closed charges (rejected, naming them), and how many matched none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CreditCounts {
    pub matched: u64,
    pub refused: u64,
    pub unmatched: u64,
}

/// One file's [`FileCounts`] as reported, reasons by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountsReport {
    pub file: String,
    pub format: String,
    pub rows: u64,
    pub accrued: u64,
    pub not_eligible: u64,
    pub not_eligible_by_reason: BTreeMap<&'static str, u64>,
    pub rejected: u64,
    pub balanced: bool,
    /// Present when the file had credit lines looked up in the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits_against_history: Option<CreditCounts>,
}

/// Orders input lines across files: file index first, then line number.
/// Positions of other inputs (usage files) use `u64::MAX`, after every billing line.
pub fn input_order(file: usize, line: u64) -> u64 {
    ((file as u64) << 40) | line.min((1 << 40) - 1)
}

/// Notes `id` at input position `at`, keeping the earliest position seen
/// (allocating only for an ID not seen before).
fn keep_first(map: &mut HashMap<Box<str>, u64>, id: &str, at: u64) {
    match map.get_mut(id) {
        Some(first) => *first = (*first).min(at),
        None => {
            map.insert(id.into(), at);
        }
    }
}

/// The mergeable result of folding any number of lines.
#[derive(Debug, Default)]
pub struct Fold {
    pub details: DetailMap,
    /// Customer ID (lower case) -> (name, where it was first seen). The
    /// position orders input lines (see [`input_order`]); merging keeps the
    /// earliest, so the name does not depend on which thread saw which chunk.
    pub customer_names: HashMap<IdText, (String, u64)>,
    /// Indexed by input file.
    pub files: Vec<FileCounts>,
    /// How tiered revenue rates were chosen (see [`crate::attain::rate_for`]).
    pub tier_notes: TierNotes,
    /// Customers (by designation-index slot) whose name is in `customer_names`:
    /// a look-up per line in this vector instead of in the map.
    noted: Vec<bool>,
    /// Partner IDs with letters that billing lines name themselves (a
    /// reseller or Tier 1 ID no designation spells) -> where each spelling
    /// was first seen ([`input_order`]): two spellings of one ID would be
    /// two statements of one partner ([`Fold::partner_spelling_clashes`]).
    pub line_partners: HashMap<Box<str>, u64>,
    /// Likewise the partner IDs of the accruals credit lines reverse in a
    /// closed period (as issued, or as the designations spell them now) ->
    /// the first such credit line: an ID issued as `R-X` and named `r-x` by
    /// a billing line is one partner in two spellings as well.
    pub reversal_partners: HashMap<Box<str>, u64>,
}

impl Fold {
    pub fn new(n_files: usize) -> Fold {
        Fold {
            files: vec![FileCounts::default(); n_files],
            ..Fold::default()
        }
    }

    /// Adds one accrual. `customer_key` and `subscription_key` are lower case.
    pub fn add(
        &mut self,
        a: &Accrual<'_>,
        customer_key: &str,
        subscription_key: &str,
        currency: Currency,
    ) {
        let (k, s) = accrual_key(a, customer_key, subscription_key, currency);
        self.details.add_key(k, s);
    }

    /// Records a customer's name at input position `at` (see [`input_order`]).
    /// Lines must be noted in increasing order within one fold; merged folds
    /// keep the name of the earliest position.
    pub fn note_customer(&mut self, customer_key: &str, name: &str, at: u64) {
        if !name.is_empty() && !self.customer_names.contains_key(customer_key) {
            self.customer_names
                .insert(customer_key.into(), (name.to_string(), at));
        }
    }

    /// [`Fold::note_customer`] for a customer with designation-index slot
    /// `slot` (see [`crate::attribute::DesignationIndex::customer_slot`]).
    pub fn note_customer_slot(
        &mut self,
        slot: Option<u32>,
        customer_key: &str,
        name: &str,
        at: u64,
    ) {
        let Some(slot) = slot.map(|s| s as usize) else {
            return self.note_customer(customer_key, name, at);
        };
        if self.noted.get(slot) == Some(&true) || name.is_empty() {
            return;
        }
        self.note_customer(customer_key, name, at);
        if self.noted.len() <= slot {
            self.noted.resize(slot + 1, false);
        }
        self.noted[slot] = true;
    }

    /// The customer's name, first seen in input order ("" when unknown).
    pub fn customer_name(&self, customer_key: &str) -> String {
        self.customer_names
            .get(customer_key)
            .map(|n| n.0.clone())
            .unwrap_or_default()
    }

    /// Merges another fold into this one: sums add up (exactly, so the order of
    /// merging does not matter), and each customer keeps the name seen at the
    /// earliest input position (this fold's on a tie).
    pub fn merge(&mut self, mut later: Fold) {
        self.merge_from(&mut later);
    }

    /// Like [`Fold::merge`], through a reference: `later` is left empty (its
    /// groups are moved or freed as they are merged, its row counts zeroed).
    /// Notes a partner ID a billing line names itself (not through a
    /// designation), at input position `at`. Only an ID with an ASCII
    /// letter can be spelled otherwise; numeric partner IDs cost one scan.
    #[inline]
    pub fn note_line_partner(&mut self, id: &str, at: u64) {
        if !id.bytes().any(|b| b.is_ascii_alphabetic()) && id.is_ascii() {
            return;
        }
        keep_first(&mut self.line_partners, id, at);
    }

    /// Notes the partner ID of an accrual that the credit line at input
    /// position `at` reverses in a closed period (see
    /// [`Fold::reversal_partners`]).
    pub fn note_reversal_partner(&mut self, id: &str, at: u64) {
        if !id.bytes().any(|b| b.is_ascii_alphabetic()) && id.is_ascii() {
            return;
        }
        keep_first(&mut self.reversal_partners, id, at);
    }

    /// The partner IDs billing lines name (or reverse, see
    /// [`Fold::reversal_partners`]) in several letter cases: per ID (by its
    /// [`crate::ingest::id_key`]), each spelling, where it was first seen,
    /// and whether that is a credit line reversing it, in input order; IDs
    /// in the order of their first spelling.
    pub fn partner_spelling_clashes(&self) -> Vec<Vec<(&str, u64, bool)>> {
        let mut first: HashMap<&str, (u64, bool)> = HashMap::new();
        for (map, reversed) in [
            (&self.line_partners, false),
            (&self.reversal_partners, true),
        ] {
            for (id, &at) in map {
                let e = first.entry(&**id).or_insert((at, reversed));
                if at < e.0 {
                    *e = (at, reversed);
                }
            }
        }
        let mut by_key: HashMap<String, Vec<(&str, u64, bool)>> = HashMap::new();
        for (id, (at, reversed)) in first {
            by_key
                .entry(crate::ingest::id_key(id))
                .or_default()
                .push((id, at, reversed));
        }
        let mut clashes: Vec<Vec<(&str, u64, bool)>> = by_key
            .into_values()
            .filter(|v| v.len() > 1)
            .map(|mut v| {
                v.sort_by_key(|&(id, at, _)| (at, id));
                v
            })
            .collect();
        clashes.sort_by_key(|v| v[0].1);
        clashes
    }

    pub fn merge_from(&mut self, later: &mut Fold) {
        if self.details.is_empty() {
            std::mem::swap(&mut self.details, &mut later.details);
        } else {
            for (k, v) in later.details.take_all() {
                self.details.add_key(k, v);
            }
        }
        for (k, v) in later.customer_names.drain() {
            match self.customer_names.entry(k) {
                hashbrown::hash_map::Entry::Occupied(mut e) => {
                    if v.1 < e.get().1 {
                        e.insert(v);
                    }
                }
                hashbrown::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                }
            }
        }
        if self.files.len() < later.files.len() {
            self.files.resize(later.files.len(), FileCounts::default());
        }
        for (a, b) in self.files.iter_mut().zip(later.files.iter_mut()) {
            a.add(b);
            *b = FileCounts::default();
        }
        self.tier_notes.merge(std::mem::take(&mut later.tier_notes));
        for (id, at) in later.line_partners.drain() {
            keep_first(&mut self.line_partners, &id, at);
        }
        for (id, at) in later.reversal_partners.drain() {
            keep_first(&mut self.reversal_partners, &id, at);
        }
    }

    /// Frees the groups and customer names (keeping the row counts); returns
    /// how many there were.
    pub fn release_groups(&mut self) -> (usize, usize) {
        let counts = (self.details.len(), self.customer_names.len());
        self.details = DetailMap::default();
        self.customer_names = HashMap::new();
        self.noted = Vec::new();
        counts
    }

    pub fn totals(&self) -> FileCounts {
        let mut t = FileCounts::default();
        for f in &self.files {
            t.add(f);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spellings of one partner ID on billing lines: each spelling's first
    /// line, whichever worker saw it first; numeric IDs are not kept.
    #[test]
    fn partner_spellings_on_billing_lines_merge_to_their_first_lines() {
        let (mut a, mut b) = (Fold::default(), Fold::default());
        a.note_line_partner("r-x", input_order(1, 9));
        a.note_line_partner("500275", input_order(0, 2));
        b.note_line_partner("R-X", input_order(0, 7));
        b.note_line_partner("r-x", input_order(0, 3));
        b.note_line_partner("Q-1", input_order(0, 4));
        b.note_reversal_partner("q-1", input_order(1, 1));
        b.note_reversal_partner("R-X", input_order(0, 5));
        b.note_reversal_partner("12", input_order(0, 1));
        assert_eq!(a.line_partners.len(), 1, "numeric IDs are not kept");
        assert_eq!(b.reversal_partners.len(), 2, "numeric IDs are not kept");
        a.merge_from(&mut b);
        assert_eq!(
            a.partner_spelling_clashes(),
            vec![
                vec![
                    ("r-x", input_order(0, 3), false),
                    ("R-X", input_order(0, 5), true)
                ],
                vec![
                    ("Q-1", input_order(0, 4), false),
                    ("q-1", input_order(1, 1), true)
                ],
            ]
        );
    }

    fn acc(partner: &'static str, amount: &str) -> Accrual<'static> {
        Accrual {
            program: 0,
            partner_id: partner,
            association: Association::Dpor,
            basis: Decimal::from(100),
            rate: "0.04".parse().unwrap(),
            share: Decimal::ONE,
            amount: amount.parse().unwrap(),
            designation: None,
            days: None,
            month: Month::from_ym(2026, 10),
        }
    }

    #[test]
    fn exact_sums_keep_the_largest_scale_whatever_the_order() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let parts = [d("580.00"), d("-372.857143"), d("-207.142857"), d("58.00")];
        let mut seen = std::collections::BTreeSet::new();
        for order in [[0, 1, 2, 3], [1, 2, 0, 3], [3, 0, 1, 2], [0, 2, 1, 3]] {
            let mut total = Decimal::ZERO;
            for i in order {
                total = sum_exact(total, parts[i]).unwrap();
            }
            seen.insert(total.to_string());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["58.000000"]);
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn exact_sum_is_exact_where_decimal_addition_rounds() {
        // Decimal: 1000000 + 1e-23 needs 30 digits and is rounded, so
        // (1e6 + 1e-23) - 1e6 is 0 one way and 1e-23 the other.
        let (big, tiny) = (dec("1000000"), dec("0.00000000000000000000001"));
        let a = ExactSum::of(big).plus_decimal(tiny).plus_decimal(-big);
        let b = ExactSum::of(big).plus_decimal(-big).plus_decimal(tiny);
        assert_eq!(a, b);
        assert_eq!(a.to_decimal().unwrap(), tiny);
        assert_eq!(a.to_decimal().unwrap().scale(), 23);
    }

    #[test]
    fn exact_sum_rounds_once_half_even_only_past_28_digits() {
        // 29 significant digits: rounded once to 28, half to even.
        let s = ExactSum::of(dec("100000000000000000000")).plus_decimal(dec("0.00000000045"));
        assert_eq!(
            s.to_decimal().unwrap().to_string(),
            "100000000000000000000.00000000"
        );
        let s = ExactSum::of(dec("100000000000000000000")).plus_decimal(dec("0.00000000451"));
        assert_eq!(
            s.to_decimal().unwrap().to_string(),
            "100000000000000000000.00000000"
        );
        let s = ExactSum::of(dec("100000000000000000000")).plus_decimal(dec("0.000000005"));
        assert_eq!(
            s.to_decimal().unwrap().to_string(),
            "100000000000000000000.00000000"
        );
        let s = ExactSum::of(dec("100000000000000000000")).plus_decimal(dec("0.000000015"));
        assert_eq!(
            s.to_decimal().unwrap().to_string(),
            "100000000000000000000.00000002"
        );
        let s = ExactSum::of(dec("-100000000000000000000")).plus_decimal(dec("-0.000000015"));
        assert_eq!(
            s.to_decimal().unwrap().to_string(),
            "-100000000000000000000.00000002"
        );
        // Exactly 28 digits: kept.
        let s = ExactSum::of(dec("10000000000000000000")).plus_decimal(dec("0.000000001"));
        assert_eq!(
            s.to_decimal().unwrap().to_string(),
            "10000000000000000000.000000001"
        );
    }

    #[test]
    fn exact_sum_beyond_decimal_max_or_128_bits_is_an_error() {
        let s = ExactSum::of(Decimal::MAX).plus_decimal(Decimal::MAX);
        assert_eq!(s.to_decimal(), Err(SumError::TooLarge));
        // Back in range: exact again (the sum never lost a digit).
        assert_eq!(s.plus_decimal(-Decimal::MAX).to_decimal(), Ok(Decimal::MAX));
        let mut s = ExactSum::of(dec("0.0000000000000000000000000001"));
        for _ in 0..20 {
            s = s.plus_decimal(Decimal::MAX);
        }
        assert_eq!(s.to_decimal(), Err(SumError::Overflow));
        // Sticky.
        assert_eq!(
            s.plus(&ExactSum::default()).to_decimal(),
            Err(SumError::Overflow)
        );
        assert_eq!(sum_exact(Decimal::MAX, Decimal::ONE), None);
    }

    fn key(p: &str, c: &str, s: &str) -> DetailKey {
        let d = Decimal::ONE;
        let m = Month::from_ym(2026, 10);
        let eur = Currency::parse("EUR").unwrap();
        DetailKey::new(p, c, 0, m, eur, Association::Dpor, s, d, d)
    }

    #[test]
    fn rates_and_shares_read_back_whole_in_either_form() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let third = Decimal::ONE / Decimal::from(3);
        let cases = [
            ("0.04", "1"),
            ("0.0375", "0.5"),
            ("0.150", "1.00"),
            ("2147483647", "-2147483648"),
            ("2147483648", "1"),
            ("-0", "1"),
            ("0.0000000000000000000000000001", "1"),
        ];
        for (r, sh) in cases {
            let rs = RateShare::new(d(r), d(sh));
            let (r2, s2) = rs.get();
            // Same value and same digits (the scale is kept).
            assert_eq!(
                (r2.to_string(), s2.to_string()),
                (d(r).to_string(), d(sh).to_string())
            );
            assert_eq!(r2.is_sign_negative(), d(r).is_sign_negative(), "{r}");
        }
        assert!(matches!(
            RateShare::new(d("0.04"), Decimal::ONE),
            RateShare::Small { .. }
        ));
        assert!(matches!(
            RateShare::new(d("0.04"), third),
            RateShare::Big(_)
        ));
        assert_eq!(RateShare::new(d("0.04"), third).get(), (d("0.04"), third));
        // Equal values in other digits are one group, in either form.
        assert!(RateShare::new(d("0.15"), d("1")).same(&RateShare::new(d("0.150"), d("1.0"))));
        assert!(!RateShare::new(d("0.15"), d("1")).same(&RateShare::new(d("0.16"), d("1"))));
        assert!(RateShare::new(d("0.15"), third).same(&RateShare::new(d("0.150"), third)));
        let (a, b) = (
            key_at("p", "c", "s", d("0.15"), d("1")),
            key_at("p", "c", "s", d("0.150"), d("1.00")),
        );
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert!(
            key_at("p", "c", "s", d("0.15"), third) < key_at("p", "c", "s", d("0.15"), d("0.5"))
        );
    }

    fn key_at(p: &str, c: &str, s: &str, rate: Decimal, share: Decimal) -> DetailKey {
        let m = Month::from_ym(2026, 10);
        let eur = Currency::parse("EUR").unwrap();
        DetailKey::new(p, c, 0, m, eur, Association::Dpor, s, rate, share)
    }

    #[test]
    fn guids_are_packed_and_read_back() {
        let g = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        assert_eq!(pack_guid(g).unwrap()[1..4], [0x0f, 0x1e, 0x2d]);
        assert_eq!(&unpack_guid(&pack_guid(g).unwrap()), g.as_bytes());
        // Not the canonical form: kept as text.
        for other in [
            "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
            "{0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f}",
            "0f1e2d3c-4b5a-6978-8796_a5b4c3d2e1f0",
            "0f1e2d3c4b5a697887960a5b4c3d2e1f0aaa",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1fg",
        ] {
            assert_eq!(pack_guid(other), None, "{other}");
        }
        let k = key("1234567", g, "ABC");
        assert_eq!(
            (&*k.partner_id(), &*k.customer_id(), &*k.subscription_id()),
            ("1234567", g, "ABC")
        );
        assert_eq!(std::mem::size_of::<DetailKey>(), 80);
        assert!(matches!(k.ids.bytes, IdBytes::Inline { .. }));
    }

    proptest::proptest! {
        /// Keys built from packed IDs are equal, and sort, exactly as their
        /// text does, whatever mix of GUIDs and other text they hold.
        #[test]
        fn packed_keys_compare_as_their_text(
            ids in proptest::collection::vec(
                proptest::prop_oneof![
                    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                    "[0-9a-f]{0,3}",
                    "[0-9a-fA-F-]{36}",
                    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}[0-9a-zé-]{0,2}",
                    "\\PC{0,40}",
                ],
                6,
            ),
        ) {
            let a = key(&ids[0], &ids[1], &ids[2]);
            let b = key(&ids[3], &ids[4], &ids[5]);
            let text = |k: &DetailKey| {
                (k.partner_id().to_string(), k.customer_id().to_string(), k.subscription_id().to_string())
            };
            proptest::prop_assert_eq!(text(&a), (ids[0].clone(), ids[1].clone(), ids[2].clone()));
            proptest::prop_assert_eq!(text(&b), (ids[3].clone(), ids[4].clone(), ids[5].clone()));
            let want = (&ids[0], &ids[1], &ids[2]).cmp(&(&ids[3], &ids[4], &ids[5]));
            proptest::prop_assert_eq!(a.cmp(&b), want);
            proptest::prop_assert_eq!(a == b, want.is_eq());
            // A GUID's prefix or extension against the GUID itself.
            let mut shorter = ids[1].clone();
            shorter.pop();
            let c = key(&ids[0], &shorter, &ids[2]);
            proptest::prop_assert_eq!(a.cmp(&c), ids[1].cmp(&shorter));
            proptest::prop_assert_eq!(c.cmp(&a), shorter.cmp(&ids[1]));
        }
    }

    #[test]
    fn exact_sums_are_small_and_their_form_follows_the_value() {
        assert_eq!(std::mem::size_of::<ExactSum>(), 24);
        assert_eq!(std::mem::size_of::<Sums>(), 56);
        // Across the inline limit and back: the same values, the same sums,
        // whether added in place (the fast path) or through `plus`.
        let half = Decimal::from(i64::MAX / 2 + 1);
        let mut in_place = ExactSum::of(half);
        in_place.add(&ExactSum::of(half));
        let through = ExactSum::of(half).plus(&ExactSum::of(half));
        assert_eq!(in_place, through);
        assert!(matches!(in_place.0, Repr::Wide(_)));
        assert_eq!(in_place.to_decimal().unwrap(), half * Decimal::TWO);
        let mut small = ExactSum::of(dec("1.50"));
        small.add(&ExactSum::of(dec("-0.25")));
        assert!(matches!(small.0, Repr::Small { .. }));
        assert_eq!(small, ExactSum::of(dec("1.50")).plus_decimal(dec("-0.25")));
        assert_eq!(small.to_decimal().unwrap().to_string(), "1.25");
        // Scales differ: aligned to the larger.
        small.add(&ExactSum::of(dec("0.001")));
        assert_eq!(small.to_decimal().unwrap().to_string(), "1.251");
    }

    proptest::proptest! {
        /// Any order and any split into partial sums merged in any order give
        /// the same sum, bit for bit (scale included).
        #[test]
        fn exact_sums_do_not_depend_on_order_or_splits(
            terms in proptest::collection::vec((proptest::num::i64::ANY, 0u32..=28), 1..40),
            perm in proptest::collection::vec(proptest::num::usize::ANY, 40),
            cuts in proptest::collection::vec(0usize..40, 0..5),
        ) {
            let terms: Vec<Decimal> = terms.iter().map(|&(m, s)| Decimal::new(m, s)).collect();
            let mut forward = ExactSum::default();
            for t in &terms {
                forward = forward.plus_decimal(*t);
            }
            let mut order: Vec<usize> = (0..terms.len()).collect();
            for (i, p) in perm.iter().enumerate().take(terms.len()) {
                order.swap(i, p % terms.len());
            }
            let shuffled: Vec<Decimal> = order.iter().map(|&i| terms[i]).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (terms.len() + 1)).collect();
            cuts.extend([0, terms.len()]);
            cuts.sort();
            cuts.dedup();
            let parts: Vec<ExactSum> = cuts
                .windows(2)
                .map(|w| shuffled[w[0]..w[1]].iter().fold(ExactSum::default(), |s, t| s.plus_decimal(*t)))
                .collect();
            let merged = parts.iter().rev().fold(ExactSum::default(), |s, p| s.plus(p));
            proptest::prop_assert_eq!(&merged, &forward);
            let d = forward.to_decimal();
            proptest::prop_assert_eq!(merged.to_decimal(), d);
            if let Ok(d) = d {
                // Never more than 28 digits from the exact sum: within half a unit
                // of the last kept decimal.
                let at28 = |m: i128, s: u32| m.checked_mul(10i128.pow(28 - s));
                let exact = terms.iter().try_fold(0i128, |a, t| a.checked_add(at28(t.mantissa(), t.scale())?));
                if let (Some(exact), Some(shown)) = (exact, at28(d.mantissa(), d.scale())) {
                    proptest::prop_assert!((exact - shown).abs() * 2 <= 10i128.pow(28 - d.scale()));
                }
            }
        }
    }

    #[test]
    fn program_indexes_above_65535_keep_their_groups_apart() {
        let eur = Currency::parse("EUR").unwrap();
        let mut f = Fold::new(1);
        for program in [3usize, 65_539, 69_999] {
            f.add(
                &Accrual {
                    program,
                    ..acc("p1", "1")
                },
                "c",
                "s",
                eur,
            );
        }
        let mut programs: Vec<u32> = f.details.iter().map(|(k, _)| k.program).collect();
        programs.sort();
        assert_eq!(programs, [3, 65_539, 69_999]);
    }

    #[test]
    fn groups_span_segments_and_merge_across_them() {
        let eur = Currency::parse("EUR").unwrap();
        let n = 2 * SEGMENT + 7;
        let subs: Vec<String> = (0..n).map(|i| format!("sub-{i}")).collect();
        let mut a = Fold::new(1);
        let mut b = Fold::new(1);
        for (i, s) in subs.iter().enumerate() {
            a.add(&acc("p1", "1"), "c", s, eur);
            if i % 2 == 0 {
                b.add(&acc("p1", "2"), "c", s, eur);
            }
        }
        b.add(&acc("p2", "5"), "c", &subs[0], eur);
        assert_eq!(a.details.len(), n);
        a.merge(b);
        assert_eq!(a.details.len(), n + 1);
        let mut lines = 0;
        let mut total = Decimal::ZERO;
        for (k, v) in a.details.iter() {
            lines += v.lines;
            total += v.accrual.to_decimal().unwrap();
            if &*k.partner_id() == "p1" {
                let i: usize = k.subscription_id()[4..].parse().unwrap();
                assert_eq!(v.lines, if i.is_multiple_of(2) { 2 } else { 1 });
            }
        }
        assert_eq!(lines as usize, n + n.div_ceil(2) + 1);
        assert_eq!(total, Decimal::from(n + 2 * n.div_ceil(2) + 5));
    }

    #[test]
    fn shared_groups_from_many_threads_equal_one_fold() {
        let eur = Currency::parse("EUR").unwrap();
        let subs: Vec<String> = (0..5_000).map(|i| format!("sub-{i}")).collect();
        let amounts = ["4", "1.5", "-4", "0.0001", "58.00", "-0.000001"];
        let accrual = |i: usize| acc(["p1", "p2", "p3"][i % 3], amounts[i % amounts.len()]);
        let mut one = Fold::new(1);
        for i in 0..20_000 {
            one.add(&accrual(i), "c", &subs[i % subs.len()], eur);
        }
        let shared = SharedDetails::default();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (shared, subs) = (&shared, &subs);
                s.spawn(move || {
                    // Each thread takes every fourth accrual, backwards.
                    for i in (0..20_000).rev().filter(|i| i % 4 == t) {
                        shared.add(&accrual(i), "c", &subs[i % subs.len()], eur);
                    }
                });
            }
        });
        let map = shared.into_map();
        let sorted = |m: &DetailMap| {
            let mut v: Vec<_> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v.into_iter()
                .map(|(k, v)| {
                    (
                        k.partner_id().to_string(),
                        k.subscription_id().to_string(),
                        v.lines,
                        v.basis.to_decimal().unwrap().to_string(),
                        v.accrual.to_decimal().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(map.len(), one.details.len());
        assert_eq!(sorted(&map), sorted(&one.details));
    }

    #[test]
    fn customer_names_by_slot_keep_the_first_non_empty_name() {
        let mut f = Fold::new(1);
        f.note_customer_slot(Some(3), "c3", "", 1);
        f.note_customer_slot(Some(3), "c3", "Contoso", 2);
        f.note_customer_slot(Some(3), "c3", "Contoso Ltd", 3);
        f.note_customer_slot(None, "x", "Fabrikam", 4);
        f.note_customer_slot(None, "x", "Fabrikam AG", 5);
        assert_eq!(f.customer_name("c3"), "Contoso");
        assert_eq!(f.customer_name("x"), "Fabrikam");
        // A merged fold's earlier name wins, whatever the slots said.
        let mut earlier = Fold::new(1);
        earlier.note_customer_slot(Some(3), "c3", "Contoso GmbH", 0);
        earlier.merge(f);
        assert_eq!(earlier.customer_name("c3"), "Contoso GmbH");
        assert_eq!(earlier.customer_name("x"), "Fabrikam");
    }

    #[test]
    fn merge_equals_single_fold() {
        let eur = Currency::parse("EUR").unwrap();
        let mut one = Fold::new(1);
        let mut a = Fold::new(1);
        let mut b = Fold::new(1);
        for (i, (p, x)) in [("p1", "4"), ("p2", "1.5"), ("p1", "-4"), ("p1", "0.0001")]
            .iter()
            .enumerate()
        {
            one.add(&acc(p, x), "c", "s", eur);
            if i < 2 {
                a.add(&acc(p, x), "c", "s", eur)
            } else {
                b.add(&acc(p, x), "c", "s", eur)
            }
        }
        a.merge(b);
        let sorted = |f: &Fold| {
            let mut v: Vec<_> = f
                .details
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        assert_eq!(sorted(&one), sorted(&a));
        let p1 = sorted(&a)[0].1.clone();
        assert_eq!(
            (p1.lines, p1.accrual.to_decimal().unwrap().to_string()),
            (3, "0.0001".to_string())
        );
    }

    /// A decimal from a mantissa (its magnitude below 2^96), a scale and a
    /// sign kept even on zero.
    fn decimal_of(m: i128, scale: u32, negative: bool) -> Decimal {
        let mut d = Decimal::from_i128_with_scale(m % (1i128 << 96), scale);
        if negative {
            d.set_sign_negative(true);
        }
        d
    }

    fn any_id() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[0-9]{7}",
            "[0-9a-fA-F-]{36}",
            "\\PC{0,60}",
        ]
    }

    fn any_decimal() -> impl proptest::strategy::Strategy<Value = Decimal> {
        use proptest::strategy::Strategy;
        proptest::prop_oneof![
            (proptest::num::i128::ANY, 0u32..=28, proptest::bool::ANY)
                .prop_map(|(m, s, n)| decimal_of(m, s, n)),
            (-1000i128..1000, 0u32..=6, proptest::bool::ANY)
                .prop_map(|(m, s, n)| decimal_of(m, s, n)),
            proptest::strategy::Just(Decimal::ONE / Decimal::from(3)),
            proptest::strategy::Just(decimal_of(0, 0, true)),
        ]
    }

    /// Sums of a few terms: inline, wide (beyond 64 bits) and overflowed.
    fn any_sum() -> impl proptest::strategy::Strategy<Value = ExactSum> {
        use proptest::strategy::Strategy;
        proptest::collection::vec(any_decimal(), 0..4).prop_map(|terms| {
            terms
                .iter()
                .fold(ExactSum::default(), |s, t| s.plus_decimal(*t))
        })
    }

    fn round_trip(k: &DetailKey, s: &Sums) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_group(k, s, &mut bytes);
        let mut buf = &bytes[..];
        let (k2, s2) = decode_group(&mut buf).unwrap();
        assert!(buf.is_empty());
        // The same form too (inline or not, small or big, hash kept).
        assert_eq!(format!("{k:?}"), format!("{k2:?}"));
        assert_eq!(&k2, k);
        assert_eq!(k2.cmp(k), std::cmp::Ordering::Equal);
        assert_eq!(k2.hash(), k.hash());
        assert_eq!(&s2, s);
        bytes
    }

    proptest::proptest! {
        /// Every group reads back as it was written, in the same forms, and
        /// any shorter piece of it is an error.
        #[test]
        fn groups_read_back_exactly_and_cut_groups_do_not(
            ids in proptest::collection::vec(any_id(), 3),
            program in proptest::num::u32::ANY,
            month in proptest::num::i32::ANY,
            currency in 0usize..4,
            association in 0usize..Association::ALL.len(),
            rate in any_decimal(),
            share in any_decimal(),
            lines in proptest::num::u64::ANY,
            basis in any_sum(),
            accrual in any_sum(),
        ) {
            let currency = Currency::parse(["EUR", "USD", "JPY", "BHD"][currency]).unwrap();
            let k = DetailKey::new(
                &ids[0], &ids[1], program, Month(month), currency,
                Association::ALL[association], &ids[2], rate, share,
            );
            let s = Sums { lines, basis, accrual };
            let bytes = round_trip(&k, &s);
            for cut in 0..bytes.len() {
                proptest::prop_assert!(decode_group(&mut &bytes[..cut]).is_err());
            }
        }

        /// Damaged bytes give an error or some group, never a panic.
        #[test]
        fn damaged_groups_do_not_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
            flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 0..4),
        ) {
            let _ = decode_group(&mut &bytes[..]);
            let mut good = Vec::new();
            let k = key("1234567", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "x");
            encode_group(&k, &Sums::default(), &mut good);
            for (at, b) in flips {
                let n = good.len();
                good[at % n] ^= b;
            }
            if let Ok((k, s)) = decode_group(&mut &good[..]) {
                // Whatever came back is a usable key.
                let _ = (k.partner_id().to_string(), k.rate_and_share(), k.hash(), s.accrual.to_decimal());
            }
        }
    }

    #[test]
    fn spilled_groups_keep_every_form() {
        let g = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let third = Decimal::ONE / Decimal::from(3);
        let wide = ExactSum::of(Decimal::MAX).plus_decimal(Decimal::MAX);
        let mut overflowed = ExactSum::of(dec("0.0000000000000000000000000001"));
        for _ in 0..20 {
            overflowed = overflowed.plus_decimal(Decimal::MAX);
        }
        let both_signs = ExactSum::of(dec("5.00")).plus_decimal(dec("-7"));
        let long = "x".repeat(40);
        let minus_zero = decimal_of(0, 3, true);
        let cases = [
            key(g, g, g),
            key_at("1234567", &long, g, third, minus_zero),
            key_at("P", "C", "S", minus_zero, Decimal::ONE),
        ];
        for k in &cases {
            for s in [&wide, &overflowed, &both_signs, &ExactSum::default()] {
                let sums = Sums {
                    lines: u64::MAX,
                    basis: s.clone(),
                    accrual: both_signs.clone(),
                };
                round_trip(k, &sums);
            }
        }
        assert!(matches!(wide.0, Repr::Wide(_)));
        assert!(matches!(cases[0].rate_share, RateShare::Small { .. }));
        assert!(matches!(cases[1].ids.bytes, IdBytes::Heap { .. }));
        assert!(matches!(cases[2].rate_share, RateShare::Big(_)));
        assert!(cases[2].rate().is_sign_negative());
        // An MPN ID and two GUIDs, a rate, a share and sums of money.
        let k = key_at("1234567", g, g, dec("0.04"), Decimal::ONE);
        let s = Sums {
            lines: 12,
            basis: ExactSum::of(dec("123456.78")),
            accrual: ExactSum::of(dec("4938.2712")),
        };
        // 44 bytes of IDs, 12 of the rest of the key, 13 of sums (and one
        // of length in a run file).
        assert_eq!(round_trip(&k, &s).len(), 69);
    }

    #[test]
    fn drained_groups_leave_the_shards_empty_and_counted() {
        let eur = Currency::parse("EUR").unwrap();
        let shared = SharedDetails::default();
        for (i, sub) in ["a", "b", "a", "c"].iter().enumerate() {
            shared.add(&acc("p1", &i.to_string()), "c", sub, eur);
        }
        assert_eq!(shared.len(), 3);
        let mut drained = shared.drain();
        assert_eq!((drained.len(), shared.len()), (3, 0));
        drained.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(drained[0].1.lines, 2);
        shared.add(&acc("p1", "1"), "c", "a", eur);
        assert_eq!(shared.len(), 1);
        assert_eq!(shared.into_map().len(), 1);
    }
}
