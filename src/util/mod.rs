pub mod npy;
pub mod numpy_sum;
