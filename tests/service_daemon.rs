//! The daemon plumbing from outside the crate: `Notifier::from_env` under a fake systemd (this
//! binary's only test that sets environment variables), the per-frame calls allocating
//! nothing (a counting allocator, per thread), and a second SIGTERM ending a stuck shutdown
//! (in a child process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use moda_edge::daemon::{
    LatencyHistogram, Notifier, SecondStop, SignalListener, State, StatusReport,
};

/// Counts the allocations of the calling thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter is a
// const-initialized thread-local without a destructor, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract of `GlobalAlloc::alloc`, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: as in `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("a message within 5 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn from_env_reads_the_socket_and_the_watchdog_that_systemd_sets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();

    std::env::remove_var("NOTIFY_SOCKET");
    assert!(
        !Notifier::from_env().unwrap().is_enabled(),
        "not under systemd"
    );

    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_USEC", "10000000");
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    let n = Notifier::from_env().unwrap();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(10)));
    assert_eq!(n.ping_interval(), Some(Duration::from_secs(5)));
    n.ready().unwrap();
    assert_eq!(recv(&systemd), "READY=1");
    n.watchdog().unwrap();
    assert_eq!(recv(&systemd), "WATCHDOG=1");

    // The watchdog of another process (the service's parent) is not ours.
    std::env::set_var("WATCHDOG_PID", "1");
    assert_eq!(Notifier::from_env().unwrap().watchdog_interval(), None);
    std::env::set_var("NOTIFY_SOCKET", "vsock:2:99");
    assert!(Notifier::from_env().is_err());
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        std::env::remove_var(var);
    }
}

#[test]
fn pings_status_and_latency_records_allocate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = Notifier::connect(path.as_os_str()).unwrap();
    let h = LatencyHistogram::new();
    let report = StatusReport::new(State::Running, "hw:1");
    // One warm-up round (nothing is expected to be lazy, but the first call is not measured).
    n.watchdog().unwrap();
    h.record(Duration::from_millis(400));
    let mut buf = [0u8; 1024];
    let _ = systemd.recv(&mut buf).unwrap();

    let count = allocations_in(|| {
        for i in 0..100u64 {
            n.watchdog().unwrap();
            h.record(Duration::from_micros(400_000 + i * 37));
            // systemd's side, reading into the stack (its queue holds only ~10 datagrams).
            let len = systemd.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], b"WATCHDOG=1");
        }
        let _ = h.summary();
        n.status_fmt(format_args!("{report}")).unwrap();
        n.reloading().unwrap();
    });
    assert_eq!(count, 0, "allocations on the frame path");
    assert!(recv(&systemd).starts_with("STATUS=running: 0 frames"));
    assert!(recv(&systemd).starts_with("RELOADING=1\nMONOTONIC_USEC="));
    // The counter does count: a String allocates.
    assert!(allocations_in(|| drop(report.to_string())) > 0);
}

const CHILD: &str = "MODA_EDGE_TEST_SIGNAL_CHILD";

#[test]
fn a_second_stop_signal_ends_a_hanging_shutdown() {
    if std::env::var_os(CHILD).is_some() {
        // The child: the first SIGTERM asks for a stop, the second must end the process
        // inside the handler with 128 + 15; returning from here exits 0 (a failure).
        let l = SignalListener::install(SecondStop::Exit).unwrap();
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        assert!(l.stop_requested());
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        std::thread::sleep(Duration::from_secs(1));
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_second_stop_signal_ends_a_hanging_shutdown",
            "--exact",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
}
