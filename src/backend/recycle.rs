//! A recycling global allocator, so that a warmed-up CPU session's `run` takes nothing from the
//! system heap.
//!
//! tract (0.23) allocates every node's output tensor inside `run` and has no CPU memory pool. A
//! prepared graph has fixed shapes, so every run asks for the same blocks in the same order:
//! 112 of them for the tiny FaCo graph, 2545 for the tiny MODA graph (`tests/session_alloc.rs`).
//! [`Recycler`], installed as a binary's `#[global_allocator]`, keeps the blocks freed while a
//! [`RunScope`] is open on the freeing thread in free lists keyed by exact (size, alignment),
//! and hands them out again to requests of that size made inside a scope. From the second run
//! on, every request is served from those lists: no `malloc`, `mmap` or fresh page on the hot
//! path. The memory held is, for each block size, the most blocks of that size a run has out at
//! once: more than tract's own peak, since one size cannot stand in for another (read it from
//! [`stats`]; README compares the two).
//!
//! Outside a scope, and on threads without one, it is the system allocator. Any block may be
//! freed either way: the pool only holds blocks the system allocator handed out, with the same
//! layout (sizes are rounded up to a whole number of words on every path, so a freed block can
//! hold its free-list link).
//!
//! Memory held is bounded by [`set_capacity`] (a block that would exceed it goes back to the
//! system) and given back by [`trim`], which a tract session calls when it is dropped. Without
//! `Recycler` installed (a library user's own allocator), scopes cost two thread-local updates
//! and change nothing.
//!
//! Platform assumptions (checked on x86-64 and aarch64 Linux with glibc, the two targets this
//! project builds):
//! - The system allocator (`std::alloc::System`, glibc's malloc) serves any layout, and a block
//!   is given back with the layout it was taken with. Sizes are rounded up to a whole word
//!   before either call, so a pooled block can hold its free-list link.
//! - `thread_local!` with a `const` initializer and no destructor (the scope depth) is a plain
//!   TLS slot: reading it never allocates, so the allocator can consult it without recursion.
//! - `std::sync::Mutex` does not allocate (on Linux it is a futex word), so the pool's lock can be
//!   taken inside `alloc` and `dealloc`.
//! - Nothing here unwinds: an impossible layout aborts (an allocator must not panic).
//! - Freed blocks are reused without being returned, so the process's resident memory is the
//!   pool's peak; README ("Allocator") compares time, memory and page faults with glibc's malloc
//!   and mimalloc.
//!
//! `unsafe` lives here because a global allocator is `unsafe` by definition; every block says
//! why it holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

/// The allocator. Install it in a binary:
/// `#[global_allocator] static ALLOC: moda_edge::backend::recycle::Recycler = Recycler;`
pub struct Recycler;

/// Pooled bytes allowed by default. The release-size renderer at 512² keeps 955 MiB between
/// runs (`moda-edge bench` prints the figure), release MODA 342 MiB, the tiny graphs a few MiB.
pub const DEFAULT_CAPACITY: usize = 2 << 30;

/// Distinct (size, alignment) classes the pool can hold; a request of a class that finds no
/// free slot goes to the system allocator. One prepared graph uses a few hundred.
const CLASSES: usize = 1024;

/// Smallest block: room for the free-list link.
const WORD: usize = size_of::<usize>();

#[derive(Clone, Copy)]
struct Class {
    /// Block size in bytes; 0 marks a vacant slot (a real block is at least a word).
    size: usize,
    align: usize,
    /// First free block; each free block stores the next one in its first word.
    head: *mut u8,
    blocks: usize,
}

const VACANT: Class = Class {
    size: 0,
    align: 0,
    head: ptr::null_mut(),
    blocks: 0,
};

struct Pool {
    classes: [Class; CLASSES],
    bytes: usize,
    blocks: usize,
}

// SAFETY: the pointers are free blocks owned by the pool, touched only while the mutex is held.
unsafe impl Send for Pool {}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    classes: [VACANT; CLASSES],
    bytes: 0,
    blocks: 0,
});
static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_CAPACITY);
static ENABLED: AtomicBool = AtomicBool::new(true);
static INSTALLED: AtomicBool = AtomicBool::new(false);

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static FROM_POOL: AtomicU64 = AtomicU64::new(0);
static FROM_SYSTEM: AtomicU64 = AtomicU64::new(0);
static RETURNED: AtomicU64 = AtomicU64::new(0);
static SYSTEM_CALLS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

fn in_scope() -> bool {
    DEPTH.with(Cell::get) > 0 && ENABLED.load(Relaxed)
}

fn pool() -> MutexGuard<'static, Pool> {
    // Nothing panics while the lock is held, but a poisoned lock must not stop allocation.
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The layout actually requested from the system for `layout`.
fn block(layout: Layout) -> Option<Layout> {
    let size = layout.size().max(WORD).checked_next_multiple_of(WORD)?;
    Layout::from_size_align(size, layout.align()).ok()
}

/// [`block`] of a layout that was allocated, so it rounded once already. An allocator must not
/// unwind, so the impossible failure aborts instead of panicking.
fn rounded(layout: Layout) -> Layout {
    match block(layout) {
        Some(b) => b,
        None => std::process::abort(),
    }
}

impl Pool {
    /// Slot of class (size, align), or the vacant slot where it would go, or `None` when full.
    fn slot(&self, size: usize, align: usize) -> Option<usize> {
        let mix = (size ^ align.rotate_left(usize::BITS / 2)) as u64;
        let start = (mix.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % CLASSES;
        (0..CLASSES).map(|i| (start + i) % CLASSES).find(|&i| {
            let c = &self.classes[i];
            c.size == 0 || (c.size == size && c.align == align)
        })
    }

    fn pop(&mut self, b: Layout) -> *mut u8 {
        let Some(i) = self.slot(b.size(), b.align()) else {
            return ptr::null_mut();
        };
        let class = &mut self.classes[i];
        if class.blocks == 0 {
            return ptr::null_mut();
        }
        let p = class.head;
        // SAFETY: `p` is a free block of at least a word, owned by the pool; its first word
        // holds the next free block (written by `push`).
        class.head = unsafe { p.cast::<*mut u8>().read_unaligned() };
        class.blocks -= 1;
        self.bytes -= b.size();
        self.blocks -= 1;
        p
    }

    /// Keeps `p` (allocated by the system with layout `b`) unless that would exceed `capacity`
    /// or the class table is full.
    fn push(&mut self, p: *mut u8, b: Layout, capacity: usize) -> bool {
        if self.bytes + b.size() > capacity {
            return false;
        }
        let Some(i) = self.slot(b.size(), b.align()) else {
            return false;
        };
        let class = &mut self.classes[i];
        class.size = b.size();
        class.align = b.align();
        // SAFETY: the caller gives up `p`, a block of `b.size()` ≥ one word; its first word
        // becomes the free-list link.
        unsafe { p.cast::<*mut u8>().write_unaligned(class.head) };
        class.head = p;
        class.blocks += 1;
        self.bytes += b.size();
        self.blocks += 1;
        true
    }

    /// Gives every pooled block back to the system and empties the class table, so classes
    /// of graphs no longer run do not keep slots.
    fn drain(&mut self) {
        for class in self.classes.iter_mut() {
            if class.blocks > 0 {
                // A pooled class was built from a valid layout in `push`.
                let Ok(b) = Layout::from_size_align(class.size, class.align) else {
                    std::process::abort();
                };
                while class.blocks > 0 {
                    let p = class.head;
                    // SAFETY: as in `pop`: `p` is a pooled block whose first word links the next.
                    class.head = unsafe { p.cast::<*mut u8>().read_unaligned() };
                    class.blocks -= 1;
                    // SAFETY: `p` came from `System` with layout `b` and nobody else holds it.
                    unsafe { System.dealloc(p, b) };
                }
            }
            *class = VACANT;
        }
        self.bytes = 0;
        self.blocks = 0;
    }
}

// SAFETY: every block handed out comes from `System` with layout `block(layout)` (size rounded
// up, same alignment), fresh or recycled from a class of exactly that layout, so it is valid
// for `layout`; every block taken back is either pooled under that same layout or returned to
// `System` with it.
unsafe impl GlobalAlloc for Recycler {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(b) = block(layout) else {
            return ptr::null_mut();
        };
        if in_scope() {
            INSTALLED.store(true, Relaxed);
            REQUESTS.fetch_add(1, Relaxed);
            let p = pool().pop(b);
            if !p.is_null() {
                FROM_POOL.fetch_add(1, Relaxed);
                return p;
            }
            FROM_SYSTEM.fetch_add(1, Relaxed);
        }
        SYSTEM_CALLS.fetch_add(1, Relaxed);
        // SAFETY: `b` has non-zero size (at least a word) and a valid alignment.
        unsafe { System.alloc(b) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_scope() {
            // SAFETY: forwarded contract; the block is then cleared over its requested size.
            let p = unsafe { self.alloc(layout) };
            if !p.is_null() {
                // SAFETY: `p` is valid for `layout.size()` bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            return p;
        }
        let Some(b) = block(layout) else {
            return ptr::null_mut();
        };
        SYSTEM_CALLS.fetch_add(1, Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(b) }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        let b = rounded(layout);
        if in_scope() {
            if pool().push(p, b, CAPACITY.load(Relaxed)) {
                return;
            }
            RETURNED.fetch_add(1, Relaxed);
        }
        // SAFETY: `p` was allocated by `System` with layout `b` (see the impl's comment).
        unsafe { System.dealloc(p, b) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if in_scope() {
            // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: forwarded contract of `alloc`/`dealloc`; both blocks are valid for the
            // bytes copied and do not overlap.
            unsafe {
                let q = self.alloc(new_layout);
                if !q.is_null() {
                    ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                    self.dealloc(p, layout);
                }
                return q;
            }
        }
        let b = rounded(layout);
        let Some(nb) = Layout::from_size_align(new_size, layout.align())
            .ok()
            .and_then(block)
        else {
            return ptr::null_mut();
        };
        SYSTEM_CALLS.fetch_add(1, Relaxed);
        // SAFETY: `p` was allocated by `System` with `b`; `nb.size()` is non-zero and valid
        // for the alignment.
        unsafe { System.realloc(p, b, nb.size()) }
    }
}

/// Marks the current thread as running a session: while a scope is alive, the thread's
/// allocations are served from the pool and its frees go to it. Scopes nest.
pub struct RunScope {
    _thread_bound: PhantomData<*const ()>,
}

impl RunScope {
    pub fn enter() -> RunScope {
        DEPTH.with(|d| d.set(d.get() + 1));
        RunScope {
            _thread_bound: PhantomData,
        }
    }
}

impl Drop for RunScope {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// Marks the current thread as in a scope for the rest of its life: for worker threads that run
/// nothing but a backend's kernels (tract's thread pool).
pub fn scope_whole_thread() {
    DEPTH.with(|d| d.set(d.get() + 1));
}

/// Counters since the process started; subtract two readings with [`Stats::since`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocation requests made inside scopes.
    pub requests: u64,
    /// Of those, served from the pool.
    pub from_pool: u64,
    /// Of those, passed to the system allocator (the first run, or a class seen for the first
    /// time, or a full class table).
    pub from_system: u64,
    /// Blocks freed inside scopes that went back to the system (capacity or table full).
    pub returned: u64,
    /// Every call this allocator made into the system allocator, on any thread, in a scope or
    /// not.
    pub system_calls: u64,
    /// Bytes and blocks held in the pool now.
    pub pooled_bytes: usize,
    pub pooled_blocks: usize,
    /// Whether [`Recycler`] is the global allocator and has served a scope.
    pub installed: bool,
}

impl Stats {
    /// The counters' change from `earlier` to `self` (the pool figures stay those of `self`).
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            requests: self.requests - earlier.requests,
            from_pool: self.from_pool - earlier.from_pool,
            from_system: self.from_system - earlier.from_system,
            returned: self.returned - earlier.returned,
            system_calls: self.system_calls - earlier.system_calls,
            ..*self
        }
    }
}

/// The allocator's counters and the pool's size now.
pub fn stats() -> Stats {
    let (pooled_bytes, pooled_blocks) = {
        let p = pool();
        (p.bytes, p.blocks)
    };
    Stats {
        requests: REQUESTS.load(Relaxed),
        from_pool: FROM_POOL.load(Relaxed),
        from_system: FROM_SYSTEM.load(Relaxed),
        returned: RETURNED.load(Relaxed),
        system_calls: SYSTEM_CALLS.load(Relaxed),
        pooled_bytes,
        pooled_blocks,
        installed: INSTALLED.load(Relaxed),
    }
}

/// Most bytes the pool keeps; a freed block that would exceed it goes back to the system.
/// Lowering it does not release what is already pooled: call [`trim`].
pub fn set_capacity(bytes: usize) {
    CAPACITY.store(bytes, Relaxed);
}

/// Turns recycling on or off (on by default). Off, scopes have no effect; for measuring what
/// the pool changes (`moda-edge bench --no-recycle`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Gives every pooled block back to the system; the next run in a scope fills the pool again.
pub fn trim() {
    pool().drain();
}

/// Sessions holding the pool; the last one to go trims it.
static USERS: AtomicUsize = AtomicUsize::new(0);

/// A claim on the run pool, held by every CPU session: while any claim lives the pool keeps its
/// blocks (another session's next run needs them); when the last one is dropped the pool is
/// trimmed and its memory goes back to the system.
#[derive(Debug)]
pub struct PoolUser(());

impl PoolUser {
    pub fn new() -> PoolUser {
        USERS.fetch_add(1, Relaxed);
        PoolUser(())
    }
}

impl Default for PoolUser {
    fn default() -> Self {
        PoolUser::new()
    }
}

impl Drop for PoolUser {
    fn drop(&mut self) {
        if USERS.fetch_sub(1, Relaxed) == 1 {
            trim();
        }
    }
}
