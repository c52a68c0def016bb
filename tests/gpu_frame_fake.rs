//! The double-buffered GPU frame stage without a GPU (feature `tensorrt-fake`): the kernels'
//! C++ build on the fake TensorRT's in-order streams, the renderer a fake engine bound to the
//! stage's buffers. Its frames must equal, byte for byte, what the CPU frame stage renders with
//! tract from the same motion: the same pictures through other code, on other threads, two
//! frames in flight.
#![cfg(feature = "tensorrt-fake")]

use moda_edge::backend::tensorrt::engine::EngineLookup;
use moda_edge::backend::tensorrt::{MissingEngine, TensorRtBackend, TensorRtOptions};
use moda_edge::backend::tract::TractBackend;
use moda_edge::backend::{Backend, OnnxModel};
use moda_edge::draw::convert::u8_hwc_to_unit_chw;
use moda_edge::face::pose::CANON_CENTER;
use moda_edge::face::repr::Repr;
use moda_edge::face::synthetic::SyntheticSubject;
use moda_edge::face::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};
use moda_edge::gpu::frame::{FrameGpuSettings, GpuFrameStage, OutputLayout, StandInRenderer};
use moda_edge::gpu::host_device::HostFrameDevice;
use moda_edge::gpu::kernels::DrawPlan;
use moda_edge::gpu::live::TensorRtSlotRenderer;
use moda_edge::model::import::{init, Network};
use moda_edge::model::Preset;
use moda_edge::pipeline::{FrameOutcome, FrameSettings, FrameStage, MotionFrame};
use moda_edge::sink::pixel::{self, Layout};
use std::cell::RefCell;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CANVAS: usize = 512;
const PERIOD: u64 = 600;

fn demo_repr() -> Repr {
    let subject = SyntheticSubject::build(&Tables::official().unwrap()).unwrap();
    Repr {
        templete: subject.template,
        shoulder: subject.shoulders,
        headmotion: subject.headmotion,
        centre: CANON_CENTER,
    }
}

/// Talking-head motion around the rest pose, at absolute frame `index`.
fn motion(rng: &mut ChaCha8Rng, index: u64) -> MotionFrame {
    let mut m = MotionFrame {
        index,
        ..MotionFrame::default()
    };
    m.face
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-2.0..2.0));
    m.torso
        .iter_mut()
        .for_each(|v| *v = rng.random_range(-3.0..3.0));
    m.head[0] = 0.3 * (index as f32 * 0.2).sin();
    m.head[1] = 0.2 * (index as f32 * 0.13).cos();
    m.head[3] = rng.random_range(-10.0..10.0);
    m
}

/// Renders `frames` frames from index 590 (so the time code wraps at 600) on the CPU stage and
/// on the GPU-shaped stage, and compares every frame in the output layout.
fn same_frames(side: usize, slots: usize, output: OutputLayout, frames: u64) {
    let model = OnnxModel::from_proto("renderer", &init(Network::Renderer, Preset::Tiny, 1));
    let settings = FrameSettings {
        canvas: CANVAS,
        size: side,
        time_code_period: Some(PERIOD),
    };
    let opts = settings.prepare_options();
    let mut rng = ChaCha8Rng::seed_from_u64(side as u64 + slots as u64);
    let reference: Vec<u8> = (0..CANVAS * CANVAS * 3).map(|_| rng.random()).collect();
    let repr = demo_repr();

    let tract = TractBackend::default();
    let cpu_renderer = tract.prepare(&model, &opts).unwrap();
    let mut cpu = FrameStage::new(&cpu_renderer, repr.clone(), &reference, settings).unwrap();

    let engines = tempfile::tempdir().unwrap();
    let trt = TensorRtBackend::new(TensorRtOptions {
        device: 0,
        lookup: EngineLookup::Dir(engines.path().into()),
        missing: MissingEngine::BuildFake,
        precision: None,
    })
    .unwrap();
    let gpu_renderer = trt.prepare(&model, &opts).unwrap();
    let mut reference_unit = vec![0f32; 3 * side * side];
    u8_hwc_to_unit_chw(&cpu.reference_small, side, side, &mut reference_unit).unwrap();
    let mut stage = GpuFrameStage::new(
        HostFrameDevice,
        TensorRtSlotRenderer::new(std::sync::Arc::new(gpu_renderer), side).unwrap(),
        &DrawPlan::new(&Tables::official().unwrap()),
        &reference_unit,
        FrameGpuSettings {
            canvas: CANVAS,
            side,
            slots,
            output,
        },
    )
    .unwrap();

    let mut expected = Vec::new();
    let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut sink = |k: u64, bytes: &[u8]| got.push((k, bytes.to_vec()));
    let (mut face_px, mut shoulder_px) =
        (vec![[0.0; 2]; FACE_POINTS], vec![[0.0; 2]; SHOULDER_POINTS]);
    for k in 590..590 + frames {
        let m = motion(&mut rng, k);
        assert_eq!(cpu.process(&m).unwrap(), FrameOutcome::Rendered);
        let out = &cpu.buffers.out;
        expected.push(match output {
            OutputLayout::Rgb => out.clone(),
            OutputLayout::Yuyv { stride } | OutputLayout::Nv12 { stride } => {
                let layout = if matches!(output, OutputLayout::Yuyv { .. }) {
                    Layout::Yuyv
                } else {
                    Layout::Nv12
                };
                // The stage never writes row padding: it stays as allocated, zero.
                let mut dst = vec![0u8; layout.frame_len(side, stride)];
                pixel::convert(layout, out, side, side, &mut dst, stride).unwrap();
                dst
            }
        });
        repr.project_frame(&m.face, &m.head, &m.torso, &mut face_px, &mut shoulder_px)
            .unwrap();
        stage
            .submit(k, k % PERIOD, &face_px, &shoulder_px, &mut sink)
            .unwrap();
    }
    stage.finish(&mut sink).unwrap();
    drop(stage);
    assert_eq!(got.len() as u64, frames, "every frame handed out once");
    for (i, ((k, bytes), want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(*k, 590 + i as u64, "frames leave in submission order");
        let differ = bytes.iter().zip(want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ, 0,
            "frame {k} ({side}², {slots} slot(s), {output:?}): {differ} bytes differ"
        );
    }
}

#[test]
fn two_slots_at_256_give_the_cpu_stages_yuyv_frames() {
    same_frames(
        256,
        2,
        OutputLayout::Yuyv {
            stride: 2 * 256 + 32,
        },
        14,
    );
}

#[test]
fn one_slot_at_256_gives_the_cpu_stages_nv12_frames() {
    same_frames(256, 1, OutputLayout::Nv12 { stride: 256 }, 6);
}

#[test]
fn two_slots_at_512_give_the_cpu_stages_rgb_frames() {
    same_frames(512, 2, OutputLayout::Rgb, 5);
}

/// The stand-in renderer through both slot counts: the same frames, in order (the scheduling
/// does not change what is computed).
#[test]
fn one_and_two_slots_hand_out_the_same_frames_in_order() {
    let repr = demo_repr();
    let plan = DrawPlan::new(&Tables::official().unwrap());
    let side = 256;
    let reference = vec![0.25f32; 3 * side * side];
    let mut runs = Vec::new();
    for slots in [1, 2] {
        let mut stage = GpuFrameStage::new(
            HostFrameDevice,
            StandInRenderer::new(3),
            &plan,
            &reference,
            FrameGpuSettings {
                canvas: CANVAS,
                side,
                slots,
                output: OutputLayout::Rgb,
            },
        )
        .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let got: RefCell<Vec<(u64, Vec<u8>)>> = RefCell::new(Vec::new());
        let mut sink = |k: u64, bytes: &[u8]| got.borrow_mut().push((k, bytes.to_vec()));
        let (mut face_px, mut shoulder_px) =
            (vec![[0.0; 2]; FACE_POINTS], vec![[0.0; 2]; SHOULDER_POINTS]);
        for k in 0..9 {
            let m = motion(&mut rng, k);
            repr.project_frame(&m.face, &m.head, &m.torso, &mut face_px, &mut shoulder_px)
                .unwrap();
            stage
                .submit(k, k, &face_px, &shoulder_px, &mut sink)
                .unwrap();
            // A slot's frame comes out when the slot is taken again: the last `slots` frames
            // submitted are still in flight.
            assert_eq!(
                got.borrow().len() as u64,
                (k + 1).saturating_sub(slots as u64)
            );
        }
        stage.finish(&mut sink).unwrap();
        drop(stage);
        let got = got.into_inner();
        assert_eq!(
            got.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        runs.push(got);
    }
    assert_eq!(runs[0], runs[1]);
    // The frames differ from one another (the motion moved the drawing).
    assert_ne!(runs[0][0].1, runs[0][5].1);
}

#[test]
fn bad_settings_are_refused_with_the_reason() {
    let plan = DrawPlan::new(&Tables::official().unwrap());
    let err = |settings: FrameGpuSettings, reference: usize| match GpuFrameStage::new(
        HostFrameDevice,
        StandInRenderer::new(1),
        &plan,
        &vec![0.0; reference],
        settings,
    ) {
        Ok(_) => panic!("{settings:?} accepted"),
        Err(e) => e.to_string(),
    };
    let good = FrameGpuSettings {
        canvas: 512,
        side: 256,
        slots: 2,
        output: OutputLayout::Rgb,
    };
    assert!(err(FrameGpuSettings { slots: 3, ..good }, 3 * 256 * 256).contains("slots = 3"));
    assert!(
        err(FrameGpuSettings { side: 200, ..good }, 3 * 200 * 200).contains("renderer side 200")
    );
    assert!(err(good, 5).contains("reference has 5 values"));
    let narrow = FrameGpuSettings {
        output: OutputLayout::Yuyv { stride: 100 },
        ..good
    };
    assert!(err(narrow, 3 * 256 * 256).contains("stride is too small"));
}

/// The TensorRT backend's render stage for the live pipeline is the GPU frame stage (its
/// condition image never reaches the host), and it renders the CPU stage's pictures.
#[test]
fn the_tensorrt_backends_live_render_stage_is_the_gpu_stage_and_matches_the_cpu() {
    use moda_edge::backend::PlanCache;
    use moda_edge::pipeline::frame::cpu_render_stage;
    use moda_edge::pipeline::RenderStages;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let renderer = dir.path().join("renderer.onnx");
    let model = init(Network::Renderer, Preset::Tiny, 1);
    std::fs::write(&renderer, prost::Message::encode_to_vec(&model)).unwrap();
    let avatar_dir = dir.path().join("avatar");
    moda_edge::face::avatar::write_synthetic(&renderer, 256, &avatar_dir).unwrap();
    let avatar = moda_edge::face::avatar::Avatar::load(&avatar_dir).unwrap();
    let settings = FrameSettings {
        canvas: avatar.config.canvas,
        size: 256,
        time_code_period: Some(PERIOD),
    };
    let trt = Arc::new(
        TensorRtBackend::new(TensorRtOptions {
            device: 0,
            lookup: EngineLookup::BesideOnnx,
            missing: MissingEngine::BuildFake,
            precision: None,
        })
        .unwrap(),
    );
    let mut gpu =
        TensorRtBackend::render_stage(&trt, &Arc::new(PlanCache::new(None)), &avatar, settings)
            .unwrap();
    let tract = Arc::new(TractBackend::default());
    let mut cpu =
        cpu_render_stage(&tract, &Arc::new(PlanCache::new(None)), &avatar, settings).unwrap();
    assert!(
        gpu.buffers().cond.is_empty(),
        "the GPU stage keeps the condition image on the device"
    );
    assert!(!cpu.buffers().cond.is_empty());
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for k in 595..603 {
        let m = motion(&mut rng, k);
        assert_eq!(gpu.process(&m).unwrap(), FrameOutcome::Rendered);
        assert_eq!(cpu.process(&m).unwrap(), FrameOutcome::Rendered);
        assert!(gpu.buffers().out == cpu.buffers().out, "frame {k} differs");
        assert_eq!(gpu.buffers().face_px, cpu.buffers().face_px);
    }
    // A frame with non-finite motion keeps the previous picture, as on the CPU.
    let mut bad = motion(&mut rng, 603);
    bad.face[0] = f32::NAN;
    assert_eq!(gpu.process(&bad).unwrap(), FrameOutcome::KeptPrevious);
}
