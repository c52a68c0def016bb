//! A warm CPU session's `run` takes nothing from the system heap: this binary installs the
//! recycling allocator the `moda-edge` binary installs, and reads its counters around runs.
//!
//! tract still asks for every activation tensor inside `run`; the allocator serves those
//! requests from the blocks the previous run freed. The counters are process-wide, so the tests
//! that read them take `SERIAL`.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Mutex;

use moda_edge::backend::recycle::{self, Recycler, RunScope, Stats};
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{Backend, OnnxModel, PrepareOptions, Prepared, Session};
use moda_edge::model::import::{init, Network};
use moda_edge::model::Preset;

#[global_allocator]
static ALLOC: Recycler = Recycler;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn shapes(network: Network) -> PrepareOptions {
    PrepareOptions::shapes(&match network {
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
    })
}

/// The counters' change over one call of `f`.
fn measure(f: impl FnOnce()) -> Stats {
    let before = recycle::stats();
    f();
    recycle::stats().since(&before)
}

fn outputs(session: &impl Session, n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| session.output_f32(i).unwrap().to_vec())
        .collect()
}

#[test]
fn warm_runs_take_nothing_from_the_system_heap_and_match_unrecycled_runs() {
    let _serial = serial();
    for network in [Network::Faco, Network::Renderer, Network::Moda] {
        let name = network.name();
        let model = OnnxModel::from_proto(name, &init(network, Preset::Tiny, 3));
        let prepared = TractBackend::default()
            .prepare(&model, &shapes(network))
            .unwrap();
        let n_out = prepared.outputs().len();

        // Reference: a session whose runs all allocate from the system, as plain tract does.
        recycle::set_enabled(false);
        let mut plain = prepared.session().unwrap();
        let mut session = prepared.session().unwrap();
        fill(&mut plain, prepared.inputs().len());
        fill(&mut session, prepared.inputs().len());
        let unrecycled = measure(|| plain.run().unwrap());
        assert_eq!(unrecycled.requests, 0, "{name}: disabled pool served a run");
        assert!(
            unrecycled.system_calls > 0,
            "{name}: tract allocated nothing?"
        );
        recycle::set_enabled(true);

        let first = measure(|| session.run().unwrap());
        assert!(first.installed, "{name}: the recycler did not see the run");
        let runs: Vec<Stats> = (0..4).map(|_| measure(|| session.run().unwrap())).collect();
        eprintln!(
            "{name}: first run {} requests ({} from the system); later runs {} requests, \
             {} from the system, {} system calls in the process; pool {} blocks, {} bytes",
            first.requests,
            first.from_system,
            runs[0].requests,
            runs[0].from_system,
            runs[0].system_calls,
            runs[0].pooled_blocks,
            runs[0].pooled_bytes
        );
        for r in &runs {
            assert!(r.requests > 0, "{name}: the run was not in a scope: {r:?}");
            assert_eq!(r.requests, runs[0].requests, "{name}: {runs:?}");
            assert_eq!(r.from_pool, r.requests, "{name}: {r:?}");
            assert_eq!(r.returned, 0, "{name}: {r:?}");
            assert_eq!(r.system_calls, 0, "{name}: a warm run called malloc: {r:?}");
            assert_eq!(r.pooled_bytes, runs[0].pooled_bytes, "{name}: pool grew");
        }
        // Recycled blocks hold the previous run's data; tract must overwrite all of it.
        assert_eq!(
            outputs(&session, n_out),
            outputs(&plain, n_out),
            "{name}: a run on recycled memory differs from one on fresh memory"
        );

        // Filling inputs and reading outputs go through the session's own buffers.
        let access = measure(|| {
            session.input_f32(0).unwrap()[0] = 0.5;
            assert!(session.output_f32(0).unwrap().iter().all(|v| v.is_finite()));
        });
        assert_eq!(access.system_calls, 0, "{name}: buffer access allocated");

        drop(plain);
        drop(session);
        assert_eq!(
            recycle::stats().pooled_bytes,
            0,
            "{name}: dropping the sessions keeps pooled memory"
        );
    }
}

#[test]
fn dropping_one_session_keeps_the_pool_for_the_others() {
    let _serial = serial();
    let model = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 5));
    let prepared = TractBackend::default()
        .prepare(&model, &shapes(Network::Faco))
        .unwrap();
    let mut kept = prepared.session().unwrap();
    let mut other = prepared.session().unwrap();
    fill(&mut kept, prepared.inputs().len());
    fill(&mut other, prepared.inputs().len());
    kept.run().unwrap();
    other.run().unwrap();
    drop(other);
    assert!(
        recycle::stats().pooled_bytes > 0,
        "one session is still alive: its pool stays"
    );
    let r = measure(|| kept.run().unwrap());
    assert_eq!(
        r.system_calls, 0,
        "the surviving session's run refilled: {r:?}"
    );
    drop(kept);
    assert_eq!(recycle::stats().pooled_bytes, 0, "the last session trims");
}

fn fill(session: &mut impl Session, inputs: usize) {
    for i in 0..inputs {
        for (k, v) in session.input_f32(i).unwrap().iter_mut().enumerate() {
            *v = ((k % 13) as f32 - 6.0) * 0.07;
        }
    }
}

#[test]
fn a_two_thread_backend_recycles_on_its_workers_too() {
    let _serial = serial();
    let network = Network::Renderer;
    let model = OnnxModel::from_proto("renderer", &init(network, Preset::Tiny, 4));
    let one = TractBackend::default()
        .prepare(&model, &shapes(network))
        .unwrap();
    let mut single = one.session().unwrap();
    fill(&mut single, one.inputs().len());
    single.run().unwrap();

    let backend = TractBackend::new(2);
    assert_eq!(backend.threads(), 2);
    let two = backend.prepare(&model, &shapes(network)).unwrap();
    let mut session = two.session().unwrap();
    fill(&mut session, two.inputs().len());
    // Which worker takes which tile varies, so the pool needs a few runs to hold the most
    // blocks of each size the two threads ever have out at once; after that, runs are served
    // from it alone. Requirement: ten clean runs in a row within the first hundred.
    let mut clean = 0;
    let mut runs = 0;
    let mut misses = Vec::new();
    while clean < 10 {
        assert!(runs < 100, "2-thread runs keep calling malloc: {misses:?}");
        let r = measure(|| session.run().unwrap());
        assert!(r.requests > 0, "{r:?}");
        runs += 1;
        if r.system_calls == 0 {
            clean += 1;
        } else {
            clean = 0;
            misses.push((runs, r.system_calls));
        }
    }
    eprintln!(
        "renderer, 2 threads: runs with system calls (run, calls): {misses:?}; clean from run {}",
        runs - 9
    );
    let diff = single
        .output_f32(0)
        .unwrap()
        .iter()
        .zip(session.output_f32(0).unwrap())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "2 threads differ from 1 by {diff}");
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

#[test]
fn the_pool_recycles_by_exact_layout_and_honours_its_contract() {
    let _serial = serial();
    recycle::trim();
    // SAFETY: every pointer below comes from ALLOC with the layout it is given back with, and
    // is only read or written within that layout.
    unsafe {
        let l = layout(12_345, 64);
        let scope = RunScope::enter();
        let a = ALLOC.alloc(l);
        assert!(!a.is_null() && (a as usize).is_multiple_of(64));
        a.write_bytes(0xAB, l.size());
        ALLOC.dealloc(a, l);
        assert_eq!(recycle::stats().pooled_blocks, 1);

        // Same layout: the same block, and alloc_zeroed clears the old contents.
        let z = ALLOC.alloc_zeroed(l);
        assert_eq!(z, a, "same layout recycles the block");
        assert!(std::slice::from_raw_parts(z, l.size())
            .iter()
            .all(|&b| b == 0));
        ALLOC.dealloc(z, l);

        // Another alignment or size is another class.
        let other = layout(12_345, 128);
        let b = ALLOC.alloc(other);
        assert_ne!(b, a);
        assert!((b as usize).is_multiple_of(128));

        // realloc inside a scope keeps the contents.
        let small = layout(24, 8);
        let c = ALLOC.alloc(small);
        for i in 0..24 {
            c.add(i).write(i as u8);
        }
        let c = ALLOC.realloc(c, small, 4096);
        assert!((0..24).all(|i| c.add(i).read() == i as u8));
        let big = layout(4096, 8);

        // Nested scopes: leaving the inner one keeps the outer active.
        {
            let _inner = RunScope::enter();
        }
        let before = recycle::stats();
        ALLOC.dealloc(c, big);
        assert_eq!(recycle::stats().since(&before).system_calls, 0);
        drop(scope);

        // Outside a scope a block pooled earlier is untouched and frees go to the system.
        let before = recycle::stats();
        ALLOC.dealloc(b, other);
        let after = recycle::stats().since(&before);
        assert_eq!(after.returned, 0);
        assert_eq!(
            after.pooled_blocks, before.pooled_blocks,
            "outside: not pooled"
        );

        // Capacity: a block that would exceed it goes back to the system.
        recycle::set_capacity(1000);
        let scope = RunScope::enter();
        let d = ALLOC.alloc(layout(5000, 8));
        let before = recycle::stats();
        ALLOC.dealloc(d, layout(5000, 8));
        assert_eq!(recycle::stats().since(&before).returned, 1);
        drop(scope);
        recycle::set_capacity(recycle::DEFAULT_CAPACITY);

        recycle::trim();
        let s = recycle::stats();
        assert_eq!((s.pooled_blocks, s.pooled_bytes), (0, 0));
    }
}

#[test]
fn bench_reports_warm_runs_served_without_the_system_allocator() {
    // This thread's own allocations would show in the other tests' process-wide counts.
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().to_str().unwrap();
    let cli = |args: &[&str]| {
        let out = common::cli::cli(args, 600);
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        out.stdout
    };
    cli(&[
        "models", "init", "-o", models, "--preset", "tiny", "--seed", "2",
    ]);
    let table = cli(&[
        "bench", "--models", models, "--iters", "2", "--frames", "30", "--size", "256",
    ]);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| {
            l.starts_with("| moda") || l.starts_with("| faco") || l.starts_with("| renderer")
        })
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // | network | inputs | tract | ort | ratio | allocations (system allocator calls) | pool |
        let allocs = cells[6];
        let (requests, system) = allocs
            .strip_suffix(')')
            .and_then(|s| s.split_once(" ("))
            .unwrap_or_else(|| panic!("allocation cell {allocs:?} in {row}"));
        assert!(requests.parse::<u64>().unwrap() > 0, "{row}");
        assert_eq!(system, "0", "{row}");
        assert!(cells[7].ends_with("MiB"), "{row}");
    }
    let plain = cli(&[
        "bench",
        "--models",
        models,
        "--iters",
        "1",
        "--frames",
        "30",
        "--size",
        "256",
        "--no-recycle",
        "--profile",
    ]);
    assert!(plain.contains("not recycled"), "{plain}");
    // One profile table per network, each led by the matrix products or convolutions.
    assert_eq!(
        plain.matches("| operator | nodes | ms | share |").count(),
        3,
        "{plain}"
    );
    assert!(plain.contains("| OptMatMul |"), "{plain}");
}
