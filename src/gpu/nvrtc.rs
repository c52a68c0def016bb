//! Kernel modules compiled by NVRTC into cubins for the device's architecture, with an on-disk
//! cache so that a restart does not compile again.
//!
//! NVRTC (`libnvrtc.so.12`) is loaded when first needed; cudarc panics when it is missing, so
//! [`nvrtc_version`] checks that it can be loaded first and every entry point here goes
//! through it, returning [`NvrtcError::Missing`] instead.
//!
//! Options: [`NVRTC_OPTIONS`] (`--fmad=false`, no fast math: the kernels must round like the
//! Rust stages) and `--gpu-architecture=sm_XY`, a real architecture so that NVRTC emits a
//! cubin; PTX would need a driver at least as new as NVRTC to JIT it.
//!
//! Cache: `<dir>/<module>-sm<XY>-<key>.cubin`, `key` the hex SHA-256 of the source, the
//! options, the architecture and the NVRTC version, so any change compiles afresh. A file
//! holds the cubin, its SHA-256 and the 8-byte tag `MODACUB1`; one that is short or whose
//! digest does not match (a crash mid-write on another file system, a disk error) is ignored
//! and rebuilt. Files are written to a temporary name and renamed into place.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cudarc::nvrtc::{result, sys};
use sha2::{Digest, Sha256};

use super::kernels::{Arch, Module, NVRTC_OPTIONS};

/// Errors of compiling kernels. [`NvrtcError::Missing`] is an installation problem (the
/// message says what to install); the others are bugs in the kernel sources or in NVRTC and
/// stop the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    #[error(
        "libnvrtc.so.12 (CUDA 12 NVRTC) cannot be loaded: on a Jetson install JetPack 6.1+ \
         (apt package cuda-nvrtc-12-6) and check that /usr/local/cuda/lib64 is on the library \
         path; elsewhere run scripts/cuda-wheels.sh and set LD_LIBRARY_PATH=<checkout>/.cuda/12.6/lib"
    )]
    Missing,
    #[error("NVRTC {call} failed with {code:?}")]
    Call {
        call: &'static str,
        code: sys::nvrtcResult,
    },
    #[error("kernel module `{module}` does not compile for {arch}:\n{log}")]
    Compile {
        module: &'static str,
        arch: Arch,
        log: String,
    },
    #[error("kernel module `{module}`: NVRTC produced an empty cubin for {arch}")]
    EmptyCubin { module: &'static str, arch: Arch },
}

fn call(what: &'static str) -> impl Fn(result::NvrtcError) -> NvrtcError {
    move |e| NvrtcError::Call {
        call: what,
        code: e.0,
    }
}

/// The NVRTC version `(major, minor)`, after checking that the library loads.
///
/// # Errors
/// [`NvrtcError::Missing`] when `libnvrtc.so.12` cannot be loaded.
pub fn nvrtc_version() -> Result<(i32, i32), NvrtcError> {
    // SAFETY: only tries to dlopen the library under its usual names.
    if !unsafe { sys::is_culib_present() } {
        return Err(NvrtcError::Missing);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present (checked above); both pointers are to live integers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(call("nvrtcVersion"))?;
    Ok((major, minor))
}

/// An NVRTC program, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by `create_program` and is destroyed only here.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

fn text(log: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = log.iter().map(|&c| c as u8).collect();
    CStr::from_bytes_until_nul(&bytes)
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned())
}

/// The options passed to NVRTC for `arch`.
pub fn options(arch: Arch) -> Vec<String> {
    let mut o: Vec<String> = NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect();
    o.push(arch.option());
    o
}

/// Compiles `module` into a cubin for `arch` (no cache).
///
/// # Errors
/// [`NvrtcError::Missing`] without NVRTC, [`NvrtcError::Compile`] with NVRTC's log when the
/// source does not compile, [`NvrtcError::Call`] / [`NvrtcError::EmptyCubin`] otherwise.
pub fn compile_cubin(module: &Module, arch: Arch) -> Result<Vec<u8>, NvrtcError> {
    nvrtc_version()?;
    // The sources are Rust string constants without NUL bytes.
    let src = CString::new(module.source).expect("kernel source without NUL");
    let name = CString::new(format!("{}.cu", module.name)).expect("module name without NUL");
    let prog =
        Program(result::create_program(&src, Some(&name)).map_err(call("nvrtcCreateProgram"))?);
    // SAFETY: `prog` is a live program; `src` and `name` outlive it (dropped after `prog`).
    let compiled = unsafe { result::compile_program(prog.0, &options(arch)) };
    if let Err(e) = compiled {
        // SAFETY: `prog` is a live program.
        let log = unsafe { result::get_program_log(prog.0) }
            .map(|l| text(&l))
            .unwrap_or_else(|_| format!("{e:?} (no log)"));
        return Err(NvrtcError::Compile {
            module: module.name,
            arch,
            log,
        });
    }
    let mut size = 0usize;
    // SAFETY: `prog` is a compiled program; `size` is a live usize.
    unsafe { sys::nvrtcGetCUBINSize(prog.0, &mut size) }
        .result()
        .map_err(call("nvrtcGetCUBINSize"))?;
    if size == 0 {
        return Err(NvrtcError::EmptyCubin {
            module: module.name,
            arch,
        });
    }
    let mut cubin = vec![0u8; size];
    // SAFETY: `cubin` holds the `size` bytes NVRTC reported for this program.
    unsafe { sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(call("nvrtcGetCUBIN"))?;
    drop(prog);
    Ok(cubin)
}

/// Whether a cubin came from the cache or was compiled now (and how long that took).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Cached,
    Compiled(Duration),
}

/// Tag at the end of a cache file.
const TAG: &[u8; 8] = b"MODACUB1";
const DIGEST: usize = 32;

/// An on-disk cubin cache in one folder (see the module doc).
#[derive(Debug, Clone)]
pub struct CubinCache {
    dir: PathBuf,
}

/// The cache key of `module` for `arch` under NVRTC `version`, as lower-case hex.
pub fn cache_key(module: &Module, arch: Arch, version: (i32, i32)) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(b"moda-edge cubin cache 1");
    field(module.source.as_bytes());
    for o in options(arch) {
        field(o.as_bytes());
    }
    field(arch.to_string().as_bytes());
    field(format!("nvrtc {}.{}", version.0, version.1).as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The cubin inside a cache file's bytes, if the file is whole.
fn unwrap_file(bytes: &[u8]) -> Option<&[u8]> {
    let body_len = bytes.len().checked_sub(DIGEST + TAG.len())?;
    let (body, rest) = bytes.split_at(body_len);
    let (digest, tag) = rest.split_at(DIGEST);
    let whole = tag == TAG && Sha256::digest(body).as_slice() == digest;
    (whole && body.starts_with(b"\x7fELF")).then_some(body)
}

impl CubinCache {
    pub fn new(dir: impl Into<PathBuf>) -> CubinCache {
        CubinCache { dir: dir.into() }
    }

    /// `$XDG_CACHE_HOME/moda-edge/cubin`, else `$HOME/.cache/moda-edge/cubin`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("moda-edge").join("cubin"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `module` for `arch` under NVRTC `version`.
    pub fn path(&self, module: &Module, arch: Arch, version: (i32, i32)) -> PathBuf {
        let key = cache_key(module, arch, version);
        self.dir.join(format!(
            "{}-sm{}{}-{key}.cubin",
            module.name, arch.major, arch.minor
        ))
    }

    /// The cubin of `module` for `arch`: from the cache when a whole file is there, else
    /// compiled and stored. A cache that cannot be written is logged, not fatal.
    ///
    /// # Errors
    /// Those of [`compile_cubin`].
    pub fn cubin(&self, module: &Module, arch: Arch) -> Result<(Vec<u8>, Fetched), NvrtcError> {
        let version = nvrtc_version()?;
        let path = self.path(module, arch, version);
        if let Ok(bytes) = std::fs::read(&path) {
            match unwrap_file(&bytes) {
                Some(cubin) => return Ok((cubin.to_vec(), Fetched::Cached)),
                None => log::warn!(
                    "kernel cache file {} is damaged ({} bytes); compiling again",
                    path.display(),
                    bytes.len()
                ),
            }
        }
        let start = Instant::now();
        let cubin = compile_cubin(module, arch)?;
        let took = start.elapsed();
        let mut file = Vec::with_capacity(cubin.len() + DIGEST + TAG.len());
        file.extend_from_slice(&cubin);
        file.extend_from_slice(&Sha256::digest(&cubin));
        file.extend_from_slice(TAG);
        let stored = std::fs::create_dir_all(&self.dir)
            .and_then(|()| crate::util::fsx::write_atomic(&path, &file));
        if let Err(e) = stored {
            log::warn!(
                "cannot store compiled kernels in {}: {e}; they will be compiled again next start",
                path.display()
            );
        }
        Ok((cubin, Fetched::Compiled(took)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::kernels::{DRAW, MODULES, PACK};

    /// Whether NVRTC is here; without it the tests pass after saying why, unless
    /// `MODA_REQUIRE_NVRTC=1`.
    fn nvrtc_here() -> bool {
        match nvrtc_version() {
            Ok(_) => true,
            Err(e) if std::env::var("MODA_REQUIRE_NVRTC").as_deref() == Ok("1") => {
                panic!("MODA_REQUIRE_NVRTC=1 but {e}")
            }
            Err(e) => {
                eprintln!("skipped: {e}");
                false
            }
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn every_module_compiles_for_orin_and_hopper() {
        if !nvrtc_here() {
            return;
        }
        let (major, minor) = nvrtc_version().unwrap();
        eprintln!("NVRTC {major}.{minor}");
        for arch in [Arch::ORIN, Arch { major: 9, minor: 0 }] {
            for m in MODULES {
                let start = Instant::now();
                let cubin = compile_cubin(m, arch).unwrap_or_else(|e| panic!("{e}"));
                eprintln!(
                    "{} for {arch}: {} bytes in {:.1} ms",
                    m.name,
                    cubin.len(),
                    start.elapsed().as_secs_f64() * 1e3
                );
                assert!(
                    cubin.starts_with(b"\x7fELF"),
                    "{} is not an ELF cubin",
                    m.name
                );
                for k in m.kernels {
                    assert!(
                        contains(&cubin, k.as_bytes()),
                        "{k} missing from {}",
                        m.name
                    );
                }
            }
        }
    }

    #[test]
    fn a_source_error_comes_back_with_the_log() {
        if !nvrtc_here() {
            return;
        }
        let broken = Module {
            name: "broken",
            source: "extern \"C\" __global__ void k(int* p) { p[0] = undefined_name; }",
            kernels: &["k"],
        };
        let err = compile_cubin(&broken, Arch::ORIN).unwrap_err();
        assert!(err.to_string().contains("undefined_name"), "{err}");
    }

    #[test]
    fn the_cache_is_hit_and_damaged_files_are_rebuilt() {
        if !nvrtc_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = CubinCache::new(dir.path().join("cubin"));
        let (first, how) = cache.cubin(&PACK, Arch::ORIN).unwrap();
        assert!(matches!(how, Fetched::Compiled(_)), "{how:?}");
        let (second, how) = cache.cubin(&PACK, Arch::ORIN).unwrap();
        assert_eq!((how, &second), (Fetched::Cached, &first));
        let path = cache.path(&PACK, Arch::ORIN, nvrtc_version().unwrap());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("pack-sm87-") && name.ends_with(".cubin"),
            "{name}"
        );
        assert_eq!(name.len(), "pack-sm87-".len() + 64 + ".cubin".len());
        // Short, flipped and empty files are compiled again and replaced by a whole one.
        let whole = std::fs::read(&path).unwrap();
        let mut flipped = whole.clone();
        flipped[100] ^= 0x40;
        for damaged in [whole[..whole.len() / 2].to_vec(), flipped, Vec::new()] {
            std::fs::write(&path, &damaged).unwrap();
            let (again, how) = cache.cubin(&PACK, Arch::ORIN).unwrap();
            assert!(matches!(how, Fetched::Compiled(_)), "{how:?}");
            assert_eq!(again, first);
            assert_eq!(std::fs::read(&path).unwrap(), whole);
        }
        // Another module or architecture is another file.
        assert_ne!(
            cache.path(&DRAW, Arch::ORIN, (12, 6)),
            cache.path(&PACK, Arch::ORIN, (12, 6))
        );
        let hopper = Arch { major: 9, minor: 0 };
        assert_ne!(
            cache_key(&PACK, hopper, (12, 6)),
            cache_key(&PACK, Arch::ORIN, (12, 6))
        );
        assert_ne!(
            cache_key(&PACK, hopper, (12, 6)),
            cache_key(&PACK, hopper, (12, 8))
        );
        let leftovers: Vec<_> = std::fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");
    }
}
