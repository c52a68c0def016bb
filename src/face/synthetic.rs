//! A synthetic, licence-clean subject for the demo avatar: a face mesh in MediaPipe topology
//! whose geometry is computed here, from the connection tables of `moda_tables.json` and a
//! handful of proportions chosen in this file. No person's data goes in.
//!
//! The feature contours (face oval, eyes, lips, brows) are placed on parametric curves; every
//! other mesh vertex is the harmonic interpolation of its tessellation neighbours (a Tutte-style
//! embedding with those contours pinned), with fences that keep free vertices out of the eye
//! and mouth openings and the lip band between its contours. The result is a planar drawing: a
//! test checks that no two tessellation edges cross. Depth is an ellipsoid with a nose ridge
//! and sunken eyes. The iris rings are circles in the eyes.

use std::collections::{BTreeMap, BTreeSet};

use super::tables::{Tables, FACE_POINTS, SHOULDER_POINTS};

/// Vertices of the 468-point mesh (the 10 iris points follow them).
const MESH_POINTS: usize = 468;
/// Canonical-space centre the official inference de-normalises around (x, y, z).
const CENTRE: [f64; 3] = [256.0, 235.0, 128.0];

/// Face oval: centre, half-width, half-heights above and below the centre (canvas pixels).
const OVAL_CENTRE: [f64; 2] = [256.0, 250.0];
const OVAL_HALF_WIDTH: f64 = 128.0;
const OVAL_TOP: f64 = 148.0;
const OVAL_BOTTOM: f64 = 160.0;

/// Well-known MediaPipe face-mesh landmarks that anchor the curves.
pub(crate) mod lm {
    pub const FOREHEAD_TOP: usize = 10;
    pub const CHIN: usize = 152;
    /// On the face oval, on the image-left side (the subject's right cheek).
    pub const CHEEK_IMAGE_LEFT: usize = 234;
    pub const NOSE_TIP: usize = 1;
    pub const NOSE_BRIDGE: usize = 168;
    /// Subject's right eye (image left): outer and inner corner, a point of the upper lid.
    pub const R_EYE: [usize; 3] = [33, 133, 159];
    /// Subject's left eye (image right): inner and outer corner, a point of the upper lid.
    pub const L_EYE: [usize; 3] = [362, 263, 386];
    /// Outer lip contour: image-left and image-right corner, a point of the upper lip.
    pub const LIPS_OUTER: [usize; 3] = [61, 291, 0];
    /// Inner lip contour, same order.
    pub const LIPS_INNER: [usize; 3] = [78, 308, 13];
    /// Brow strokes as (outer end, inner end, upper stroke, on the image-right side): subject's
    /// right brow upper and lower, then the left brow.
    pub const BROWS: [(usize, usize, bool, bool); 4] = [
        (70, 107, true, false),
        (46, 55, false, false),
        (300, 336, true, true),
        (276, 285, false, true),
    ];
    /// Iris centre and ring (in ring order): subject's right eye, then left.
    pub const R_IRIS: usize = 468;
    pub const L_IRIS: usize = 473;
}

/// The synthetic subject, in the units of an avatar bundle.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticSubject {
    /// 478 canonical face points (x, y, z), canvas pixels of the 512 canvas.
    pub template: Vec<[f64; 3]>,
    /// 18 shoulder points: 9 from the image-left edge to the neck, then 9 from the neck out.
    pub shoulders: Vec<[f64; 3]>,
    /// Rest head pose `[yaw, pitch, roll, tx, ty, tz, scale]`: the identity, so the template's
    /// canonical coordinates are its pixel positions.
    pub headmotion: [f64; 7],
}

#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error("moda_tables.json does not have the MediaPipe topology the synthetic face needs: {0}")]
    Topology(String),
}

/// Contour adjacency (thickness-2 contour edges only).
pub(super) fn contour_adjacency(tables: &Tables) -> BTreeMap<usize, Vec<usize>> {
    let mut adj: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for e in &tables.contours.edges {
        let (a, b) = (e.a as usize, e.b as usize);
        adj.entry(a).or_default().push(b);
        adj.entry(b).or_default().push(a);
    }
    adj
}

/// Walks a contour from `from`, first stepping to `next`, until `to`; returns the vertices
/// strictly between them.
fn walk(
    adj: &BTreeMap<usize, Vec<usize>>,
    from: usize,
    next: usize,
    to: usize,
) -> Result<Vec<usize>, SyntheticError> {
    let (mut prev, mut cur) = (from, next);
    let mut inner = Vec::new();
    while cur != to {
        inner.push(cur);
        if inner.len() > MESH_POINTS {
            return Err(SyntheticError::Topology(format!(
                "contour from {from} never reaches {to}"
            )));
        }
        let step = adj
            .get(&cur)
            .and_then(|n| n.iter().copied().find(|&v| v != prev))
            .ok_or_else(|| SyntheticError::Topology(format!("contour ends at {cur}")))?;
        (prev, cur) = (cur, step);
    }
    Ok(inner)
}

/// The closed contour through `start`, in walking order, `start` first.
pub(super) fn closed_contour(
    adj: &BTreeMap<usize, Vec<usize>>,
    start: usize,
) -> Result<Vec<usize>, SyntheticError> {
    let next = adj
        .get(&start)
        .and_then(|n| n.first())
        .copied()
        .ok_or_else(|| SyntheticError::Topology(format!("{start} is not on a contour")))?;
    let mut ring = vec![start];
    ring.extend(walk(adj, start, next, start)?);
    Ok(ring)
}

/// The brow stroke (an open contour) from its `outer` end to its `inner` end, both included.
pub(super) fn brow_stroke(
    adj: &BTreeMap<usize, Vec<usize>>,
    outer: usize,
    inner: usize,
) -> Result<Vec<usize>, SyntheticError> {
    let first = adj
        .get(&outer)
        .filter(|n| n.len() == 1)
        .ok_or_else(|| SyntheticError::Topology(format!("{outer} does not end a brow")))?[0];
    let mut path = vec![outer];
    if first != inner {
        path.extend(walk(adj, outer, first, inner)?);
    }
    path.push(inner);
    Ok(path)
}

/// The two arcs of the closed contour through `a` and `b`: (the arc containing `member`, the
/// other), each listed from `a` towards `b`, endpoints excluded.
fn split_loop(
    adj: &BTreeMap<usize, Vec<usize>>,
    a: usize,
    b: usize,
    member: usize,
) -> Result<(Vec<usize>, Vec<usize>), SyntheticError> {
    let n = adj
        .get(&a)
        .filter(|n| n.len() == 2)
        .ok_or_else(|| SyntheticError::Topology(format!("{a} is not on a closed contour")))?;
    let first = walk(adj, a, n[0], b)?;
    let second = walk(adj, a, n[1], b)?;
    if first.contains(&member) {
        Ok((first, second))
    } else if second.contains(&member) {
        Ok((second, first))
    } else {
        Err(SyntheticError::Topology(format!(
            "{member} is not on the contour through {a} and {b}"
        )))
    }
}

/// Places `arc` (listed from the left endpoint) evenly in angle, `f(u)` giving the point at
/// the fraction `u` of the way.
fn place(pins: &mut BTreeMap<usize, [f64; 2]>, arc: &[usize], f: impl Fn(f64) -> [f64; 2]) {
    let n = arc.len() as f64 + 1.0;
    for (i, &v) in arc.iter().enumerate() {
        pins.insert(v, f((i as f64 + 1.0) / n));
    }
}

/// The two half-ellipses an outline fits in: centre, half-width, upper and lower half-height.
#[derive(Clone, Copy, Debug)]
struct Ellipse {
    centre: [f64; 2],
    half_width: f64,
    up: f64,
    down: f64,
}

impl Ellipse {
    /// Moves `p` onto the ellipse grown by `grow` pixels when it is inside (`keep_out`) or
    /// outside (`!keep_out`) of it.
    fn fence(&self, p: [f64; 2], grow: f64, keep_out: bool) -> [f64; 2] {
        let [cx, cy] = self.centre;
        let (dx, dy) = (p[0] - cx, p[1] - cy);
        let half = if dy < 0.0 { self.up } else { self.down };
        let r = ((dx / (self.half_width + grow)).powi(2) + (dy / (half + grow)).powi(2)).sqrt();
        if r == 0.0 || (keep_out && r >= 1.0) || (!keep_out && r <= 1.0) {
            return p;
        }
        [cx + dx / r, cy + dy / r]
    }
}

/// Free vertices that must stay out of (or inside) an outline, `grow` pixels away from it.
struct Fence {
    ellipse: Ellipse,
    grow: f64,
    keep_out: bool,
    members: BTreeSet<usize>,
}

/// An almond (eye) or lip outline: corners at `x0` and `x1` on the line `y`, the upper arc
/// rising `up(u)` and the lower arc dropping `down(u)`. Returns the ellipse it fits in.
fn outline(
    pins: &mut BTreeMap<usize, [f64; 2]>,
    adj: &BTreeMap<usize, Vec<usize>>,
    [left, right, upper_member]: [usize; 3],
    (x0, x1, y): (f64, f64, f64),
    up: impl Fn(f64) -> f64,
    down: impl Fn(f64) -> f64,
) -> Result<Ellipse, SyntheticError> {
    let (upper, lower) = split_loop(adj, left, right, upper_member)?;
    let x = |u: f64| x0 + (x1 - x0) * (1.0 - (std::f64::consts::PI * u).cos()) / 2.0;
    pins.insert(left, [x0, y]);
    pins.insert(right, [x1, y]);
    place(pins, &upper, |u| [x(u), y - up(u)]);
    place(pins, &lower, |u| [x(u), y + down(u)]);
    let highest = |f: &dyn Fn(f64) -> f64| (0..=64).map(|i| f(i as f64 / 64.0)).fold(0.0, f64::max);
    Ok(Ellipse {
        centre: [(x0 + x1) / 2.0, y],
        half_width: (x1 - x0) / 2.0,
        up: highest(&up),
        down: highest(&down),
    })
}

fn bump(u: f64) -> f64 {
    (std::f64::consts::PI * u).sin()
}

/// The pinned 2-D positions of the feature contours and the nose.
/// The pinned positions and the outlines of the eyes and lips.
struct Layout {
    pins: BTreeMap<usize, [f64; 2]>,
    /// The vertices of the inner lip contour.
    inner_lip_loop: Vec<usize>,
    eyes: [Ellipse; 2],
    lips_outer: Ellipse,
    lips_inner: Ellipse,
}

fn layout(tables: &Tables) -> Result<Layout, SyntheticError> {
    use std::f64::consts::PI;
    let adj = contour_adjacency(tables);
    let mut pins = BTreeMap::new();

    // Face oval: from the forehead top down each side to the chin; the jaw narrows.
    let (left, right) = split_loop(&adj, lm::FOREHEAD_TOP, lm::CHIN, lm::CHEEK_IMAGE_LEFT)?;
    let [cx, cy] = OVAL_CENTRE;
    let oval = |u: f64, side: f64| {
        let phi = PI * u;
        let taper = 1.0 - 0.22 * (-phi.cos()).max(0.0).powf(1.5);
        let half = if phi < PI / 2.0 {
            OVAL_TOP
        } else {
            OVAL_BOTTOM
        };
        // The forehead is squarer than an ellipse (a superellipse arc).
        let width = if phi < PI / 2.0 {
            phi.sin().powf(0.75)
        } else {
            phi.sin()
        };
        [
            cx + side * OVAL_HALF_WIDTH * width * taper,
            cy - half * phi.cos(),
        ]
    };
    pins.insert(lm::FOREHEAD_TOP, oval(0.0, 1.0));
    pins.insert(lm::CHIN, oval(1.0, 1.0));
    place(&mut pins, &left, |u| oval(u, -1.0));
    place(&mut pins, &right, |u| oval(u, 1.0));

    // Eyes: almonds 54 px wide, the upper lid higher than the lower.
    let lid_up = |u: f64| 11.0 * bump(u).powf(0.8);
    let lid_down = |u: f64| 7.0 * bump(u);
    let right_eye = outline(
        &mut pins,
        &adj,
        lm::R_EYE,
        (173.0, 227.0, 192.0),
        lid_up,
        lid_down,
    )?;
    let left_eye = outline(
        &mut pins,
        &adj,
        lm::L_EYE,
        (285.0, 339.0, 192.0),
        lid_up,
        lid_down,
    )?;

    // Lips: a cupid's bow on the upper lip, a fuller lower lip, the mouth a little open.
    let bow = |u: f64| 13.0 * bump(u) * (1.0 - 0.3 * (-((u - 0.5) / 0.09).powi(2)).exp());
    let lips_outer = outline(
        &mut pins,
        &adj,
        lm::LIPS_OUTER,
        (211.0, 301.0, 322.0),
        bow,
        |u| 19.0 * bump(u),
    )?;
    let lips_inner = outline(
        &mut pins,
        &adj,
        lm::LIPS_INNER,
        (225.0, 287.0, 323.0),
        |u| 3.0 * bump(u),
        |u| 5.0 * bump(u),
    )?;

    // Brows: two strokes of five points per brow, from the outer end to the inner end.
    const UPPER: [[f64; 2]; 5] = [
        [158.0, 161.0],
        [173.0, 149.0],
        [192.0, 145.0],
        [212.0, 147.0],
        [234.0, 153.0],
    ];
    const LOWER: [[f64; 2]; 5] = [
        [164.0, 166.0],
        [180.0, 161.0],
        [198.0, 160.0],
        [216.0, 162.0],
        [234.0, 165.0],
    ];
    for (outer, inner, upper, mirrored) in lm::BROWS {
        let path = brow_stroke(&adj, outer, inner)?;
        let stroke = if upper { &UPPER } else { &LOWER };
        if path.len() != stroke.len() {
            return Err(SyntheticError::Topology(format!(
                "the brow stroke from {outer} to {inner} has {} points, expected {}",
                path.len(),
                stroke.len()
            )));
        }
        for (&v, &[x, y]) in path.iter().zip(stroke) {
            pins.insert(v, [if mirrored { 512.0 - x } else { x }, y]);
        }
    }

    pins.insert(lm::NOSE_TIP, [256.0, 266.0]);
    pins.insert(lm::NOSE_BRIDGE, [256.0, 190.0]);
    let inner_lip_loop = closed_contour(&adj, lm::LIPS_INNER[0])?;
    Ok(Layout {
        pins,
        inner_lip_loop,
        eyes: [right_eye, left_eye],
        lips_outer,
        lips_inner,
    })
}

/// Tessellation neighbours of each mesh vertex.
fn neighbours(tables: &Tables) -> Vec<BTreeSet<usize>> {
    let mut neighbours: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); MESH_POINTS];
    for e in &tables.tessellation.edges {
        let (a, b) = (e.a as usize, e.b as usize);
        if a < MESH_POINTS && b < MESH_POINTS {
            neighbours[a].insert(b);
            neighbours[b].insert(a);
        }
    }
    neighbours
}

/// The fences that keep free vertices out of the eye openings, out of the lips, and the lip
/// band (the free vertices between the outer and inner lip contour) between its contours.
fn fences(layout: &Layout, neighbours: &[BTreeSet<usize>]) -> Vec<Fence> {
    let free: BTreeSet<usize> = (0..MESH_POINTS)
        .filter(|v| !layout.pins.contains_key(v))
        .collect();
    // The band: free vertices reachable from the inner lip contour without crossing a pin.
    let mut band = BTreeSet::new();
    let mut stack: Vec<usize> = layout
        .inner_lip_loop
        .iter()
        .flat_map(|&v| neighbours[v].iter().copied())
        .collect();
    while let Some(v) = stack.pop() {
        if free.contains(&v) && band.insert(v) {
            stack.extend(neighbours[v].iter().copied());
        }
    }
    let outside: BTreeSet<usize> = free.difference(&band).copied().collect();
    let mut fences: Vec<Fence> = layout
        .eyes
        .iter()
        .map(|&ellipse| Fence {
            ellipse,
            grow: 3.0,
            keep_out: true,
            members: free.clone(),
        })
        .collect();
    fences.push(Fence {
        ellipse: layout.lips_outer,
        grow: 3.0,
        keep_out: true,
        members: outside,
    });
    fences.push(Fence {
        ellipse: layout.lips_outer,
        grow: -1.5,
        keep_out: false,
        members: band.clone(),
    });
    fences.push(Fence {
        ellipse: layout.lips_inner,
        grow: 3.0,
        keep_out: true,
        members: band,
    });
    fences
}

/// Harmonic interpolation on the tessellation: every free vertex ends at the mean of its
/// neighbours, moved back behind its fences (projected Gauss–Seidel to convergence).
fn harmonic(
    neighbours: &[BTreeSet<usize>],
    pins: &BTreeMap<usize, [f64; 2]>,
    fences: &[Fence],
) -> Vec<[f64; 2]> {
    let mut pos = vec![OVAL_CENTRE; MESH_POINTS];
    for (&v, &p) in pins {
        pos[v] = p;
    }
    for _ in 0..20_000 {
        let mut change: f64 = 0.0;
        for v in 0..MESH_POINTS {
            if pins.contains_key(&v) || neighbours[v].is_empty() {
                continue;
            }
            let n = neighbours[v].len() as f64;
            let mut p = [0.0; 2];
            for &w in &neighbours[v] {
                p[0] += pos[w][0] / n;
                p[1] += pos[w][1] / n;
            }
            for f in fences.iter().filter(|f| f.members.contains(&v)) {
                p = f.ellipse.fence(p, f.grow, f.keep_out);
            }
            change = change.max((p[0] - pos[v][0]).abs() + (p[1] - pos[v][1]).abs());
            pos[v] = p;
        }
        if change < 1e-10 {
            break;
        }
    }
    pos
}

/// Depth of the face surface at a canvas position: an ellipsoid, a nose ridge and sunken eyes.
pub(super) fn depth(x: f64, y: f64) -> f64 {
    let [cx, cy] = OVAL_CENTRE;
    let nx = (x - cx) / OVAL_HALF_WIDTH;
    let ny = (y - cy) / if y < cy { OVAL_TOP } else { OVAL_BOTTOM };
    let shell = (1.0 - nx * nx - ny * ny).max(0.0).sqrt();
    let gauss = |dx: f64, dy: f64, sx: f64, sy: f64| (-(dx / sx).powi(2) - (dy / sy).powi(2)).exp();
    let nose = 34.0 * gauss(x - 256.0, y - 262.0, 14.0, 34.0);
    let eyes =
        14.0 * (gauss(x - 200.0, y - 192.0, 26.0, 14.0) + gauss(x - 312.0, y - 192.0, 26.0, 14.0));
    8.0 + 150.0 * shell + nose - eyes
}

impl SyntheticSubject {
    /// Builds the subject from the mesh topology of `tables`.
    ///
    /// # Errors
    /// When the tables lack a contour or landmark of the MediaPipe face mesh.
    pub fn build(tables: &Tables) -> Result<SyntheticSubject, SyntheticError> {
        let layout = layout(tables)?;
        let neighbours = neighbours(tables);
        let xy = harmonic(&neighbours, &layout.pins, &fences(&layout, &neighbours));
        let mut template: Vec<[f64; 3]> = xy.iter().map(|&[x, y]| [x, y, depth(x, y)]).collect();

        // Irises: a centre and a ring of four, radius 8, in each eye.
        for (centre, eye) in [(lm::R_IRIS, lm::R_EYE), (lm::L_IRIS, lm::L_EYE)] {
            let c = [
                (xy[eye[0]][0] + xy[eye[1]][0]) / 2.0,
                (xy[eye[0]][1] + xy[eye[1]][1]) / 2.0 - 1.0,
            ];
            debug_assert_eq!(template.len(), centre);
            template.push([c[0], c[1], depth(c[0], c[1]) + 4.0]);
            for k in 0..4 {
                let a = std::f64::consts::FRAC_PI_2 * k as f64;
                let (x, y) = (c[0] + 8.0 * a.cos(), c[1] + 8.0 * a.sin());
                template.push([x, y, depth(x, y) + 2.0]);
            }
        }
        debug_assert_eq!(template.len(), FACE_POINTS);

        // Shoulders: from the image edge up to the neck, and mirrored out again.
        let left: Vec<[f64; 3]> = (0..9)
            .map(|i| {
                let u = i as f64 / 8.0;
                [10.0 + 192.0 * u, 486.0 - 56.0 * u - 26.0 * u.powi(4), 125.0]
            })
            .collect();
        let mut shoulders = left.clone();
        shoulders.extend(left.iter().rev().map(|p| [512.0 - p[0], p[1], p[2]]));
        debug_assert_eq!(shoulders.len(), SHOULDER_POINTS);

        Ok(SyntheticSubject {
            template,
            shoulders,
            headmotion: [0.0, 0.0, 0.0, CENTRE[0], CENTRE[1], CENTRE[2], 1.0],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> (Tables, SyntheticSubject) {
        let tables = Tables::official().expect("official tables");
        let s = SyntheticSubject::build(&tables).expect("synthetic subject");
        (tables, s)
    }

    /// Whether segments ab and cd cross at a point interior to both.
    fn cross(a: [f64; 3], b: [f64; 3], c: [f64; 3], d: [f64; 3]) -> bool {
        let orient = |p: [f64; 3], q: [f64; 3], r: [f64; 3]| {
            (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])
        };
        let (o1, o2) = (orient(a, b, c), orient(a, b, d));
        let (o3, o4) = (orient(c, d, a), orient(c, d, b));
        o1 * o2 < -1e-9 && o3 * o4 < -1e-9
    }

    #[test]
    fn no_two_tessellation_edges_cross() {
        let (tables, s) = subject();
        let edges: Vec<(usize, usize)> = tables
            .tessellation
            .edges
            .iter()
            .map(|e| (e.a as usize, e.b as usize))
            .collect();
        let t = &s.template;
        let mut crossings = Vec::new();
        for (i, &(a, b)) in edges.iter().enumerate() {
            for &(c, d) in &edges[i + 1..] {
                if a != c && a != d && b != c && b != d && cross(t[a], t[b], t[c], t[d]) {
                    crossings.push((a, b, c, d));
                }
            }
        }
        assert!(
            crossings.is_empty(),
            "{} crossings: {:?}",
            crossings.len(),
            &crossings[..crossings.len().min(10)]
        );
    }

    #[test]
    fn features_sit_in_face_order_inside_the_canvas() {
        let (_, s) = subject();
        let t = &s.template;
        assert_eq!(t.len(), FACE_POINTS);
        assert_eq!(s.shoulders.len(), SHOULDER_POINTS);
        for p in t.iter().chain(&s.shoulders) {
            assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
            assert!(
                (0.0..512.0).contains(&p[0]) && (0.0..512.0).contains(&p[1]),
                "{p:?}"
            );
        }
        let y = |v: usize| t[v][1];
        // Top to bottom: forehead, brows, eyes, nose tip, lips, chin.
        assert!(y(lm::FOREHEAD_TOP) < y(105) && y(105) < y(159));
        assert!(y(159) < y(lm::NOSE_TIP) && y(lm::NOSE_TIP) < y(0));
        assert!(y(0) < y(17) && y(17) < y(lm::CHIN));
        // Image left holds the subject's right eye; each iris centre lies between its eye's
        // corners, and the nose tip is the nearest point to the viewer.
        for (iris, [a, b, _]) in [(lm::R_IRIS, lm::R_EYE), (lm::L_IRIS, lm::L_EYE)] {
            let (lo, hi) = (t[a][0].min(t[b][0]), t[a][0].max(t[b][0]));
            assert!(lo < t[iris][0] && t[iris][0] < hi, "iris {iris}");
        }
        assert!(t[lm::R_EYE[0]][0] < t[lm::L_EYE[1]][0]);
        let nearest = (0..MESH_POINTS)
            .max_by(|&a, &b| t[a][2].total_cmp(&t[b][2]))
            .expect("points");
        assert!((t[nearest][0] - 256.0).abs() < 8.0 && (t[nearest][1] - 266.0).abs() < 20.0);
    }

    #[test]
    fn the_rest_pose_draws_the_template_where_it_is() {
        let (_, s) = subject();
        let pose = crate::face::pose::HeadPose::from_params(&s.headmotion);
        for p in &s.template {
            let [x, y] = pose.project(*p);
            assert!((x - p[0]).abs() < 1e-9 && (y - p[1]).abs() < 1e-9);
        }
    }

    #[test]
    fn missing_contours_are_an_error_not_a_panic() {
        let mut tables = Tables::official().expect("official tables");
        tables.contours.edges.retain(|e| e.a != 61 && e.b != 61);
        let err = SyntheticSubject::build(&tables).expect_err("the lip contour is broken");
        assert!(err.to_string().contains("MediaPipe topology"), "{err}");
    }
}
