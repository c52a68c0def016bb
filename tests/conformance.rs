//! The backend-generic golden conformance suite (`moda_edge::backend::conformance`) on the
//! tract CPU backend: every golden network's outputs against the official PyTorch outputs,
//! within the bounds the golden set recommends (MODA 1e-4, FaCo 1e-4, renderer 1e-3).

mod common;

use moda_edge::backend::conformance::{conformance, FACO_BOUND, MODA_BOUND, RENDERER_BOUND};
use moda_edge::backend::tract::TractBackend;

#[test]
fn tract_reproduces_every_golden_network() {
    let golden = common::reference_dir().join("golden");
    let rows = conformance(&TractBackend::default(), &golden, |case| {
        eprintln!("conformance: {case}")
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for r in &rows {
        eprintln!(
            "{:<26} {:<7} max abs {:.2e} (bound {:.0e})",
            r.case, r.output, r.max_abs, r.bound
        );
    }
    // 2 MODA variants × (6 outputs with the recorded noise + 4 with zero noise), FaCo, renderer.
    assert_eq!(rows.len(), 22);
    let bound = |case: &str| {
        if case.starts_with("moda") {
            MODA_BOUND
        } else if case == "faco" {
            FACO_BOUND
        } else {
            RENDERER_BOUND
        }
    };
    for r in &rows {
        assert_eq!(r.bound, bound(&r.case), "{r:?}");
        assert!(
            r.passed(),
            "{} {}: {:e} > {:e}",
            r.case,
            r.output,
            r.max_abs,
            r.bound
        );
    }
}

/// FaCo on the end-to-end run's stored smoothed streams, with the avatar's template, gives the
/// stored FaCo output within the e2e golden README's 2e-5 (float32 rounding there: 3e-6).
#[test]
fn faco_on_the_stored_smoothed_streams_matches_the_e2e_run() {
    use moda_edge::backend::{run_once, OnnxModel};
    use moda_edge::model::import::{import, ImportOptions, Network};
    use moda_edge::model::Tensor;
    let proto = import(
        Network::Faco,
        &common::golden("faco/checkpoint.pkl"),
        &ImportOptions::default(),
    )
    .unwrap();
    let model = OnnxModel::from_proto("faco", &proto);
    let repr = moda_edge::face::repr::Repr::load(&common::golden("e2e/repr.npz")).unwrap();
    let template: Vec<f32> = repr.templete.iter().flatten().map(|&x| x as f32).collect();
    let stream = |name: &str, c: usize| {
        let t = common::golden_npy(&format!("e2e/moda_smoothed_{name}.npy"));
        Tensor::f32(vec![1, 208, c], t.to_f32_vec())
    };
    let inputs = vec![
        ("lip".to_string(), stream("lip", 120)),
        ("eye".to_string(), stream("eye", 180)),
        ("template".to_string(), Tensor::f32(vec![1, 1434], template)),
    ];
    let out = run_once(&TractBackend::default(), &model, &inputs).unwrap();
    let want = common::golden_npy("e2e/faco_raw.npy");
    let got = Tensor::f32(want.shape.clone(), out[0].1.to_f32_vec());
    let err = common::max_abs_diff(&got, &want);
    eprintln!("FaCo from the stored smoothed streams: max abs {err:.2e} (bound 2e-5)");
    assert!(err <= 2e-5, "{err}");
}

/// A backend whose outputs are off by a tenth fails the suite: the comparison can fail.
#[test]
fn the_suite_fails_a_wrong_backend() {
    use moda_edge::backend::{
        Backend, BackendError, Completed, HostMut, HostRef, Memory, OnnxModel, PrepareOptions,
        Prepared, Session, TensorDesc,
    };
    struct Off(TractBackend);
    struct OffPrepared(<TractBackend as Backend>::Prepared);
    struct OffSession(
        <<TractBackend as Backend>::Prepared as Prepared>::Session,
        Vec<Vec<f32>>,
    );
    impl Session for OffSession {
        type Event = Completed;
        fn memory(&self) -> Memory {
            Memory::Host
        }
        fn input(&mut self, i: usize) -> Result<HostMut<'_>, BackendError> {
            self.0.input(i)
        }
        fn output(&self, i: usize) -> Result<HostRef<'_>, BackendError> {
            Ok(HostRef::F32(&self.1[i]))
        }
        fn enqueue(&mut self) -> Result<Completed, BackendError> {
            self.0.run()?;
            for (i, out) in self.1.iter_mut().enumerate() {
                out.copy_from_slice(self.0.output_f32(i)?);
                out[0] += 0.1;
            }
            Ok(Completed::new(Ok(())))
        }
    }
    impl Prepared for OffPrepared {
        type Session = OffSession;
        fn inputs(&self) -> &[TensorDesc] {
            self.0.inputs()
        }
        fn outputs(&self) -> &[TensorDesc] {
            self.0.outputs()
        }
        fn label(&self) -> &str {
            self.0.label()
        }
        fn session(&self) -> Result<OffSession, BackendError> {
            let outs = self
                .0
                .outputs()
                .iter()
                .map(|d| vec![0.0; d.len()])
                .collect();
            Ok(OffSession(self.0.session()?, outs))
        }
    }
    impl Backend for Off {
        type Prepared = OffPrepared;
        fn name(&self) -> &'static str {
            "off"
        }
        fn platform(&self) -> String {
            "off".into()
        }
        fn prepare(&self, m: &OnnxModel, o: &PrepareOptions) -> Result<OffPrepared, BackendError> {
            Ok(OffPrepared(self.0.prepare(m, o)?))
        }
    }
    let golden = common::reference_dir().join("golden");
    let rows = conformance(&Off(TractBackend::default()), &golden, |_| {}).unwrap();
    assert!(rows.iter().all(|r| !r.passed()), "{rows:?}");
    assert!(
        rows.iter().all(|r| (r.max_abs - 0.1).abs() < 0.01),
        "{rows:?}"
    );
}
