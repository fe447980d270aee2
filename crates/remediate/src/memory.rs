//! Memory freed after a large answer goes back to the operating system.
//!
//! The allocator (mimalloc) keeps the pages of freed blocks for reuse and hands them back to the
//! system only when it next runs its purge, which happens on later allocator activity: an idle
//! server that has just sent one large answer (a `$batch` of twenty full pages can be hundreds of
//! megabytes) kept that memory for good (issue 11). Two things give it back: a background thread
//! asks the allocator once a second to purge its free arena memory, and each runtime worker, when
//! it goes idle (at most once a second), releases the free pages of its own heap — blocks freed
//! on a thread stay in that thread's heap until the thread itself collects. Both calls are cheap
//! when there is nothing to release.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often freed memory is handed back.
const PERIOD: Duration = Duration::from_secs(1);

/// Start the background thread (for the life of the process).
pub fn start_returning_freed_memory() -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("memory-return".into())
        .spawn(|| loop {
            std::thread::sleep(PERIOD);
            collect();
        })
        .map(|_| ())
}

/// For the runtime's `on_thread_park`: release this worker's free pages, at most once a period.
pub fn on_worker_idle() {
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    let due = LAST.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < PERIOD => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect();
    }
}

/// Purge the allocator's free pages now (this thread's heap and the shared arenas).
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointers, may be called from any thread at any time and
    // only releases memory that no allocation uses (mimalloc's documented contract).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
