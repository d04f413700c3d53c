//! Spill: the statement groups on disk, so that the stream's memory is
//! bounded by a budget of groups instead of growing with the rows.
//!
//! Groups grow with rows (7M groups at 5M billing lines, about a gigabyte).
//! When the shared groups pass the budget the collector drains them
//! ([`crate::fold::SharedDetails::drain`]), sorts them in statement order and
//! writes them as one run file ([`Runs::write`]). At the end,
//! [`partner_groups`] merges the runs and the groups still in memory: a key
//! met in several of them adds its sums ([`Sums::add`], exact, so the result
//! does not depend on when the runs were cut), and the merged groups come out
//! one partner at a time, in the order a statement needs. With no run, that
//! is exactly sorting every group and cutting the result by partner.
//!
//! Run files live in a directory the caller gives (the run's staging
//! directory) and are removed as soon as they are merged; whatever is left
//! (an error, a run that stops half-way) goes when the [`Runs`] are dropped,
//! so porledger leaves no temporary file behind.
//!
//! A run file: the 8 bytes `MAGIC`, then each group as its length (a
//! varint) and its bytes (`crate::fold::encode_group`), then a zero length
//! and the number of groups as 8 bytes little-endian. A file cut anywhere,
//! even between two groups, is reported, never read as a shorter run.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::slice::ParallelSliceMut;

use crate::error::Fatal;
use crate::fold::{decode_group, encode_group, get_varint, put_varint, DetailKey, DetailMap, Sums};

/// The first bytes of every run file (its format's version is the last).
const MAGIC: &[u8; 8] = b"PLSPILL1";

/// Most runs read at once. Beyond, the oldest are first merged into one run,
/// so that a tiny budget does not open a file (and a buffer) per run.
const FAN_IN: usize = 64;

/// Buffer of each run's reader and writer.
const BUFFER: usize = 1 << 20;

/// The run files written so far, in the order they were written.
#[derive(Debug, Default)]
pub struct Runs {
    dir: PathBuf,
    /// Whether [`Runs::write`] made `dir` (it is then removed when empty).
    made_dir: bool,
    files: Vec<PathBuf>,
    /// The number in the next file's name.
    next: u64,
    groups: u64,
}

impl Runs {
    /// Runs to be written under `dir`; nothing is created before the first.
    pub fn new(dir: PathBuf) -> Runs {
        Runs {
            dir,
            made_dir: false,
            files: Vec::new(),
            next: 0,
            groups: 0,
        }
    }

    /// Run files not merged yet.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Groups written to the runs (a key in several runs counts once in each).
    pub fn groups(&self) -> u64 {
        self.groups
    }

    /// Writes groups sorted by key, each key once, as a new run file
    /// (`run-000001.bin`, ...) under the directory, made if needed. Nothing is
    /// written for no group. A name already taken is skipped, never
    /// overwritten.
    pub fn write(&mut self, sorted: Vec<(DetailKey, Sums)>) -> Result<(), Fatal> {
        if sorted.is_empty() {
            return Ok(());
        }
        debug_assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0));
        let mut w = self.create()?;
        for (k, s) in &sorted {
            w.push(k, s)?;
        }
        drop(sorted);
        w.finish(self)
    }

    /// A new, empty run file, listed at once (so that it is removed on drop
    /// however the writing ends).
    fn create(&mut self) -> Result<RunWriter, Fatal> {
        if !self.dir.is_dir() {
            std::fs::create_dir_all(&self.dir).map_err(|e| Fatal::io(&self.dir, e))?;
            self.made_dir = true;
        }
        loop {
            self.next += 1;
            let path = self.dir.join(format!("run-{:06}.bin", self.next));
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            match file {
                Ok(f) => {
                    self.files.push(path.clone());
                    let mut out = BufWriter::with_capacity(BUFFER, f);
                    out.write_all(MAGIC).map_err(|e| Fatal::io(&path, e))?;
                    return Ok(RunWriter {
                        path,
                        out,
                        count: 0,
                        scratch: Vec::with_capacity(256),
                        len: Vec::with_capacity(19),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Fatal::io(&path, e)),
            }
        }
    }

    /// Removes a merged run's file.
    fn remove(&mut self, path: &Path) -> Result<(), Fatal> {
        self.files.retain(|f| f != path);
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Fatal::io(path, e)),
            _ => Ok(()),
        }
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        if self.made_dir {
            // Only when empty: the directory may hold other files by now.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// One run file being written.
struct RunWriter {
    path: PathBuf,
    out: BufWriter<File>,
    count: u64,
    /// The group being written, and its length.
    scratch: Vec<u8>,
    len: Vec<u8>,
}

impl RunWriter {
    fn push(&mut self, k: &DetailKey, s: &Sums) -> Result<(), Fatal> {
        self.scratch.clear();
        encode_group(k, s, &mut self.scratch);
        self.len.clear();
        put_varint(&mut self.len, self.scratch.len() as u128);
        self.out
            .write_all(&self.len)
            .and_then(|_| self.out.write_all(&self.scratch))
            .map_err(|e| Fatal::io(&self.path, e))?;
        self.count += 1;
        Ok(())
    }

    /// Writes the end (a zero length and the count) and closes the file.
    fn finish(mut self, runs: &mut Runs) -> Result<(), Fatal> {
        let mut end = vec![0u8];
        end.extend_from_slice(&self.count.to_le_bytes());
        self.out
            .write_all(&end)
            .and_then(|_| self.out.flush())
            .map_err(|e| Fatal::io(&self.path, e))?;
        runs.groups += self.count;
        Ok(())
    }
}

/// One run file being read, group by group.
struct RunReader {
    path: PathBuf,
    input: BufReader<File>,
    count: u64,
    record: Vec<u8>,
}

impl RunReader {
    fn open(path: &Path) -> Result<RunReader, Fatal> {
        let f = File::open(path).map_err(|e| Fatal::io(path, e))?;
        // A small run needs no megabyte of buffer (with a tiny budget there
        // are many).
        let size = f.metadata().map_err(|e| Fatal::io(path, e))?.len();
        let cap = (size as usize).clamp(4096, BUFFER);
        let mut input = BufReader::with_capacity(cap, f);
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|e| Fatal::io(path, e))?;
        if &magic != MAGIC {
            return Err(corrupt(path, "not a porledger run file"));
        }
        Ok(RunReader {
            path: path.to_path_buf(),
            input,
            count: 0,
            record: Vec::with_capacity(256),
        })
    }

    /// The next group, or `None` at the run's end (its count checked).
    fn next(&mut self) -> Result<Option<(DetailKey, Sums)>, Fatal> {
        let len = self.read_varint()?;
        if len == 0 {
            let mut n = [0u8; 8];
            self.input
                .read_exact(&mut n)
                .map_err(|e| self.read_error(e))?;
            if u64::from_le_bytes(n) != self.count {
                return Err(corrupt(&self.path, "groups are missing"));
            }
            let after = self.input.fill_buf().map(|b| b.len());
            if after.map_err(|e| self.read_error(e))? != 0 {
                return Err(corrupt(&self.path, "bytes after the end of the run"));
            }
            return Ok(None);
        }
        // Read as the bytes come, not allocated from the length: a damaged
        // length must not ask for gigabytes.
        self.record.clear();
        let want = u64::try_from(len).unwrap_or(u64::MAX);
        let got = (&mut self.input)
            .take(want)
            .read_to_end(&mut self.record)
            .map_err(|e| self.read_error(e))?;
        if got as u64 != want {
            return Err(corrupt(&self.path, "the file is cut short"));
        }
        let mut buf = &self.record[..];
        let group = decode_group(&mut buf).map_err(|e| corrupt(&self.path, &e.to_string()))?;
        if !buf.is_empty() {
            return Err(corrupt(&self.path, "a group longer than its contents"));
        }
        self.count += 1;
        Ok(Some(group))
    }

    /// A record's length: at most 19 bytes, read through the buffer.
    fn read_varint(&mut self) -> Result<u128, Fatal> {
        let mut bytes = [0u8; 19];
        let mut n = 0;
        while n < bytes.len() {
            self.input
                .read_exact(&mut bytes[n..n + 1])
                .map_err(|e| self.read_error(e))?;
            n += 1;
            if bytes[n - 1] & 0x80 == 0 {
                break;
            }
        }
        get_varint(&mut &bytes[..n]).map_err(|e| corrupt(&self.path, &e.to_string()))
    }

    fn read_error(&self, e: std::io::Error) -> Fatal {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            corrupt(&self.path, "the file is cut short")
        } else {
            Fatal::io(&self.path, e)
        }
    }
}

/// A run file that does not read back as written.
fn corrupt(path: &Path, what: &str) -> Fatal {
    Fatal::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("spilled run unreadable: {what}"),
        ),
    )
}

/// Where merged groups come from: a run file, or the groups never spilled
/// (sorted in memory).
enum Source {
    Run(RunReader),
    Memory(std::vec::IntoIter<(DetailKey, Sums)>),
    /// A run read to its end, its file closed and removed.
    Done,
}

/// The smallest unread group of one source, in the merge's heap.
struct Head {
    key: DetailKey,
    sums: Sums,
    source: usize,
}

impl PartialEq for Head {
    fn eq(&self, o: &Head) -> bool {
        self.cmp(o).is_eq()
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Head) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Reversed (the heap gives its largest): the smallest key first, and of
/// equal keys the earliest source's (an earlier run's key, as the first
/// added in memory is kept).
impl Ord for Head {
    fn cmp(&self, o: &Head) -> std::cmp::Ordering {
        o.key.cmp(&self.key).then(o.source.cmp(&self.source))
    }
}

/// A k-way merge of sorted sources, equal keys summed.
struct Merge {
    sources: Vec<Source>,
    heap: BinaryHeap<Head>,
}

impl Merge {
    fn new(sources: Vec<Source>, runs: &mut Runs) -> Result<Merge, Fatal> {
        let mut m = Merge {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
        };
        for i in 0..m.sources.len() {
            m.refill(i, runs)?;
        }
        Ok(m)
    }

    /// Puts source `i`'s next group in the heap; a run read to its end is
    /// removed.
    fn refill(&mut self, i: usize, runs: &mut Runs) -> Result<(), Fatal> {
        let next = match &mut self.sources[i] {
            Source::Run(r) => match r.next()? {
                Some(g) => Some(g),
                None => {
                    // Closed before it is removed (some systems refuse
                    // otherwise).
                    let path = r.path.clone();
                    self.sources[i] = Source::Done;
                    runs.remove(&path)?;
                    None
                }
            },
            Source::Memory(it) => it.next(),
            Source::Done => None,
        };
        if let Some((key, sums)) = next {
            self.heap.push(Head {
                key,
                sums,
                source: i,
            });
        }
        Ok(())
    }

    /// The next key of all sources, its sums added over every source that
    /// has it.
    fn next(&mut self, runs: &mut Runs) -> Result<Option<(DetailKey, Sums)>, Fatal> {
        let Some(Head {
            key,
            mut sums,
            source,
        }) = self.heap.pop()
        else {
            return Ok(None);
        };
        self.refill(source, runs)?;
        while self.heap.peek().is_some_and(|h| h.key.cmp(&key).is_eq()) {
            if let Some(h) = self.heap.pop() {
                sums.add(&h.sums);
                self.refill(h.source, runs)?;
            }
        }
        Ok(Some((key, sums)))
    }
}

/// Every group, merged from the runs and the groups left in memory, one
/// partner at a time: see [`partner_groups`].
pub struct PartnerGroups {
    rest: Option<DetailMap>,
    merge: Option<Merge>,
    /// The first group of the next partner, read while ending the last.
    carry: Option<(DetailKey, Sums)>,
    done: bool,
    /// Declared last: dropped (their files removed) after the readers.
    runs: Runs,
}

/// The groups of `rest` and of every run, merged in [`DetailKey`] order with
/// equal keys' sums added, as one vector per partner (equal
/// [`DetailKey::packed_partner`]). With no run this is `rest` sorted and cut
/// by partner, as statements were always built.
///
/// The work starts at the first `next`: `rest` is then sorted on the current
/// rayon pool; an error (a run file unreadable) is the item where it happens,
/// and the last. Each run file is removed once merged, the others when the
/// iterator is dropped.
pub fn partner_groups(rest: DetailMap, runs: Runs) -> PartnerGroups {
    PartnerGroups {
        rest: Some(rest),
        merge: None,
        carry: None,
        done: false,
        runs,
    }
}

impl PartnerGroups {
    /// Sorts the groups in memory, merges runs beyond [`FAN_IN`] into fewer
    /// and opens the rest.
    fn start(&mut self, mut rest: DetailMap) -> Result<Merge, Fatal> {
        let mut groups: Vec<(DetailKey, Sums)> = Vec::with_capacity(rest.len());
        groups.extend(rest.take_all());
        // Keys are unique, so an unstable sort gives one order.
        groups.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        while self.runs.len() > FAN_IN {
            let oldest: Vec<PathBuf> = self.runs.files[..FAN_IN].to_vec();
            let sources = open_all(&oldest)?;
            let mut merge = Merge::new(sources, &mut self.runs)?;
            let mut w = self.runs.create()?;
            while let Some((k, s)) = merge.next(&mut self.runs)? {
                w.push(&k, &s)?;
            }
            // Counted once already, when first written.
            let groups = self.runs.groups;
            w.finish(&mut self.runs)?;
            self.runs.groups = groups;
            // In the place of the runs it merges: of equal keys, the
            // earliest run's is kept.
            if let Some(merged) = self.runs.files.pop() {
                self.runs.files.insert(0, merged);
            }
        }
        let mut sources = open_all(&self.runs.files.clone())?;
        sources.push(Source::Memory(groups.into_iter()));
        Merge::new(sources, &mut self.runs)
    }

    fn next_partner(&mut self) -> Result<Option<Vec<(DetailKey, Sums)>>, Fatal> {
        if let Some(rest) = self.rest.take() {
            self.merge = Some(self.start(rest)?);
        }
        let Some(merge) = self.merge.as_mut() else {
            return Ok(None);
        };
        let first = match self.carry.take() {
            Some(g) => g,
            None => match merge.next(&mut self.runs)? {
                Some(g) => g,
                None => return Ok(None),
            },
        };
        let mut partner = vec![first];
        while let Some(g) = merge.next(&mut self.runs)? {
            if g.0.packed_partner() != partner[0].0.packed_partner() {
                self.carry = Some(g);
                break;
            }
            partner.push(g);
        }
        Ok(Some(partner))
    }
}

impl PartnerGroups {
    /// Does now what the first `next` would start with: sorts the groups
    /// left in memory (on the current rayon pool) and opens the runs. The
    /// merge after it uses no pool, so it can go on on another thread
    /// ([`merged_ahead`]).
    pub fn prepare(&mut self) -> Result<(), Fatal> {
        if let Some(rest) = self.rest.take() {
            match self.start(rest) {
                Ok(m) => self.merge = Some(m),
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Runs `consume` over `groups`, merged on a thread of their own up to
/// `ahead` partners ahead: the heap merge and the reading of the runs (one
/// thread's work) overlap with building and writing the statements instead
/// of alternating with them. `groups` must be [`PartnerGroups::prepare`]d
/// (the merge thread is no pool thread).
pub fn merged_ahead<R>(
    groups: PartnerGroups,
    ahead: usize,
    consume: impl FnOnce(&mut dyn Iterator<Item = Result<Vec<(DetailKey, Sums)>, Fatal>>) -> R,
) -> R {
    let (tx, rx) = crossbeam_channel::bounded(ahead.max(1));
    std::thread::scope(|s| {
        s.spawn(move || {
            for g in groups {
                // The consumer stopped (an error): so does the merge.
                if tx.send(g).is_err() {
                    break;
                }
            }
        });
        let r = consume(&mut rx.iter());
        // Unblocks a merge still sending, before the scope joins it.
        drop(rx);
        r
    })
}

fn open_all(paths: &[PathBuf]) -> Result<Vec<Source>, Fatal> {
    paths
        .iter()
        .map(|p| RunReader::open(p).map(Source::Run))
        .collect()
}

impl Iterator for PartnerGroups {
    type Item = Result<Vec<(DetailKey, Sums)>, Fatal>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_partner();
        if !matches!(r, Ok(Some(_))) {
            self.done = true;
            self.merge = None;
        }
        r.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accrue::Accrual;
    use crate::config::Association;
    use crate::dates::Month;
    use crate::fold::Fold;
    use crate::money::Currency;
    use rust_decimal::Decimal;

    const PARTNERS: [&str; 4] = ["1234567", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "p", "pp"];
    const IDS: [&str; 3] = ["c", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f1", "cc"];

    /// (partner, customer, subscription, month, amount mantissa, scale, bucket).
    type Line = (usize, usize, usize, u32, i64, u32, usize);

    fn add(f: &mut Fold, l: &Line) {
        let &(p, c, s, month, m, scale, _) = l;
        let a = Accrual {
            program: 0,
            partner_id: PARTNERS[p],
            association: Association::Dpor,
            basis: Decimal::from(100),
            rate: "0.04".parse().unwrap(),
            share: Decimal::ONE,
            amount: Decimal::new(m, scale),
            designation: None,
            days: None,
            month: Month::from_ym(2026, month),
        };
        f.add(&a, IDS[c], IDS[s], Currency::parse("EUR").unwrap());
    }

    fn sorted(f: &mut Fold) -> Vec<(DetailKey, Sums)> {
        let mut v: Vec<_> = f.details.take_all().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Sorted and cut by partner, as statements were built before runs.
    fn by_partner(all: Vec<(DetailKey, Sums)>) -> Vec<Vec<(DetailKey, Sums)>> {
        let mut out: Vec<Vec<(DetailKey, Sums)>> = Vec::new();
        for g in all {
            match out.last_mut() {
                Some(p) if p[0].0.packed_partner() == g.0.packed_partner() => p.push(g),
                _ => out.push(vec![g]),
            }
        }
        out
    }

    /// The lines of each bucket folded on their own: buckets below `runs`
    /// are written as runs, the last is the rest.
    fn spill(lines: &[Line], runs: usize, dir: PathBuf) -> (DetailMap, Runs) {
        let mut r = Runs::new(dir);
        let mut folds: Vec<Fold> = (0..=runs).map(|_| Fold::new(1)).collect();
        for l in lines {
            add(&mut folds[l.6 % (runs + 1)], l);
        }
        let mut rest = folds.pop().unwrap();
        for mut f in folds {
            r.write(sorted(&mut f)).unwrap();
        }
        (std::mem::take(&mut rest.details), r)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// However the groups were split into runs and the rest, the merge
        /// gives each partner's groups as one fold of every line would.
        #[test]
        fn merged_runs_equal_one_fold(
            lines in proptest::collection::vec(
                (0usize..4, 0usize..3, 0usize..3, 1u32..3, -1_000_000i64..1_000_000, 0u32..4, 0usize..6),
                0..150,
            ),
            runs in 0usize..5,
        ) {
            let mut one = Fold::new(1);
            for l in &lines {
                add(&mut one, l);
            }
            let want = by_partner(sorted(&mut one));
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("spill");
            let (rest, r) = spill(&lines, runs, dir.clone());
            proptest::prop_assert!(r.len() <= runs);
            let got: Vec<_> = partner_groups(rest, r).collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert!(!dir.exists());
        }
    }

    fn many_lines(n: usize) -> Vec<Line> {
        (0..n)
            .map(|i| {
                (
                    i % 4,
                    i % 3,
                    (i / 3) % 3,
                    1 + (i % 2) as u32,
                    i as i64 - 40,
                    2,
                    i,
                )
            })
            .collect()
    }

    #[test]
    fn more_runs_than_are_read_at_once_are_merged_first() {
        let lines = many_lines(300);
        let mut one = Fold::new(1);
        for l in &lines {
            add(&mut one, l);
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spill");
        let (rest, r) = spill(&lines, 2 * FAN_IN + 3, dir.clone());
        assert_eq!(r.len(), 2 * FAN_IN + 3);
        let got: Vec<_> = partner_groups(rest, r).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, by_partner(sorted(&mut one)));
        assert!(!dir.exists());
    }

    #[test]
    fn run_files_go_when_merged_or_dropped_half_way() {
        let lines = many_lines(40);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spill");
        let files = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
        // Never merged.
        let (_, r) = spill(&lines, 3, dir.clone());
        assert_eq!((r.len(), files(&dir)), (3, 3));
        assert!(r.groups() > 0);
        drop(r);
        assert!(!dir.exists());
        // One partner taken of four.
        let (rest, r) = spill(&lines, 3, dir.clone());
        let mut it = partner_groups(rest, r);
        assert!(it.next().unwrap().is_ok());
        drop(it);
        assert!(!dir.exists());
        // A directory that was there already stays, emptied.
        std::fs::create_dir(&dir).unwrap();
        let (rest, r) = spill(&lines, 3, dir.clone());
        assert_eq!(partner_groups(rest, r).count(), 4);
        assert!(dir.is_dir() && files(&dir) == 0);
    }

    #[test]
    fn cut_or_damaged_runs_are_errors_naming_the_file() {
        let lines = many_lines(12);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("spill");
        let (_, r) = spill(&lines, 1, dir.clone());
        let path = r.files[0].clone();
        let good = std::fs::read(&path).unwrap();
        drop(r);
        let mut damaged: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        damaged.push([&good[..], b"x"].concat());
        let mut magic = good.clone();
        magic[7] = b'2';
        damaged.push(magic);
        let mut count = good.clone();
        let n = count.len();
        count[n - 8] += 1;
        damaged.push(count);
        for bytes in damaged {
            let (rest, r) = spill(&lines, 1, dir.clone());
            std::fs::write(&r.files[0], &bytes).unwrap();
            let e = partner_groups(rest, r)
                .find_map(|g| g.err())
                .unwrap_or_else(|| panic!("{} bytes read as a run", bytes.len()));
            let msg = e.to_string();
            assert!(msg.contains("run-000001.bin"), "{msg}");
            assert!(!dir.exists());
        }
    }

    #[test]
    fn a_run_that_cannot_be_written_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, "").unwrap();
        let mut one = Fold::new(1);
        add(&mut one, &many_lines(1)[0]);
        let mut r = Runs::new(file.join("spill"));
        let e = r.write(sorted(&mut one)).unwrap_err();
        assert!(matches!(e, Fatal::Io { .. }), "{e}");
        assert!(r.is_empty());
        // Nothing to write: nothing made.
        assert!(r.write(Vec::new()).is_ok());
    }
}
