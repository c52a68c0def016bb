//! MODA landmark groups and drawing tables (`reference/moda_tables.json`, embedded in the binary).
//!
//! Index lists select MediaPipe face-mesh vertices (0–477); edge lists are kept in the official
//! drawing order (CPython frozenset iteration order), which decides which colour wins where
//! lines overlap. Colours are (B, G, R) as drawn on the canvas.

use serde::Deserialize;

/// Number of MediaPipe face-mesh vertices (468 mesh points + 10 iris points).
pub const FACE_POINTS: usize = 478;
/// Number of shoulder points (9 left polyline + 9 right).
pub const SHOULDER_POINTS: usize = 18;

/// The official tables, as shipped with the crate.
const OFFICIAL_JSON: &str = include_str!("moda_tables.json");

/// A (B, G, R) colour.
pub type Bgr = [u8; 3];

/// Errors of the table loader.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error("moda_tables.json is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("moda_tables.json key {key}: index {index} is out of range (expected < {limit})")]
    Index {
        key: &'static str,
        index: usize,
        limit: usize,
    },
    #[error(
        "moda_tables.json key {key}: thickness {thickness} is out of range (expected 1..=32767)"
    )]
    Thickness { key: &'static str, thickness: i32 },
}

/// One line segment between two points, with its colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub a: u16,
    pub b: u16,
    pub color: Bgr,
}

/// A group of segments drawn with one thickness, in drawing order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeGroup {
    pub thickness: i32,
    pub edges: Vec<Edge>,
}

/// All MODA tables: landmark groups and the condition-image drawing recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tables {
    /// The 40 lip vertices, in MODA's lip-stream order.
    pub lip_indices: Vec<usize>,
    /// The 60 eye/brow/iris vertices, group-concatenated (not globally sorted).
    pub eye_indices: Vec<usize>,
    /// The 376 non-semantic vertices re-smoothed with σ 5 after FaCo.
    pub non_semantic_indices: Vec<usize>,
    /// 2556 tessellation edges, thickness 1.
    pub tessellation: EdgeGroup,
    /// 124 contour edges (lips, oval, eyes, brows), thickness 2.
    pub contours: EdgeGroup,
    /// 8 iris edges, thickness 2.
    pub irises: EdgeGroup,
    /// Shoulder polylines (point indices 0–17), drawn last.
    pub shoulder_polylines: Vec<Vec<usize>>,
    pub shoulder_color: Bgr,
    pub shoulder_thickness: i32,
}

#[derive(Deserialize)]
struct RawTables {
    lip_indices: Vec<usize>,
    eye_indices: Vec<usize>,
    non_semantic_indices_smoothed_sigma5: Vec<usize>,
    tessellation: RawUniform,
    contours: RawColoured,
    irises: RawColoured,
    shoulder: RawShoulder,
}

#[derive(Deserialize)]
struct RawUniform {
    color_bgr: Bgr,
    thickness: i32,
    edges: Vec<(usize, usize)>,
}

#[derive(Deserialize)]
struct RawColoured {
    thickness: i32,
    edges: Vec<(usize, usize, Bgr)>,
}

#[derive(Deserialize)]
struct RawShoulder {
    color_bgr: Bgr,
    thickness: i32,
    polylines: Vec<Vec<usize>>,
}

fn check_indices(key: &'static str, v: &[usize], limit: usize) -> Result<(), TablesError> {
    match v.iter().find(|&&i| i >= limit) {
        Some(&index) => Err(TablesError::Index { key, index, limit }),
        None => Ok(()),
    }
}

fn check_thickness(key: &'static str, thickness: i32) -> Result<i32, TablesError> {
    if (1..=32767).contains(&thickness) {
        Ok(thickness)
    } else {
        Err(TablesError::Thickness { key, thickness })
    }
}

fn edge(key: &'static str, a: usize, b: usize, color: Bgr) -> Result<Edge, TablesError> {
    check_indices(key, &[a, b], FACE_POINTS)?;
    // Both are < 478, so they fit in u16.
    Ok(Edge {
        a: a as u16,
        b: b as u16,
        color,
    })
}

fn coloured(key: &'static str, raw: RawColoured) -> Result<EdgeGroup, TablesError> {
    Ok(EdgeGroup {
        thickness: check_thickness(key, raw.thickness)?,
        edges: raw
            .edges
            .into_iter()
            .map(|(a, b, c)| edge(key, a, b, c))
            .collect::<Result<_, _>>()?,
    })
}

impl Tables {
    /// The official tables embedded in the crate.
    ///
    /// # Errors
    /// Never for the shipped file; the `Result` covers the validation shared with [`Tables::parse`].
    pub fn official() -> Result<Tables, TablesError> {
        Tables::parse(OFFICIAL_JSON)
    }

    /// Parses and validates a `moda_tables.json` document.
    ///
    /// # Errors
    /// When the JSON does not have the expected keys and types, an index is out of range
    /// (face ≥ 478, shoulder ≥ 18) or a thickness is outside 1..=32767.
    pub fn parse(json: &str) -> Result<Tables, TablesError> {
        let raw: RawTables = serde_json::from_str(json)?;
        check_indices("lip_indices", &raw.lip_indices, FACE_POINTS)?;
        check_indices("eye_indices", &raw.eye_indices, FACE_POINTS)?;
        check_indices(
            "non_semantic_indices_smoothed_sigma5",
            &raw.non_semantic_indices_smoothed_sigma5,
            FACE_POINTS,
        )?;
        for line in &raw.shoulder.polylines {
            check_indices("shoulder.polylines", line, SHOULDER_POINTS)?;
        }
        let tess = raw.tessellation;
        let color = tess.color_bgr;
        Ok(Tables {
            lip_indices: raw.lip_indices,
            eye_indices: raw.eye_indices,
            non_semantic_indices: raw.non_semantic_indices_smoothed_sigma5,
            tessellation: EdgeGroup {
                thickness: check_thickness("tessellation.thickness", tess.thickness)?,
                edges: tess
                    .edges
                    .into_iter()
                    .map(|(a, b)| edge("tessellation.edges", a, b, color))
                    .collect::<Result<_, _>>()?,
            },
            contours: coloured("contours", raw.contours)?,
            irises: coloured("irises", raw.irises)?,
            shoulder_polylines: raw.shoulder.polylines,
            shoulder_color: raw.shoulder.color_bgr,
            shoulder_thickness: check_thickness("shoulder.thickness", raw.shoulder.thickness)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_tables_have_the_documented_sizes_and_order() {
        let t = Tables::official().unwrap();
        assert_eq!(t.lip_indices.len(), 40);
        assert_eq!(t.eye_indices.len(), 60);
        assert_eq!(t.non_semantic_indices.len(), 376);
        assert_eq!(t.tessellation.edges.len(), 2556);
        assert_eq!(t.tessellation.thickness, 1);
        assert_eq!(t.contours.edges.len(), 124);
        assert_eq!(t.contours.thickness, 2);
        assert_eq!(t.irises.edges.len(), 8);
        assert_eq!(
            t.shoulder_polylines,
            vec![(0..9).collect::<Vec<_>>(), (9..18).collect()]
        );
        assert_eq!(t.shoulder_color, [225, 225, 225]);
        // First entries in frozenset order, as listed in the JSON.
        assert_eq!(
            t.tessellation.edges[0],
            Edge {
                a: 18,
                b: 17,
                color: [128, 128, 128]
            }
        );
        assert_eq!(
            t.contours.edges[0],
            Edge {
                a: 270,
                b: 409,
                color: [224, 224, 224]
            }
        );
        assert_eq!(
            t.irises.edges[0],
            Edge {
                a: 475,
                b: 476,
                color: [48, 255, 48]
            }
        );
        assert_eq!(&t.eye_indices[..3], &[474, 475, 476]);
    }

    #[test]
    fn rejects_out_of_range_indices() {
        let json = OFFICIAL_JSON.replacen("\"lip_indices\":[0,", "\"lip_indices\":[478,", 1);
        assert_ne!(json, OFFICIAL_JSON);
        assert!(matches!(
            Tables::parse(&json),
            Err(TablesError::Index {
                key: "lip_indices",
                index: 478,
                ..
            })
        ));
        let bad = r#"{"lip_indices":[],"eye_indices":[],"non_semantic_indices_smoothed_sigma5":[],
            "tessellation":{"color_bgr":[1,2,3],"thickness":1,"edges":[[0,478]]},
            "contours":{"thickness":2,"edges":[]},"irises":{"thickness":2,"edges":[]},
            "shoulder":{"color_bgr":[1,1,1],"thickness":2,"polylines":[]}}"#;
        let err = Tables::parse(bad).unwrap_err();
        assert!(err.to_string().contains("tessellation.edges"), "{err}");
    }
}
