//! The plan cache: a prepared graph or engine keyed by what it was built from, so an expensive
//! build is done once and reused.
//!
//! A [`PlanKey`] is the model's sha256, the input shapes, the precision and the backend's
//! platform string. [`PlanCache::prepare`] looks in memory first (the same `Arc` for the same
//! key), then, when the backend can serialize plans and the cache has a directory, on disk
//! (`<dir>/<key digest>.plan`, written atomically), and only then prepares. A plan file that
//! does not restore is logged and rebuilt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::{Backend, BackendError, OnnxModel, Precision, PrepareOptions};
use crate::model::contract::hex;

/// What a prepared graph was built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PlanKey {
    pub model_sha256: String,
    /// Input shapes by name, sorted by name.
    pub shapes: Vec<(String, Vec<usize>)>,
    pub precision: Precision,
    pub platform: String,
}

impl PlanKey {
    pub fn new(model: &OnnxModel, opts: &PrepareOptions, platform: String) -> PlanKey {
        let mut shapes = opts.shapes.clone();
        shapes.sort();
        PlanKey {
            model_sha256: model.sha256().to_string(),
            shapes,
            precision: opts.precision,
            platform,
        }
    }

    /// A stable hex digest of the key: the plan's file name.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.model_sha256.as_bytes());
        for (name, shape) in &self.shapes {
            h.update(format!("\n{name}{shape:?}").as_bytes());
        }
        h.update(format!("\n{}\n{}", self.precision.name(), self.platform).as_bytes());
        hex(&h.finalize())
    }
}

/// How the cache answered so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Plans prepared from the model.
    pub built: usize,
    /// Requests answered from memory.
    pub memory_hits: usize,
    /// Requests answered by restoring a plan file.
    pub disk_hits: usize,
}

/// Prepared graphs of one backend by [`PlanKey`].
pub struct PlanCache<B: Backend> {
    memory: Mutex<HashMap<PlanKey, Arc<B::Prepared>>>,
    dir: Option<PathBuf>,
    stats: Mutex<CacheStats>,
}

impl<B: Backend> Default for PlanCache<B> {
    fn default() -> Self {
        PlanCache::new(None)
    }
}

impl<B: Backend> PlanCache<B> {
    /// A cache in memory, persisting serializable plans under `dir` when given.
    pub fn new(dir: Option<PathBuf>) -> PlanCache<B> {
        PlanCache {
            memory: Mutex::new(HashMap::new()),
            dir,
            stats: Mutex::new(CacheStats::default()),
        }
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The plan of `model` for `opts` on `backend`, prepared at most once per key.
    ///
    /// # Errors
    /// The backend's prepare error.
    pub fn prepare(
        &self,
        backend: &B,
        model: &OnnxModel,
        opts: &PrepareOptions,
    ) -> Result<Arc<B::Prepared>, BackendError> {
        let key = PlanKey::new(model, opts, backend.platform());
        if let Some(p) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            self.count(|s| s.memory_hits += 1);
            return Ok(Arc::clone(p));
        }
        let file = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{}.plan", key.digest())));
        let restored = file
            .as_ref()
            .filter(|f| f.is_file())
            .and_then(|f| match std::fs::read(f) {
                Ok(bytes) => match backend.deserialize(model, opts, &bytes) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        log::warn!(
                            "plan cache: {} does not restore ({e}); rebuilding",
                            f.display()
                        );
                        None
                    }
                },
                Err(e) => {
                    log::warn!("plan cache: cannot read {} ({e}); rebuilding", f.display());
                    None
                }
            });
        let prepared = match restored {
            Some(p) => {
                self.count(|s| s.disk_hits += 1);
                p
            }
            None => {
                let p = backend.prepare(model, opts)?;
                self.count(|s| s.built += 1);
                if let (Some(file), Some(bytes)) = (&file, backend.serialize(&p)) {
                    if let Err(e) = crate::util::fsx::write_atomic(file, &bytes) {
                        log::warn!("plan cache: cannot write {} ({e})", file.display());
                    }
                }
                p
            }
        };
        let prepared = Arc::new(prepared);
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::clone(&prepared));
        Ok(prepared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Completed, HostMut, HostRef, Memory, Prepared, Session, TensorDesc};
    use crate::model::import::{init, Network};
    use crate::model::Preset;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend whose "plan" is the input shapes, serialized as text; counts prepares.
    #[derive(Default)]
    struct Fake {
        prepares: AtomicUsize,
    }

    struct FakePrepared(Vec<TensorDesc>);

    struct FakeSession;

    impl Session for FakeSession {
        type Event = Completed;
        fn memory(&self) -> Memory {
            Memory::Host
        }
        fn input(&mut self, _: usize) -> Result<HostMut<'_>, BackendError> {
            Ok(HostMut::F32(&mut []))
        }
        fn output(&self, _: usize) -> Result<HostRef<'_>, BackendError> {
            Ok(HostRef::F32(&[]))
        }
        fn enqueue(&mut self) -> Result<Completed, BackendError> {
            Ok(Completed::new(Ok(())))
        }
    }

    impl Prepared for FakePrepared {
        type Session = FakeSession;
        fn inputs(&self) -> &[TensorDesc] {
            &self.0
        }
        fn outputs(&self) -> &[TensorDesc] {
            &[]
        }
        fn label(&self) -> &str {
            "fake"
        }
        fn session(&self) -> Result<FakeSession, BackendError> {
            Ok(FakeSession)
        }
    }

    impl Backend for Fake {
        type Prepared = FakePrepared;
        fn name(&self) -> &'static str {
            "fake"
        }
        fn platform(&self) -> String {
            "fake-1".into()
        }
        fn prepare(
            &self,
            model: &OnnxModel,
            opts: &PrepareOptions,
        ) -> Result<FakePrepared, BackendError> {
            self.prepares.fetch_add(1, Ordering::SeqCst);
            Ok(FakePrepared(model.resolve_shapes(&opts.shapes)?))
        }
        fn serialize(&self, p: &FakePrepared) -> Option<Vec<u8>> {
            Some(format!("{:?}", p.0).into_bytes())
        }
        fn deserialize(
            &self,
            model: &OnnxModel,
            opts: &PrepareOptions,
            bytes: &[u8],
        ) -> Result<FakePrepared, BackendError> {
            let p = FakePrepared(model.resolve_shapes(&opts.shapes)?);
            if bytes == format!("{:?}", p.0).as_bytes() {
                Ok(p)
            } else {
                Err(BackendError::Unsupported {
                    backend: "fake",
                    what: "this plan".into(),
                })
            }
        }
    }

    fn faco_opts(frames: usize) -> PrepareOptions {
        PrepareOptions::shapes(&[
            ("lip", vec![1, frames, 120]),
            ("eye", vec![1, frames, 180]),
            ("template", vec![1, 1434]),
        ])
    }

    #[test]
    fn one_build_per_key_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let model = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 1));
        let backend = Fake::default();
        let cache = PlanCache::new(Some(dir.path().to_path_buf()));
        let a = cache.prepare(&backend, &model, &faco_opts(5)).unwrap();
        let b = cache.prepare(&backend, &model, &faco_opts(5)).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same key, same plan");
        let c = cache.prepare(&backend, &model, &faco_opts(6)).unwrap();
        assert_eq!(c.inputs()[0].shape, [1, 6, 120]);
        assert_eq!(backend.prepares.load(Ordering::SeqCst), 2);
        assert_eq!(
            cache.stats(),
            CacheStats {
                built: 2,
                memory_hits: 1,
                disk_hits: 0
            }
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

        // A new process (a new cache) restores from disk instead of preparing.
        let again = PlanCache::new(Some(dir.path().to_path_buf()));
        again.prepare(&backend, &model, &faco_opts(5)).unwrap();
        assert_eq!(backend.prepares.load(Ordering::SeqCst), 2);
        assert_eq!(again.stats().disk_hits, 1);

        // A plan file that does not restore is rebuilt.
        let key = PlanKey::new(&model, &faco_opts(6), backend.platform());
        std::fs::write(dir.path().join(format!("{}.plan", key.digest())), b"junk").unwrap();
        PlanCache::new(Some(dir.path().to_path_buf()))
            .prepare(&backend, &model, &faco_opts(6))
            .unwrap();
        assert_eq!(backend.prepares.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_key_covers_model_shapes_precision_and_platform() {
        let faco = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 1));
        let other = OnnxModel::from_proto("faco", &init(Network::Faco, Preset::Tiny, 2));
        let base = PlanKey::new(&faco, &faco_opts(5), "p".into());
        let mut fp16 = faco_opts(5);
        fp16.precision = Precision::Fp16;
        let mut reordered = faco_opts(5);
        reordered.shapes.reverse();
        assert_eq!(
            base.digest(),
            PlanKey::new(&faco, &reordered, "p".into()).digest()
        );
        for key in [
            PlanKey::new(&other, &faco_opts(5), "p".into()),
            PlanKey::new(&faco, &faco_opts(6), "p".into()),
            PlanKey::new(&faco, &fp16, "p".into()),
            PlanKey::new(&faco, &faco_opts(5), "q".into()),
        ] {
            assert_ne!(key.digest(), base.digest(), "{key:?}");
        }
    }
}
