//! numpy's pairwise summation (`np.add.reduce` on a contiguous array), reproduced operation
//! for operation so that reductions match the reference bit for bit: blocks of at most 128
//! elements are summed with eight interleaved accumulators, longer runs are split in two
//! halves (the first a multiple of 8 long) and the halves' sums added, all in the element type.

use std::ops::{Add, AddAssign};

/// The float types numpy reduces (float32 and float64).
pub trait NumpyFloat: Copy + Add<Output = Self> + AddAssign {
    const ZERO: Self;
    const NEG_ZERO: Self;
}

impl NumpyFloat for f32 {
    const ZERO: f32 = 0.0;
    const NEG_ZERO: f32 = -0.0;
}

impl NumpyFloat for f64 {
    const ZERO: f64 = 0.0;
    const NEG_ZERO: f64 = -0.0;
}

/// `np.add.reduce(x)`: the reduction starts from the identity 0 and adds the pairwise sum.
pub fn pairwise_sum<T: NumpyFloat>(x: &[T]) -> T {
    T::ZERO + pairwise(x)
}

fn pairwise<T: NumpyFloat>(x: &[T]) -> T {
    let n = x.len();
    if n < 8 {
        // numpy starts this short loop at -0.0 so that a sum of -0.0 stays -0.0.
        x.iter().fold(T::NEG_ZERO, |acc, &v| acc + v)
    } else if n <= 128 {
        let mut r = [T::ZERO; 8];
        r.copy_from_slice(&x[..8]);
        let full = n - n % 8;
        for block in x[8..full].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &x[full..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise(&x[..n2]) + pairwise(&x[n2..])
    }
}
