//! Memory freed after a large answer goes back to the operating system.
//!
//! The allocator (mimalloc) keeps the pages of freed blocks for reuse and hands them back to the
//! system only when it next runs its purge, which happens on later allocator activity: an idle
//! server that has just sent one large answer (a `$batch` of twenty full pages can be hundreds of
//! megabytes) kept that memory for good (issue 11). A background thread asks the allocator once
//! a second to purge what is free; the call is cheap when nothing is (it walks the arenas only).

use std::time::Duration;

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

/// Purge the allocator's free pages now.
#[allow(unsafe_code)]
fn collect() {
    // SAFETY: `mi_collect` takes no pointers, may be called from any thread at any time and
    // only releases memory that no allocation uses (mimalloc's documented contract).
    unsafe { libmimalloc_sys::mi_collect(true) }
}
