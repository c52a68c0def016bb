//! A panic inside a runtime library (a crafted model can trip an index or a division in
//! tract's shape code) becomes a [`BackendError::Panicked`] instead of ending the process: a
//! kiosk service reports the model and goes on, a command prints one line.
//!
//! [`guarded`] runs a call under `catch_unwind`; [`quiet_guarded_panics`], called once from
//! `main`, keeps the panic hook from printing panics that a guard turns into errors (they are
//! logged at debug level), while every other panic prints as usual.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use super::BackendError;

thread_local! {
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Marks the current thread as running only guarded runtime code for the rest of its life (a
/// backend's worker threads).
pub(crate) fn guard_whole_thread() {
    GUARDED.with(|g| g.set(g.get() + 1));
}

/// Runs `f`; a panic inside it comes back as `Err` with the panic's message. Allocates
/// nothing unless `f` panics.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into())
    })
}

/// Runs `f`; a panic inside it becomes [`BackendError::Panicked`] naming `model`.
pub(crate) fn guarded<T>(
    model: &str,
    backend: &'static str,
    f: impl FnOnce() -> Result<T, BackendError>,
) -> Result<T, BackendError> {
    catch(f).unwrap_or_else(|detail| {
        Err(BackendError::Panicked {
            model: model.to_string(),
            backend,
            detail,
        })
    })
}

/// Installs a panic hook that logs panics inside guarded runtime calls at debug level instead
/// of printing them (they come back as errors), and prints every other panic as before.
/// Call once from `main`; later calls do nothing.
pub fn quiet_guarded_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) > 0 {
                log::debug!("runtime panic turned into an error: {info}");
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_naming_the_model() {
        let r: Result<(), BackendError> = guarded("x.onnx", "tract", || {
            let v: Vec<u8> = Vec::new();
            let i = v.len() + 3;
            Err(BackendError::Unsupported {
                backend: "tract",
                what: format!("{}", v[i]),
            })
        });
        let err = r.unwrap_err();
        assert!(matches!(err, BackendError::Panicked { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("tract failed on x.onnx (an internal panic: index out of bounds"),
            "{err}"
        );
        assert_eq!(GUARDED.with(Cell::get), 0);
        assert_eq!(guarded("x", "tract", || Ok(5)).unwrap(), 5);
    }
}
