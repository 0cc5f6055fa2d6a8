//! A global allocator that counts live bytes and aborts, naming the case, when one fuzz case
//! makes the process hold more than its limit: an allocation proportional to a declared size
//! instead of the file's real size is a finding, not a slow test or a machine out of memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Written before each case, printed on abort: "<format> case <n>, input kept at <path>".
pub static CASE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn over(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    if live > LIMIT.load(Relaxed) {
        LIMIT.store(usize::MAX, Relaxed);
        let case = CASE.lock().map(|c| c.clone()).unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "fuzz: {case}: memory over its limit ({live} bytes live after asking for {size})"
        );
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        over(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        over(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            over(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allows `bytes` more than are live now, until [`unlimit`]; returns the live count.
pub fn limit(bytes: usize) -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    LIMIT.store(live.saturating_add(bytes), Relaxed);
    live
}

/// Lifts the limit; returns the peak reached since [`limit`].
pub fn unlimit() -> usize {
    LIMIT.store(usize::MAX, Relaxed);
    PEAK.load(Relaxed)
}
