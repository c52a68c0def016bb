//! AFL++ target: `cargo afl fuzz ... target/release/fuzz_npy` (see fuzz/ci.sh).
fn main() {
    afl::fuzz!(|data: &[u8]| moda_edge_fuzz::targets::npy_file(data));
}
