//! Golden conformance of the pose step, the condition-image drawing and the pixel conversions
//! against `reference/golden/e2e` (official MODA code, OpenCV drawing).

mod common;

use common::reference_file;
use moda_edge::draw::condition::{ConditionDrawer, DrawSettings};
use moda_edge::draw::{convert, timecode};
use moda_edge::face::repr::Repr;
use moda_edge::face::tables::Tables;
use moda_edge::model::tensor::TensorData;
use moda_edge::util::npy;

fn read_f64(rel: &str) -> (Vec<usize>, Vec<f64>) {
    let t = npy::read(&reference_file(rel)).unwrap();
    (t.shape.clone(), t.to_f64_vec())
}

fn read_f32(rel: &str) -> (Vec<usize>, Vec<f32>) {
    let t = npy::read(&reference_file(rel)).unwrap();
    (
        t.shape.clone(),
        t.as_f32().expect("float32 golden").to_vec(),
    )
}

fn read_u8(rel: &str) -> (Vec<usize>, Vec<u8>) {
    let t = npy::read(&reference_file(rel)).unwrap();
    match t.data {
        TensorData::U8(v) => (t.shape, v),
        _ => panic!("{rel} is not uint8"),
    }
}

fn pairs(v: &[f64]) -> Vec<[f64; 2]> {
    v.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
}

fn read_png_rgb(rel: &str) -> (usize, usize, Vec<u8>) {
    let file = std::fs::File::open(reference_file(rel)).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        info.color_type,
        png::ColorType::Rgb,
        "{rel} is not 8-bit RGB"
    );
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    a.chunks_exact(3)
        .zip(b.chunks_exact(3))
        .filter(|(x, y)| x != y)
        .count()
}

#[test]
fn pose_reproduces_face_and_shoulder_pixels() {
    let repr = Repr::load(&reference_file("golden/e2e/repr.npz")).unwrap();
    let (fs, faco) = read_f32("golden/e2e/faco_smoothed.npy");
    let (_, head) = read_f32("golden/e2e/moda_smoothed_head.npy");
    let (_, torso) = read_f32("golden/e2e/moda_smoothed_torso.npy");
    let (_, face_px) = read_f64("golden/e2e/face_px.npy");
    let (_, shoulder_px) = read_f64("golden/e2e/shoulder_px.npy");
    let frames = fs[0];
    assert_eq!(frames, 208);
    let (mut face, mut sh) = (vec![[0.0; 2]; 478], vec![[0.0; 2]; 18]);
    let (mut max_face, mut max_sh) = (0.0f64, 0.0f64);
    for k in 0..frames {
        repr.project_frame(
            &faco[k * 1434..(k + 1) * 1434],
            &head[k * 7..(k + 1) * 7],
            &torso[k * 54..(k + 1) * 54],
            &mut face,
            &mut sh,
        )
        .unwrap();
        for (i, p) in face.iter().enumerate() {
            for c in 0..2 {
                max_face = max_face.max((p[c] - face_px[(k * 478 + i) * 2 + c]).abs());
            }
        }
        for (i, p) in sh.iter().enumerate() {
            for c in 0..2 {
                max_sh = max_sh.max((p[c] - shoulder_px[(k * 18 + i) * 2 + c]).abs());
            }
        }
    }
    println!("max |Δ| face {max_face:e} px, shoulders {max_sh:e} px");
    assert!(
        max_face <= 1e-9 && max_sh <= 1e-9,
        "face {max_face:e}, shoulders {max_sh:e}"
    );
}

#[test]
fn rest_pose_drawing_equals_the_official_template_png() {
    let repr = Repr::load(&reference_file("golden/e2e/repr.npz")).unwrap();
    let (w, h, expected) = read_png_rgb("moda_cond_template.png");
    assert_eq!((w, h), (512, 512));
    let (mut face, mut sh) = (vec![[0.0; 2]; 478], vec![[0.0; 2]; 18]);
    repr.rest_pixels(&mut face, &mut sh);
    let mut drawer =
        ConditionDrawer::new(DrawSettings::default(), Tables::official().unwrap()).unwrap();
    let mut out = vec![0u8; 512 * 512 * 3];
    drawer.process(&face, &sh, &mut out).unwrap();
    let diff = differing_pixels(&out, &expected);
    assert_eq!(diff, 0, "{diff} pixels differ from moda_cond_template.png");
}

#[test]
fn golden_condition_frames_are_bit_exact() {
    let (_, indices) = {
        let t = npy::read(&reference_file("golden/e2e/indices.npy")).unwrap();
        (
            t.shape.clone(),
            t.to_f64_vec()
                .into_iter()
                .map(|v| v as usize)
                .collect::<Vec<_>>(),
        )
    };
    let (_, face_px) = read_f64("golden/e2e/face_px.npy");
    let (_, shoulder_px) = read_f64("golden/e2e/shoulder_px.npy");
    let (shape, frames) = read_u8("golden/e2e/frames_cond.npy");
    assert_eq!(shape, [16, 512, 512, 3]);
    let mut drawer =
        ConditionDrawer::new(DrawSettings::default(), Tables::official().unwrap()).unwrap();
    let mut out = vec![0u8; 512 * 512 * 3];
    let mut report = Vec::new();
    for (i, &k) in indices.iter().enumerate() {
        let face = pairs(&face_px[k * 956..(k + 1) * 956]);
        let sh = pairs(&shoulder_px[k * 36..(k + 1) * 36]);
        drawer.process(&face, &sh, &mut out).unwrap();
        let n = out.len();
        report.push((k, differing_pixels(&out, &frames[i * n..(i + 1) * n])));
    }
    println!("differing pixels per frame: {report:?}");
    assert!(report.iter().all(|&(_, d)| d == 0), "{report:?}");
}

#[test]
fn shrink_of_the_reference_matches_the_renderer_input() {
    let (w, h, reference) = read_png_rgb("golden/e2e/reference.png");
    let (shape, expected) = read_u8("golden/e2e/reference_renderer_input.npy");
    assert_eq!(shape, [h / 2, w / 2, 3]);
    let mut out = vec![0u8; expected.len()];
    convert::shrink_2x(&reference, w, h, &mut out).unwrap();
    assert_eq!(differing_pixels(&out, &expected), 0);
}

#[test]
fn time_code_matches_the_renderer_golden_bitwise() {
    let (shape, pe) = read_f32("golden/render_small/input_pe.npy");
    assert_eq!(shape, [1, 13, 1, 1]);
    let code = timecode::time_code(37);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&code), bits(&pe), "{code:?} vs {pe:?}");
}

#[test]
fn unit_mapping_matches_the_renderer_golden_values() {
    // input_mesh.npy holds uint8 values mapped by im2tensor; each must equal one of our 256.
    let (_, mesh) = read_f32("golden/render_small/input_mesh.npy");
    let levels: Vec<u8> = (0..=255).collect();
    let mut lut = vec![0.0f32; 256 * 3];
    convert::u8_hwc_to_unit_chw(
        &levels.iter().flat_map(|&v| [v, v, v]).collect::<Vec<_>>(),
        256,
        1,
        &mut lut,
    )
    .unwrap();
    let known: std::collections::HashSet<u32> = lut[..256].iter().map(|v| v.to_bits()).collect();
    let unknown = mesh
        .iter()
        .filter(|v| !known.contains(&v.to_bits()))
        .count();
    assert_eq!(
        unknown,
        0,
        "{unknown} of {} values are not an exact uint8 mapping",
        mesh.len()
    );
}
