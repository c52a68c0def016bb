//! Crafted `torch.save` zips and pickles: claimed sizes and counts cannot make the reader
//! allocate gigabytes or run for minutes, and every error is one line naming the file.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{state_dict_pickle, torch_zip, TorchEntry};
use moda_edge::model::{load_checkpoint, load_reference_image, CheckpointError};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Loads `path` as a checkpoint and returns the message, checked to come fast, be one line,
/// name the file and read as English.
fn refused(path: &Path) -> String {
    let t0 = Instant::now();
    let err = load_checkpoint(path).expect_err("a hostile checkpoint");
    let took = t0.elapsed();
    let msg = err.to_string();
    assert!(took < Duration::from_secs(10), "took {took:?}: {msg}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name) && !msg.contains('\n'), "{msg}");
    for jargon in ["holds a object", "a int", "size tuple", "holds a dict of"] {
        assert!(!msg.contains(jargon), "{msg}");
    }
    msg
}

fn entry<'a>(key: &'a str, numel: u32, shape: &'a [u32], stride: &'a [u32]) -> TorchEntry<'a> {
    TorchEntry {
        key,
        storage_type: "FloatStorage",
        storage_key: "0",
        storage_numel: numel,
        offset: 0,
        shape,
        stride,
    }
}

#[test]
fn a_deflate_bomb_storage_is_refused_before_inflating() {
    // 64 MiB of zeros deflate to about 64 KiB: far beyond 4 × the file size.
    let n = 16u32 << 20;
    let pkl = state_dict_pickle(&[entry("w", n, &[n], &[1])]);
    let zeros = vec![0u8; 64 << 20];
    let bytes = torch_zip(&[("ck/data.pkl", &pkl), ("ck/data/0", &zeros)], true);
    drop(zeros);
    assert!(bytes.len() < 1 << 20, "{}", bytes.len());
    let dir = tempfile::tempdir().unwrap();
    let msg = refused(&write(dir.path(), "bomb.pth", &bytes));
    assert!(msg.contains("`w`") && msg.contains("4 × its size"), "{msg}");
}

#[test]
fn many_views_of_one_storage_cannot_multiply_the_file() {
    // One 1 MiB storage seen whole by 500 tensors would decode 500 MiB.
    let n = 1u32 << 18;
    let keys: Vec<String> = (0..500).map(|i| format!("layer{i}.weight")).collect();
    let shape = [n];
    let entries: Vec<TorchEntry> = keys.iter().map(|k| entry(k, n, &shape, &[1])).collect();
    let pkl = state_dict_pickle(&entries);
    let data = vec![0u8; 4 << 18];
    let bytes = torch_zip(&[("ck/data.pkl", &pkl), ("ck/data/0", &data)], false);
    let dir = tempfile::tempdir().unwrap();
    let msg = refused(&write(dir.path(), "views.pth", &bytes));
    assert!(msg.contains("beyond what a checkpoint"), "{msg}");
    // Two tensors sharing it (tied weights) are fine.
    let pkl = state_dict_pickle(&entries[..2]);
    let bytes = torch_zip(&[("ck/data.pkl", &pkl), ("ck/data/0", &data)], false);
    let ck = load_checkpoint(&write(dir.path(), "tied.pth", &bytes)).unwrap();
    assert_eq!(ck.tensors.len(), 2);
}

#[test]
fn claimed_sizes_beyond_the_records_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = [0u8; 16];
    for (name, e, expect) in [
        (
            "negative.pth",
            entry("w", u32::MAX, &[4], &[1]),
            "has an int (-1) as its storage size",
        ),
        (
            "numel.pth",
            entry("w", i32::MAX as u32, &[4], &[1]),
            "would read 8589934588 more bytes",
        ),
        (
            "shape.pth",
            entry("w", 4, &[65_536, 65_536, 65_536, 65_536], &[0, 0, 0, 1]),
            "impossible size",
        ),
        (
            "view.pth",
            entry("w", 4, &[5], &[1]),
            "does not fit its storage",
        ),
        ("stride.pth", entry("w", 4, &[2, 2], &[1, 2]), "contiguous"),
    ] {
        let pkl = state_dict_pickle(&[e]);
        let bytes = torch_zip(&[("ck/data.pkl", &pkl), ("ck/data/0", &data)], false);
        let msg = refused(&write(dir.path(), name, &bytes));
        assert!(msg.contains(expect), "{name}: {msg}");
    }
}

#[test]
fn pickle_bombs_hit_the_budgets() {
    // l0 = []; l(i+1) = (l(i), l(i)), 40 times: 2^40 values if copied naively.
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for i in 0..40u8 {
        p.extend([b'h', i, b'h', i, 0x86, b'q', i + 1, b'0']);
    }
    p.extend([b'h', 40, b'.']);
    // A million empty lists on the stack.
    let mut wide = vec![0x80, 2, b'('];
    wide.extend(std::iter::repeat_n(b']', 3 << 20));
    wide.extend([b'l', b'.']);
    let dir = tempfile::tempdir().unwrap();
    for (name, pkl) in [("shared.pth", p), ("wide.pth", wide)] {
        let bytes = torch_zip(&[("ck/data.pkl", &pkl)], true);
        let msg = refused(&write(dir.path(), name, &bytes));
        assert!(msg.contains("exceeds the limit"), "{name}: {msg}");
    }
    // A data.pkl that inflates beyond the pickle limit is refused before it is read.
    let spaces = vec![b' '; 80 << 20];
    let bytes = torch_zip(&[("ck/data.pkl", &spaces)], true);
    drop(spaces);
    let msg = refused(&write(dir.path(), "bigpkl.pth", &bytes));
    assert!(msg.contains("more than"), "{msg}");
}

#[test]
fn messages_describe_what_was_found_in_english() {
    let dir = tempfile::tempdir().unwrap();
    // data.pkl holds an object (a torch.nn.Module pickled whole).
    let mut obj = vec![0x80, 2, b'c'];
    obj.extend(b"model\nNet\n)\x81.");
    let bytes = torch_zip(&[("ck/data.pkl", &obj)], false);
    let path = write(dir.path(), "module.pth", &bytes);
    let msg = refused(&path);
    assert!(msg.contains("holds an object built by model.Net"), "{msg}");
    let err = load_reference_image(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::WrongKind { .. }));
    assert!(err.to_string().contains("holds an object"), "{err}");
    // A size that is a tuple of two strings.
    let mut pkl = state_dict_pickle(&[entry("w", 4, &[4], &[1])]);
    let at = pkl
        .windows(6)
        .position(|w| w == [b'(', b'J', 4, 0, 0, 0])
        .unwrap();
    pkl.splice(at..at + 7, *b"(X\x01\x00\x00\x00aX\x01\x00\x00\x00bt");
    let bytes = torch_zip(&[("ck/data.pkl", &pkl), ("ck/data/0", &[0; 16])], false);
    let msg = refused(&write(dir.path(), "size.pth", &bytes));
    assert!(
        msg.contains("has a tuple of 2 items as its size, expected a tuple of non-negative ints"),
        "{msg}"
    );
}

#[test]
fn a_zip_directory_claiming_many_entries_is_an_error() {
    // Only an end-of-central-directory record, claiming 65535 entries at offset 0.
    let mut eocd = b"PK\x05\x06".to_vec();
    eocd.extend([0, 0, 0, 0]);
    eocd.extend(0xffffu16.to_le_bytes());
    eocd.extend(0xffffu16.to_le_bytes());
    eocd.extend(0xffff_fff0u32.to_le_bytes());
    eocd.extend(0u32.to_le_bytes());
    eocd.extend(0u16.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    refused(&write(dir.path(), "eocd.pth", &eocd));
}

/// Found by fuzzing (fuzz/regressions/torch_zip): zip record names, state_dict keys and pickled
/// global names are quoted in messages; a newline in them split the one-line error.
#[test]
fn names_from_the_file_are_quoted_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = state_dict_pickle(&[entry("w", 4, &[4], &[1])]);
    let data = [0u8; 16];
    // A record name with a newline, and no data.pkl: the message lists the names.
    let bytes = torch_zip(&[("ck/data\n.pkl", &pkl), ("ck/data/0", &data)], false);
    let msg = refused(&write(dir.path(), "names.pth", &bytes));
    assert!(msg.contains("ck/data\\n.pkl"), "{msg}");
    // A state_dict key with a newline.
    let pkl = state_dict_pickle(&[entry("layer\n1.weight", 4, &[4], &[1])]);
    let bytes = torch_zip(&[("ck/data.pkl", &pkl), ("ck/data/0", &data)], false);
    let msg = refused(&write(dir.path(), "key.pth", &bytes));
    assert!(
        msg.contains("layer\\n1.weight") && msg.contains("control character"),
        "{msg}"
    );
    // An object whose class name (STACK_GLOBAL from two strings) holds a newline.
    let mut obj = vec![
        0x80, 4, 0x8c, 1, b'm', 0x8c, 3, b'a', b'\n', b'b', 0x93, b')', 0x81, b'.',
    ];
    obj.shrink_to_fit();
    let bytes = torch_zip(&[("ck/data.pkl", &obj)], false);
    let msg = refused(&write(dir.path(), "global.pth", &bytes));
    assert!(msg.contains("an object built by m.a\\nb"), "{msg}");
    for f in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/torch_zip"))
            .unwrap()
    {
        let path = f.unwrap().path();
        refused(&path);
    }
}
