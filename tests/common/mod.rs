//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared reference folder: `$MODA_REFERENCE`, else `../shared/reference` or
/// `../../shared/reference` relative to the crate. Panics (fails the test) when none exists.
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
    panic!("reference folder not found: set MODA_REFERENCE or check out ../shared/reference");
}

/// A file under the reference folder, which must exist.
pub fn reference_file(rel: &str) -> PathBuf {
    let p = reference_dir().join(rel);
    assert!(p.is_file(), "golden file {} is missing", p.display());
    p
}
