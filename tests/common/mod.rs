//! Shared helpers of the integration tests: locating the golden reference data.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared reference folder: `$MODA_REFERENCE`, else `../shared/reference` or
/// `../../shared/reference` relative to the crate. Panics (failing the test) when none exists:
/// a missing golden file must never turn into a skipped test.
pub fn reference_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = std::env::var_os("MODA_REFERENCE")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../shared/reference"),
            manifest.join("../../shared/reference"),
        ]);
    for c in candidates {
        if c.join("golden").is_dir() {
            return c;
        }
    }
    panic!(
        "golden reference data not found: set MODA_REFERENCE or place it at ../shared/reference"
    );
}

/// `reference/golden/<variant>`.
pub fn golden_dir(variant: &str) -> PathBuf {
    reference_dir().join("golden").join(variant)
}
