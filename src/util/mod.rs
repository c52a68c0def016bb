pub mod npy;
