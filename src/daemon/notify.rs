//! `sd_notify` without libsystemd: datagrams to the Unix socket named by `$NOTIFY_SOCKET`
//! (a path, or an abstract socket written with a leading `@`), as `sd_notify(3)` describes.
//!
//! The messages the service sends: `READY=1` once the pipeline runs, `WATCHDOG=1` from the
//! frame loop at [`Notifier::ping_interval`] (half of systemd's `WatchdogSec=`), `STATUS=…`
//! with the status line, `RELOADING=1` + `MONOTONIC_USEC=…` when a reload starts (followed by
//! `READY=1` when it is done), `STOPPING=1` when it shuts down. Not under systemd (no
//! `$NOTIFY_SOCKET`) every call does nothing.
//!
//! Sending never allocates (the fixed messages are constants, the variable ones are written
//! into a buffer on the stack). The socket is non-blocking: when systemd's queue is full
//! (`net.unix.max_dgram_qlen`, 10 datagrams by default) `WATCHDOG=1` and `STATUS=` are dropped
//! and the call returns `WouldBlock`, so the frame loop never waits; the state changes
//! (`READY`, `RELOADING`, `STOPPING`, `EXTEND_TIMEOUT_USEC`) are retried for up to
//! [`STATE_RETRY`] before they give up with `WouldBlock`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::clock::MonotonicClock;

/// The longest `STATUS=` message sent; longer status text is cut (at a character boundary).
pub const MAX_MESSAGE: usize = 512;

/// How long a state change waits for room in systemd's queue.
pub const STATE_RETRY: Duration = Duration::from_secs(1);

/// Why the notification socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` is something this implementation does not speak (e.g. `vsock:`).
    #[error(
        "NOTIFY_SOCKET={value:?} is neither an absolute socket path nor an abstract socket \
         (@NAME)"
    )]
    Unsupported { value: String },
    /// The address is too long for a Unix socket, or the socket cannot be created.
    #[error("cannot use the notification socket {value:?}")]
    Socket {
        value: String,
        #[source]
        source: io::Error,
    },
}

/// Sends service state to systemd (or nothing, when not under systemd).
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for: `$NOTIFY_SOCKET`, and the watchdog interval from
    /// `$WATCHDOG_USEC` when `$WATCHDOG_PID` is unset or this process. Without
    /// `$NOTIFY_SOCKET` (or with it empty) the notifier does nothing.
    ///
    /// # Errors
    /// As [`Notifier::connect`].
    pub fn from_env() -> Result<Notifier, NotifyError> {
        let Some(socket) = std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()) else {
            return Ok(Notifier::disabled());
        };
        let watchdog = watchdog_from(
            std::env::var_os("WATCHDOG_USEC").as_deref(),
            std::env::var_os("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        Ok(Notifier::connect(&socket)?.with_watchdog(watchdog))
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// A notifier for the socket `value` (`/run/systemd/notify`, or `@NAME` for an abstract
    /// socket), without a watchdog.
    ///
    /// # Errors
    /// [`NotifyError::Unsupported`] for another form, [`NotifyError::Socket`] when the address
    /// is too long or no socket can be created.
    pub fn connect(value: &OsStr) -> Result<Notifier, NotifyError> {
        let bytes = value.as_bytes();
        let shown = || value.to_string_lossy().into_owned();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(value),
            Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]),
            _ => return Err(NotifyError::Unsupported { value: shown() }),
        }
        .map_err(|source| NotifyError::Socket {
            value: shown(),
            source,
        })?;
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| NotifyError::Socket {
                value: shown(),
                source,
            })?;
        Ok(Notifier {
            target: Some(Target { socket, addr }),
            watchdog: None,
        })
    }

    /// The same notifier with systemd's watchdog interval `watchdog` (`None`: no watchdog).
    pub fn with_watchdog(mut self, watchdog: Option<Duration>) -> Notifier {
        self.watchdog = watchdog;
        self
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// systemd's watchdog interval (`WatchdogSec=`), when it watches this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.is_enabled())
    }

    /// How often to send [`Notifier::watchdog`]: half the watchdog interval, as `sd_notify(3)`
    /// recommends.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.watchdog_interval().map(|d| d / 2)
    }

    /// `READY=1`: start-up (or a reload) is complete.
    ///
    /// # Errors
    /// The OS error of sending (`WouldBlock` when systemd's queue stayed full for
    /// [`STATE_RETRY`]).
    pub fn ready(&self) -> io::Result<()> {
        self.send_state(b"READY=1")
    }

    /// `WATCHDOG=1`: the service is alive. Allocates nothing, never waits.
    ///
    /// # Errors
    /// The OS error of sending; `WouldBlock` when systemd's queue is full (the ping is lost).
    pub fn watchdog(&self) -> io::Result<()> {
        self.send(b"WATCHDOG=1")
    }

    /// `STOPPING=1`: shutdown has begun.
    ///
    /// # Errors
    /// As [`Notifier::ready`].
    pub fn stopping(&self) -> io::Result<()> {
        self.send_state(b"STOPPING=1")
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` now (what `Type=notify-reload` needs); send
    /// [`Notifier::ready`] when the reload is done.
    ///
    /// # Errors
    /// As [`Notifier::ready`].
    pub fn reloading(&self) -> io::Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let usec = MonotonicClock::read().nanos() / 1_000;
        let mut buf = StackText::new();
        // The buffer holds far more than these 50 bytes.
        let _ = fmt::Write::write_fmt(&mut buf, format_args!("RELOADING=1\nMONOTONIC_USEC={usec}"));
        self.send_state(buf.as_bytes())
    }

    /// `EXTEND_TIMEOUT_USEC=`: start-up (or stopping) takes `more` longer than announced, e.g.
    /// while a TensorRT engine is built.
    ///
    /// # Errors
    /// As [`Notifier::ready`].
    pub fn extend_timeout(&self, more: Duration) -> io::Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut buf = StackText::new();
        let _ = fmt::Write::write_fmt(
            &mut buf,
            format_args!("EXTEND_TIMEOUT_USEC={}", more.as_micros()),
        );
        self.send_state(buf.as_bytes())
    }

    /// `STATUS=text` (what `systemctl status` shows), on one line: newlines become spaces and
    /// the message is cut at [`MAX_MESSAGE`] bytes. Allocates nothing, never waits.
    ///
    /// # Errors
    /// As [`Notifier::watchdog`].
    pub fn status(&self, text: &str) -> io::Result<()> {
        self.status_fmt(format_args!("{text}"))
    }

    /// [`Notifier::status`] from format arguments (`format_args!("{report}")`), formatted
    /// into a stack buffer: no allocation, never waits.
    ///
    /// # Errors
    /// As [`Notifier::watchdog`].
    pub fn status_fmt(&self, text: fmt::Arguments<'_>) -> io::Result<()> {
        if !self.is_enabled() {
            return Ok(());
        }
        let mut buf = StackText::new();
        let _ = fmt::Write::write_str(&mut buf, "STATUS=");
        buf.one_line = true;
        // Text beyond the buffer is cut; that is not an error.
        let _ = fmt::Write::write_fmt(&mut buf, text);
        self.send(buf.as_bytes())
    }

    /// [`Notifier::send`], retried while systemd's queue is full, for up to [`STATE_RETRY`].
    fn send_state(&self, message: &[u8]) -> io::Result<()> {
        let start = std::time::Instant::now();
        loop {
            match self.send(message) {
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < STATE_RETRY =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    fn send(&self, message: &[u8]) -> io::Result<()> {
        match &self.target {
            Some(t) => t.socket.send_to_addr(message, &t.addr).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// systemd's watchdog interval from the values of `$WATCHDOG_USEC` and `$WATCHDOG_PID`, as
/// `sd_watchdog_enabled(3)` reads them: `None` when the interval is missing, zero or not a
/// number, or when `$WATCHDOG_PID` names another process (`own_pid` is this one's).
pub fn watchdog_from(usec: Option<&OsStr>, pid: Option<&OsStr>, own_pid: u32) -> Option<Duration> {
    let number = |v: &OsStr| v.to_str()?.trim().parse::<u64>().ok();
    let usec = number(usec?).filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if number(pid)? != u64::from(own_pid) {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
}

/// Text written into a fixed buffer on the stack; what does not fit is cut at a character
/// boundary. With `one_line`, line breaks become spaces.
struct StackText {
    buf: [u8; MAX_MESSAGE],
    len: usize,
    one_line: bool,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            buf: [0; MAX_MESSAGE],
            len: 0,
            one_line: false,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let c = if self.one_line && (c == '\n' || c == '\r') {
                ' '
            } else {
                c
            };
            let mut utf8 = [0; 4];
            let bytes = c.encode_utf8(&mut utf8).as_bytes();
            let end = self.len + bytes.len();
            if end > self.buf.len() {
                return Err(fmt::Error);
            }
            self.buf[self.len..end].copy_from_slice(bytes);
            self.len = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A socket systemd would listen on, with a read timeout so that no test hangs.
    fn listener(addr: &SocketAddr) -> UnixDatagram {
        let socket = UnixDatagram::bind_addr(addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        socket
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a message within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_socket_in_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = listener(&SocketAddr::from_pathname(&path).unwrap());
        let n = Notifier::connect(path.as_os_str()).unwrap();
        assert!(n.is_enabled());
        n.ready().unwrap();
        assert_eq!(recv(&systemd), "READY=1");
        n.watchdog().unwrap();
        assert_eq!(recv(&systemd), "WATCHDOG=1");
        n.status("running: 30 fps\nsecond line").unwrap();
        assert_eq!(recv(&systemd), "STATUS=running: 30 fps second line");
        n.stopping().unwrap();
        assert_eq!(recv(&systemd), "STOPPING=1");
        n.extend_timeout(Duration::from_secs(90)).unwrap();
        assert_eq!(recv(&systemd), "EXTEND_TIMEOUT_USEC=90000000");

        let before = MonotonicClock::read().nanos() / 1_000;
        n.reloading().unwrap();
        let after = MonotonicClock::read().nanos() / 1_000;
        let message = recv(&systemd);
        let usec: u64 = message
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap_or_else(|| panic!("{message:?}"))
            .parse()
            .unwrap();
        assert!((before..=after).contains(&usec), "{before} {usec} {after}");
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        let name = format!(
            "moda-edge-test-{}-{}",
            std::process::id(),
            MonotonicClock::read().nanos()
        );
        let systemd = listener(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap());
        let n = Notifier::connect(OsStr::new(&format!("@{name}"))).unwrap();
        n.ready().unwrap();
        assert_eq!(recv(&systemd), "READY=1");
        n.watchdog().unwrap();
        assert_eq!(recv(&systemd), "WATCHDOG=1");
    }

    #[test]
    fn long_status_text_is_cut_at_a_character_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = listener(&SocketAddr::from_pathname(&path).unwrap());
        let n = Notifier::connect(path.as_os_str()).unwrap();
        let text = "é".repeat(400); // 800 bytes
        n.status(&text).unwrap();
        let message = recv(&systemd);
        assert!(message.len() <= MAX_MESSAGE && message.len() > MAX_MESSAGE - 2);
        assert!(message.starts_with("STATUS=éé"));
        assert!(message["STATUS=".len()..].chars().all(|c| c == 'é'));
        n.status_fmt(format_args!("{} frames", 12)).unwrap();
        assert_eq!(recv(&systemd), "STATUS=12 frames");
    }

    #[test]
    fn a_full_queue_drops_pings_but_waits_for_state_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let systemd = listener(&SocketAddr::from_pathname(&path).unwrap());
        let n = Notifier::connect(path.as_os_str()).unwrap();
        let mut sent = 0;
        while n.watchdog().is_ok() {
            sent += 1;
            assert!(sent < 100_000, "the queue never filled");
        }
        assert_eq!(
            n.watchdog().unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "a full queue does not block the ping"
        );
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut last = String::new();
            for _ in 0..=sent {
                last = recv(&systemd);
            }
            last
        });
        n.ready().unwrap();
        assert_eq!(reader.join().unwrap(), "READY=1");
    }

    #[test]
    fn without_systemd_nothing_is_sent() {
        let n = Notifier::disabled().with_watchdog(Some(Duration::from_secs(10)));
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None);
        n.ready().unwrap();
        n.watchdog().unwrap();
        n.reloading().unwrap();
        n.status("x").unwrap();
    }

    #[test]
    fn a_missing_listener_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::connect(dir.path().join("gone").as_os_str()).unwrap();
        assert!(n.ready().is_err());
    }

    #[test]
    fn other_socket_forms_are_refused() {
        for value in ["vsock:2:1234", "relative/notify"] {
            let e = Notifier::connect(OsStr::new(value)).unwrap_err();
            assert!(matches!(e, NotifyError::Unsupported { .. }), "{e:?}");
            assert!(e.to_string().contains(value));
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(matches!(
            Notifier::connect(OsStr::new(&long)),
            Err(NotifyError::Socket { .. })
        ));
    }

    #[test]
    fn the_watchdog_interval_follows_sd_watchdog_enabled() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let ten = Some(Duration::from_secs(10));
        assert_eq!(watchdog_from(os("10000000"), None, 42), ten);
        assert_eq!(watchdog_from(os("10000000"), os("42"), 42), ten);
        assert_eq!(watchdog_from(os("10000000"), os("43"), 42), None);
        assert_eq!(watchdog_from(os("10000000"), os("x"), 42), None);
        assert_eq!(watchdog_from(os("0"), None, 42), None);
        assert_eq!(watchdog_from(os("-5"), None, 42), None);
        assert_eq!(watchdog_from(os("abc"), None, 42), None);
        assert_eq!(watchdog_from(None, os("42"), 42), None);
        let dir = tempfile::tempdir().unwrap();
        let n = Notifier::connect(dir.path().join("n").as_os_str())
            .unwrap()
            .with_watchdog(ten);
        assert_eq!(n.watchdog_interval(), ten);
        assert_eq!(n.ping_interval(), Some(Duration::from_secs(5)));
    }
}
