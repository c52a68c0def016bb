//! What a CPU session allocates per `run`, counted by a global allocator in this test binary.
//!
//! tract allocates each node's output tensor inside its run (it has no CPU memory pool), so
//! `Session::run` is not allocation-free. What is checked here is what a months-long service
//! needs from it: after the first run, every run makes the same number of allocations and
//! frees all of them (the live heap is back where it was), so nothing grows call after call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{Backend, OnnxModel, Prepared, Session};
use moda_edge::model::import::{init, Network};
use moda_edge::model::Preset;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// (allocations, live-byte change) of one call of `f`.
fn measure(f: impl FnOnce()) -> (usize, isize) {
    let (a0, l0) = (
        ALLOCATIONS.load(Ordering::SeqCst),
        LIVE_BYTES.load(Ordering::SeqCst),
    );
    f();
    (
        ALLOCATIONS.load(Ordering::SeqCst) - a0,
        LIVE_BYTES.load(Ordering::SeqCst) - l0,
    )
}

#[test]
fn runs_after_the_first_allocate_the_same_and_keep_nothing() {
    // Single test in this binary: the counters are process-wide.
    for network in [Network::Faco, Network::Renderer, Network::Moda] {
        let model = OnnxModel::from_proto(network.name().into(), init(network, Preset::Tiny, 3));
        let shapes: Vec<(&str, Vec<usize>)> = match network {
            Network::Faco => vec![
                ("lip", vec![1, 30, 120]),
                ("eye", vec![1, 30, 180]),
                ("template", vec![1, 1434]),
            ],
            Network::Renderer => vec![
                ("mesh_image", vec![1, 3, 256, 256]),
                ("reference", vec![1, 3, 256, 256]),
                ("time_code", vec![1, 13]),
            ],
            Network::Moda => vec![
                ("waveform", vec![1, 16_000]),
                ("template", vec![1, 1434]),
                ("noise", vec![1, 30, 128]),
            ],
        };
        let prepared = TractBackend::default().prepare(&model, &shapes).unwrap();
        let mut session = prepared.session().unwrap();
        for i in 0..prepared.inputs().len() {
            for (k, v) in session.input_mut(i).iter_mut().enumerate() {
                *v = ((k % 17) as f32 - 8.0) * 0.05;
            }
        }
        session.run().unwrap();
        let runs: Vec<(usize, isize)> =
            (0..4).map(|_| measure(|| session.run().unwrap())).collect();
        eprintln!(
            "{}: per run after the first: {} allocations, live heap change {:?} bytes",
            network.name(),
            runs[0].0,
            runs.iter().map(|r| r.1).collect::<Vec<_>>()
        );
        assert!(
            runs.iter().all(|r| r.1 == 0),
            "{}: a run kept heap memory: {runs:?}",
            network.name()
        );
        assert!(
            runs.iter().all(|r| r.0 == runs[0].0),
            "{}: allocation count changes from run to run: {runs:?}",
            network.name()
        );
        // Filling inputs and reading outputs go through the session's own buffers.
        let (allocs, _) = measure(|| {
            session.input_mut(0)[0] = 0.5;
            assert!(session.output(0).iter().all(|v| v.is_finite()));
        });
        assert_eq!(allocs, 0, "{}: buffer access allocated", network.name());
    }
}
