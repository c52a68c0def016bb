//! NumPy arrays pickled inline: `numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")` followed
//! by `BUILD` with the state `(version, shape, dtype, is_fortran, raw bytes)`, where the dtype is
//! itself `numpy.dtype("u1", False, True)` with a `BUILD` state `(3, "|", ...)`.

use crate::model::pickle::Value;

/// The parts of a pickled array that matter for reading its bytes.
pub(super) struct NdArray<'a> {
    pub shape: Vec<usize>,
    /// dtype string as pickled, e.g. `u1`, `f4`.
    pub descr: &'a str,
    pub fortran: bool,
    pub data: &'a [u8],
}

impl<'a> NdArray<'a> {
    /// Recognises a pickled array. The error completes the sentence "examples[0] …".
    pub fn from_value(v: &'a Value) -> Result<Self, String> {
        let is_reconstruct = matches!(
            v.constructor(),
            Some((
                "numpy.core.multiarray" | "numpy._core.multiarray",
                "_reconstruct"
            ))
        );
        let state = match v {
            Value::Object {
                state: Some(state), ..
            } if is_reconstruct => state,
            _ => return Err(format!("is {}, expected a NumPy array", v.describe())),
        };
        // Version 1 states lead with the version number; version 0 states omit it.
        let parts = match state.as_seq() {
            Some([Value::Int(_), shape, dtype, fortran, data]) => [shape, dtype, fortran, data],
            Some([shape, dtype, fortran, data]) => [shape, dtype, fortran, data],
            _ => {
                return Err(format!(
                    "has {} as its array state, expected (version, shape, dtype, fortran, data)",
                    state.describe()
                ))
            }
        };
        let [shape, dtype, fortran, data] = parts;
        let shape = shape
            .as_seq()
            .and_then(|s| {
                s.iter()
                    .map(|d| d.as_int().and_then(|i| usize::try_from(i).ok()))
                    .collect()
            })
            .ok_or_else(|| {
                format!(
                    "has {} as its shape, expected a tuple of sizes",
                    shape.describe()
                )
            })?;
        let descr = match (dtype.constructor(), dtype) {
            (Some(("numpy", "dtype")), Value::Object { args, .. }) => args
                .as_seq()
                .and_then(|a| a.first())
                .and_then(Value::as_str),
            _ => None,
        };
        let descr = descr.ok_or_else(|| {
            format!(
                "has {} as its dtype, expected numpy.dtype",
                dtype.describe()
            )
        })?;
        let Value::Bool(fortran) = *fortran else {
            return Err(format!(
                "has {} as its Fortran flag, expected a bool",
                fortran.describe()
            ));
        };
        let Value::Bytes(data) = data else {
            return Err(format!(
                "holds {}, expected raw bytes (an object array?)",
                data.describe()
            ));
        };
        Ok(NdArray {
            shape,
            descr,
            fortran,
            data,
        })
    }

    /// `(height, width, rgb)` of a C-ordered uint8 (height, width, 3) array.
    pub fn into_rgb8(self) -> Result<(usize, usize, Vec<u8>), String> {
        if !matches!(self.descr, "u1" | "|u1" | "uint8") {
            return Err(format!(
                "has dtype {:?}, expected uint8 (\"u1\")",
                self.descr
            ));
        }
        let &[h, w, 3] = self.shape.as_slice() else {
            return Err(format!(
                "has shape {:?}, expected (height, width, 3)",
                self.shape
            ));
        };
        if self.fortran && h > 1 && w > 1 {
            return Err("is stored in Fortran order, expected C order".into());
        }
        let n = h.checked_mul(w).and_then(|p| p.checked_mul(3));
        if n != Some(self.data.len()) || h == 0 || w == 0 {
            return Err(format!(
                "has {} data bytes for shape ({h}, {w}, 3)",
                self.data.len()
            ));
        }
        Ok((h, w, self.data.to_vec()))
    }
}
