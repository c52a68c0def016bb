//! The reference picture of the synthetic demo subject: flat shapes painted at the subject's
//! rest-pose landmarks (hair, face, brows, eyes, lips, neck, a sweater below the shoulder
//! lines) over a gradient. Computed here; no photograph goes in.

use std::collections::BTreeMap;

use super::synthetic::{
    brow_stroke, closed_contour, contour_adjacency, depth, lm, SyntheticError, SyntheticSubject,
};
use super::tables::Tables;

type Rgb = [f64; 3];

const SKIN: Rgb = [222.0, 180.0, 148.0];
const HAIR: Rgb = [62.0, 42.0, 32.0];
const SWEATER: Rgb = [46.0, 62.0, 104.0];
const LIPS: Rgb = [176.0, 84.0, 88.0];
const SCLERA: Rgb = [236.0, 234.0, 228.0];
const IRIS: Rgb = [86.0, 112.0, 66.0];

/// An RGB canvas painted shape by shape.
struct Canvas {
    size: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    /// Paints every pixel whose centre passes `inside` with `colour(x, y)`.
    fn fill(&mut self, inside: impl Fn(f64, f64) -> bool, colour: impl Fn(f64, f64) -> Rgb) {
        for (i, px) in self.rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) = ((i % self.size) as f64 + 0.5, (i / self.size) as f64 + 0.5);
            if inside(x, y) {
                for (d, c) in px.iter_mut().zip(colour(x, y)) {
                    *d = c.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Even-odd point-in-polygon test.
fn in_polygon(poly: &[[f64; 2]], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < xi + (y - yi) * (xj - xi) / (yj - yi) {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The closed contour through `start`, in walking order, as canvas points.
fn contour(
    adj: &BTreeMap<usize, Vec<usize>>,
    start: usize,
    at: &[[f64; 3]],
) -> Result<Vec<[f64; 2]>, SyntheticError> {
    Ok(closed_contour(adj, start)?
        .iter()
        .map(|&v| [at[v][0], at[v][1]])
        .collect())
}

fn shade(c: Rgb, f: f64) -> Rgb {
    [c[0] * f, c[1] * f, c[2] * f]
}

/// Paints the 512 × 512 RGB reference picture of `subject` at rest.
///
/// # Errors
/// When the tables lack a contour the painting follows.
pub fn paint_reference(
    subject: &SyntheticSubject,
    tables: &Tables,
) -> Result<Vec<u8>, SyntheticError> {
    const SIZE: usize = 512;
    let at = &subject.template;
    let adj = contour_adjacency(tables);
    let mut c = Canvas {
        size: SIZE,
        rgb: vec![0; SIZE * SIZE * 3],
    };

    // Backdrop: a cool vertical gradient with a soft light behind the head.
    c.fill(
        |_, _| true,
        |x, y| {
            let t = y / SIZE as f64;
            let glow = (-((x - 256.0).powi(2) + (y - 220.0).powi(2)) / 60_000.0).exp();
            [
                70.0 - 30.0 * t + 40.0 * glow,
                92.0 - 40.0 * t + 40.0 * glow,
                118.0 - 48.0 * t + 36.0 * glow,
            ]
        },
    );

    // Hair behind the head.
    c.fill(
        |x, y| y < 330.0 && ((x - 256.0) / 146.0).powi(2) + ((y - 236.0) / 166.0).powi(2) < 1.0,
        |_, y| shade(HAIR, 1.1 - 0.3 * y / SIZE as f64),
    );

    // Neck, then the sweater below the shoulder lines.
    c.fill(
        |x, y| (214.0..298.0).contains(&x) && y > 330.0,
        |x, _| shade(SKIN, 0.72 + 0.1 * (1.0 - ((x - 256.0) / 42.0).powi(2))),
    );
    let mut torso: Vec<[f64; 2]> = subject.shoulders.iter().map(|p| [p[0], p[1]]).collect();
    torso.extend([[SIZE as f64, SIZE as f64], [0.0, SIZE as f64]]);
    let left_neck = torso[8];
    let right_neck = torso[9];
    c.fill(
        |x, y| {
            in_polygon(&torso, x, y)
                && !(x > left_neck[0] + 12.0 && x < right_neck[0] - 12.0 && y < 440.0)
        },
        |x, y| {
            shade(
                SWEATER,
                0.85 + 0.25 * ((x * 0.05).sin() * 0.1 + 1.0 - y / 1024.0),
            )
        },
    );

    // The face, lit by its depth.
    let oval = contour(&adj, lm::FOREHEAD_TOP, at)?;
    c.fill(
        |x, y| in_polygon(&oval, x, y),
        |x, y| shade(SKIN, 0.74 + 0.3 * (depth(x, y) - 8.0) / 184.0),
    );

    // Brows: the area between the upper and lower stroke of each.
    for pair in lm::BROWS.chunks_exact(2) {
        let stroke =
            |(outer, inner, _, _): (usize, usize, bool, bool)| brow_stroke(&adj, outer, inner);
        let mut poly: Vec<[f64; 2]> = stroke(pair[0])?
            .iter()
            .map(|&v| [at[v][0], at[v][1]])
            .collect();
        poly.extend(stroke(pair[1])?.iter().rev().map(|&v| [at[v][0], at[v][1]]));
        c.fill(|x, y| in_polygon(&poly, x, y), |_, _| HAIR);
    }

    // Eyes: white, an iris with a pupil, clipped to the lids.
    for (eye, iris) in [(lm::R_EYE, lm::R_IRIS), (lm::L_EYE, lm::L_IRIS)] {
        let lids = contour(&adj, eye[0], at)?;
        let [ix, iy, _] = at[iris];
        c.fill(
            |x, y| in_polygon(&lids, x, y),
            |x, y| {
                let r = ((x - ix).powi(2) + (y - iy).powi(2)).sqrt();
                if r < 3.5 {
                    [20.0, 16.0, 14.0]
                } else if r < 8.0 {
                    shade(IRIS, 0.8 + 0.05 * r)
                } else {
                    SCLERA
                }
            },
        );
    }

    // Lips: the outer contour minus the mouth opening.
    let outer = contour(&adj, lm::LIPS_OUTER[0], at)?;
    let inner = contour(&adj, lm::LIPS_INNER[0], at)?;
    c.fill(
        |x, y| in_polygon(&outer, x, y),
        |x, y| {
            if in_polygon(&inner, x, y) {
                [70.0, 28.0, 34.0]
            } else {
                shade(LIPS, 0.9 + 0.1 * ((y - 322.0) / 20.0).clamp(-1.0, 1.0))
            }
        },
    );

    // Nostrils.
    let [nx, ny, _] = at[lm::NOSE_TIP];
    c.fill(
        |x, y| {
            let d = |cx: f64| ((x - cx) / 6.0).powi(2) + ((y - ny - 9.0) / 3.5).powi(2) < 1.0;
            d(nx - 11.0) || d(nx + 11.0)
        },
        |_, _| shade(SKIN, 0.55),
    );
    Ok(c.rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_painting_follows_the_landmarks() {
        let tables = Tables::official().expect("official tables");
        let subject = SyntheticSubject::build(&tables).expect("synthetic subject");
        let rgb = paint_reference(&subject, &tables).expect("painting");
        assert_eq!(rgb.len(), 512 * 512 * 3);
        let at = |p: [f64; 3]| {
            let i = (p[1] as usize * 512 + p[0] as usize) * 3;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        let t = &subject.template;
        // Skin (red above green above blue) between the eyes and the mouth; dark pupils at the
        // iris centres; lips redder than the skin; the backdrop bluish in the corner.
        let cheek = at([256.0, 240.0, 0.0]);
        assert!(cheek[0] > cheek[1] && cheek[1] > cheek[2], "{cheek:?}");
        for iris in [lm::R_IRIS, lm::L_IRIS] {
            assert!(at(t[iris]).iter().all(|&c| c < 40), "{:?}", at(t[iris]));
        }
        let lip = at([256.0, 333.0, 0.0]);
        assert!(
            lip[0] as i32 - lip[1] as i32 > cheek[0] as i32 - cheek[1] as i32,
            "{lip:?}"
        );
        let corner = at([5.0, 5.0, 0.0]);
        assert!(corner[2] > corner[0], "{corner:?}");
    }

    #[test]
    fn even_odd_polygon_test() {
        let square = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert!(in_polygon(&square, 5.0, 5.0));
        assert!(!in_polygon(&square, 15.0, 5.0));
        assert!(!in_polygon(&square, 5.0, -1.0));
    }
}
