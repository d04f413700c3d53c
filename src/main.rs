//! The `porledger` binary: parse flags, run the command, choose the exit code.
//! This is the only place that prints a fatal error or picks an exit code.

use std::process::ExitCode;

use clap::Parser;
use porledger::cli::{Cli, Command};
use porledger::cmd::{self, Finish};

/// glibc adapts its mmap threshold upwards as large blocks are freed, after
/// which freed 8 MiB chunk buffers and fold segments stay resident in its
/// arenas: peak memory then grew with the input (390 MB at 20M rows against
/// 247 MB at 5M). A fixed 1 MiB threshold returns every large block to the
/// system when freed (293 MB at 20M, 234 MB at 5M) at no measurable cost.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // mallopt: one allocator tunable, see above
fn tune_allocator() {
    // SAFETY: mallopt only sets a tunable of the allocator; it is called once,
    // before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

/// The tie-out's rows are built on the worker threads, in their own glibc
/// arenas, and freed by the writer a batch later. Each freed batch left its
/// arena's newest heap empty, and glibc then unmapped that heap and mapped a
/// fresh one for the next batch: 31 heaps of 64 MiB at 5M billing rows, each
/// faulted in afresh and grown by `mprotect` (78,588 calls). A top pad of
/// 64 MiB (one heap) keeps an emptied heap for the next batch (7 heaps,
/// 26 `mprotect` calls; classify and write 10.0-10.3 s against
/// 11.0-12.3 s, 3 alternated pairs). `run` maps 10 heaps and is left as it is:
/// the pad would keep up to 64 MiB per arena resident, against its memory
/// bar.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // mallopt: one allocator tunable, see above
fn keep_arena_heaps() {
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before the command starts any thread.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Transparent huge pages for the tie-out's large blocks. The tie-out holds
/// GBs of grain lists, sort orders and the `earningId` set, and reaches into
/// them at random: with 4 KiB pages nearly every access misses the TLB, and
/// each fresh page is a fault of its own (~4.8M faults at 5M billing rows).
/// The kernel here gives huge pages only where a program asks (`madvise`),
/// and glibc asks only when told by an environment variable, so the
/// allocator asks itself, for blocks of 8 MiB and more (which glibc maps on
/// their own, above the 1 MiB threshold of [`tune_allocator`]). `run` gained
/// nothing from them, so only `tieout` turns them on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod huge {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, Ordering};

    static ON: AtomicBool = AtomicBool::new(false);

    /// Large blocks get huge pages from now on.
    pub fn turn_on() {
        ON.store(true, Ordering::Relaxed);
    }

    pub struct HugeLarge;

    const MIN: usize = 8 << 20;

    /// Asks for huge pages for the pages of the block at `p` (a hint: the
    /// kernel may not have them, and nothing else changes).
    #[allow(unsafe_code)]
    fn advise(p: *mut u8, size: usize) {
        if p.is_null() || size < MIN || !ON.load(Ordering::Relaxed) {
            return;
        }
        let page = 4096;
        let start = p as usize & !(page - 1);
        let end = (p as usize + size).div_ceil(page) * page;
        // SAFETY: the range is the pages of the block just allocated (its
        // first and last page may hold other blocks of this process too);
        // MADV_HUGEPAGE sets a flag of the mapping and changes no byte of
        // it. A failure leaves it as it was.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }

    // SAFETY: every call is passed on to the system allocator unchanged;
    // `advise` only hints at the pages of a block it returned.
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for HugeLarge {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, passed on.
            let p = unsafe { System.alloc(layout) };
            advise(p, layout.size());
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract, passed on.
            let p = unsafe { System.alloc_zeroed(layout) };
            advise(p, layout.size());
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller's contract, passed on.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            advise(p, new_size);
            p
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: huge::HugeLarge = huge::HugeLarge;

fn main() -> ExitCode {
    porledger::console::start_clock();
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if matches!(cli.command, Command::Tieout(_)) {
        huge::turn_on();
        keep_arena_heaps();
    }
    let result = match &cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Validate(a) => cmd::validate::validate(a),
        Command::Explain(a) => cmd::explain::explain(a),
        Command::Render(a) => cmd::render::render(a),
        Command::Sample(a) => cmd::sample::sample(a),
        Command::Close(a) => cmd::close::close(a),
        Command::History(a) => cmd::history::history(a),
        Command::Tieout(a) => cmd::tieout::tieout(a),
    };
    match result {
        Ok(Finish::Clean) => ExitCode::SUCCESS,
        Ok(Finish::WithRejects | Finish::Differences) => ExitCode::from(1),
        Err(e) => {
            porledger::say!("porledger: error: {e}");
            ExitCode::from(2)
        }
    }
}
