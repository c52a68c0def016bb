//! The CUDA C kernel sources.
