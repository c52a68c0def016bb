//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The shared reference folder: `$MODA_REFERENCE`, else `../shared/reference` or
/// `../../shared/reference` relative to the crate. Panics (failing the test) when none exists:
/// missing golden data must never turn into a skipped test.
pub fn reference_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = std::env::var_os("MODA_REFERENCE")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../shared/reference"),
            manifest.join("../../shared/reference"),
        ]);
    for dir in candidates {
        if dir.join("golden").is_dir() {
            return dir;
        }
    }
    panic!("reference data not found: set MODA_REFERENCE or place it at ../shared/reference");
}

/// A file under `reference/golden/`, which must exist.
pub fn golden(rel: &str) -> PathBuf {
    let path = reference_dir().join("golden").join(rel);
    assert!(path.is_file(), "missing golden file {}", path.display());
    path
}
