//! The checkpoint reader on synthetic torch zips (written here with a hand-assembled pickle):
//! `module.` stripping, dtypes, storage views, and every error path.

mod common;

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use moda_edge::model::{load_checkpoint, load_reference_image, CheckpointError, TensorData};

use common::golden;

/// A tensor entry for [`state_dict_pickle`]: rebuild args as torch writes them.
struct Entry<'a> {
    key: &'a str,
    storage_type: &'a str,
    storage_key: &'a str,
    storage_numel: u32,
    offset: u32,
    shape: &'a [u32],
    stride: &'a [u32],
}

fn ustr(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn int_tuple(out: &mut Vec<u8>, v: &[u32]) {
    out.push(b'(');
    for &x in v {
        out.push(b'J');
        out.extend(x.to_le_bytes());
    }
    out.push(b't');
}

/// The pickle torch.save writes for an OrderedDict state_dict (protocol 2, with `_metadata`).
fn state_dict_pickle(entries: &[Entry]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'c'];
    p.extend(b"collections\nOrderedDict\n");
    p.extend([b'q', 0, b')', b'R', b'q', 1, b'(']);
    for e in entries {
        ustr(&mut p, e.key);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        ustr(&mut p, "storage");
        p.extend(format!("ctorch\n{}\n", e.storage_type).as_bytes());
        ustr(&mut p, e.storage_key);
        ustr(&mut p, "cpu");
        p.push(b'J');
        p.extend(e.storage_numel.to_le_bytes());
        p.extend([b't', b'Q', b'J']);
        p.extend(e.offset.to_le_bytes());
        int_tuple(&mut p, e.shape);
        int_tuple(&mut p, e.stride);
        p.extend([0x89, b'h', 0, b')', b'R', b't', b'R']);
    }
    p.extend([b'u', b'}']);
    ustr(&mut p, "_metadata");
    p.extend([b'h', 0, b')', b'R', b's', b'b', b'.']);
    p
}

/// Writes a stored (uncompressed) zip with the given records.
fn write_zip(dir: &Path, name: &str, records: &[(&str, &[u8])]) -> PathBuf {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (rec, data) in records {
        zip.start_file(*rec, opts).unwrap();
        zip.write_all(data).unwrap();
    }
    let path = dir.join(name);
    std::fs::write(&path, zip.finish().unwrap().into_inner()).unwrap();
    path
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A checkpoint with `module.` keys, a shared storage at an offset, and every supported dtype.
fn synthetic(dir: &Path, name: &str) -> PathBuf {
    let entries = [
        Entry {
            key: "module.a.weight",
            storage_type: "FloatStorage",
            storage_key: "0",
            storage_numel: 8,
            offset: 0,
            shape: &[2, 3],
            stride: &[3, 1],
        },
        Entry {
            key: "module.a.bias",
            storage_type: "FloatStorage",
            storage_key: "0",
            storage_numel: 8,
            offset: 6,
            shape: &[2],
            stride: &[1],
        },
        Entry {
            key: "module.bn.num_batches_tracked",
            storage_type: "LongStorage",
            storage_key: "1",
            storage_numel: 1,
            offset: 0,
            shape: &[],
            stride: &[],
        },
        Entry {
            key: "mask",
            storage_type: "BoolStorage",
            storage_key: "2",
            storage_numel: 3,
            offset: 0,
            shape: &[1, 3],
            stride: &[7, 1],
        },
        Entry {
            key: "module.d",
            storage_type: "DoubleStorage",
            storage_key: "3",
            storage_numel: 2,
            offset: 1,
            shape: &[1],
            stride: &[1],
        },
        Entry {
            key: "u",
            storage_type: "ByteStorage",
            storage_key: "4",
            storage_numel: 2,
            offset: 0,
            shape: &[2],
            stride: &[1],
        },
    ];
    let pkl = state_dict_pickle(&entries);
    let f = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -1.0, -2.0]);
    let d: Vec<u8> = [0.5f64, 2.25]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_zip(
        dir,
        name,
        &[
            ("ck/data.pkl", &pkl),
            ("ck/byteorder", b"little"),
            ("ck/data/0", &f),
            ("ck/data/1", &41i64.to_le_bytes()),
            ("ck/data/2", &[1, 0, 1]),
            ("ck/data/3", &d),
            ("ck/data/4", &[7, 200]),
            ("ck/version", b"3\n"),
        ],
    )
}

#[test]
fn synthetic_checkpoint_strips_module_prefix_and_reads_views() {
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic(dir.path(), "synthetic.pth");
    let ckpt = load_checkpoint(&path).unwrap();
    let keys: Vec<&str> = ckpt.tensors.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "a.bias",
            "a.weight",
            "bn.num_batches_tracked",
            "d",
            "mask",
            "u"
        ]
    );
    assert_eq!(ckpt.get("a.weight").unwrap().shape, [2, 3]);
    assert_eq!(ckpt.f32("a.weight"), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(ckpt.f32("a.bias"), [-1.0, -2.0]);
    assert_eq!(
        ckpt.get("bn.num_batches_tracked").unwrap().data,
        TensorData::I64(vec![41])
    );
    assert!(ckpt.get("bn.num_batches_tracked").unwrap().shape.is_empty());
    assert_eq!(
        ckpt.get("mask").unwrap().data,
        TensorData::Bool(vec![true, false, true])
    );
    assert_eq!(ckpt.get("d").unwrap().data, TensorData::F64(vec![2.25]));
    assert_eq!(ckpt.get("u").unwrap().data, TensorData::U8(vec![7, 200]));
    assert_eq!(ckpt.sha256.len(), 64);
}

/// The error's message, checked to name the file.
fn message_naming(err: CheckpointError, path: &Path) -> String {
    let msg = err.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(msg.contains(name), "message does not name {name}: {msg}");
    msg
}

#[test]
fn truncated_golden_checkpoint_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(golden("faco/checkpoint.pkl")).unwrap();
    let path = dir.path().join("half_faco.pkl");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    let msg = message_naming(err, &path);
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn non_zip_files_are_not_torch() {
    let dir = tempfile::tempdir().unwrap();
    let npy = golden("faco/input_lip.npy");
    let err = load_checkpoint(&npy).unwrap_err();
    assert!(matches!(err, CheckpointError::NotTorch { .. }), "{err:?}");
    assert!(message_naming(err, &npy).contains("NumPy"));

    for (name, content) in [
        ("notes.txt", &b"hello, not a checkpoint\n"[..]),
        ("empty.pth", b""),
        ("legacy.pth", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = load_checkpoint(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::NotTorch { .. }),
            "{name}: {err:?}"
        );
        let msg = message_naming(err, &path);
        assert!(msg.contains("torch.save"), "{msg}");
    }

    let missing = dir.path().join("missing.pth");
    let err = load_checkpoint(&missing).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err:?}");
    message_naming(err, &missing);
}

#[test]
fn zip_without_data_pkl_is_not_torch() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_zip(
        dir.path(),
        "plain.zip",
        &[("ck/readme.txt", b"hi"), ("ck/data/0", &[0; 4])],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::NotTorch { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("data.pkl"));
}

/// A one-tensor checkpoint whose pickle and records are given.
fn one_tensor(dir: &Path, name: &str, entry: &Entry, records: &[(&str, &[u8])]) -> PathBuf {
    let pkl = state_dict_pickle(std::slice::from_ref(entry));
    let mut all: Vec<(&str, &[u8])> = vec![("ck/data.pkl", &pkl)];
    all.extend_from_slice(records);
    write_zip(dir, name, &all)
}

fn entry<'a>(storage_type: &'a str, shape: &'a [u32], stride: &'a [u32]) -> Entry<'a> {
    Entry {
        key: "w",
        storage_type,
        storage_key: "0",
        storage_numel: 6,
        offset: 0,
        shape,
        stride,
    }
}

#[test]
fn short_or_missing_record_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let four = f32_bytes(&[1.0; 4]);
    let path = one_tensor(
        dir.path(),
        "short.pth",
        &entry("FloatStorage", &[2, 3], &[3, 1]),
        &[("ck/data/0", &four)],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    let msg = message_naming(err, &path);
    assert!(msg.contains("ck/data/0") && msg.contains("`w`"), "{msg}");

    let path = one_tensor(
        dir.path(),
        "norecord.pth",
        &entry("FloatStorage", &[2, 3], &[3, 1]),
        &[],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("missing"));

    // The view reaches past the storage it names.
    let six = f32_bytes(&[1.0; 6]);
    let e = Entry {
        offset: 2,
        ..entry("FloatStorage", &[2, 3], &[3, 1])
    };
    let path = one_tensor(dir.path(), "overrun.pth", &e, &[("ck/data/0", &six)]);
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    message_naming(err, &path);
}

#[test]
fn unsupported_dtype_and_non_contiguous_views_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let six = f32_bytes(&[1.0; 6]);
    let path = one_tensor(
        dir.path(),
        "transposed.pth",
        &entry("FloatStorage", &[3, 2], &[1, 3]),
        &[("ck/data/0", &six)],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::WrongKind { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("contiguous"));

    let path = one_tensor(
        dir.path(),
        "half.pth",
        &entry("HalfStorage", &[6], &[1]),
        &[("ck/data/0", &six)],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::WrongKind { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("HalfStorage"));
}

#[test]
fn pickles_that_are_not_state_dicts_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    // A list at top level.
    let path = write_zip(
        dir.path(),
        "list.pth",
        &[("ck/data.pkl", &[0x80, 2, b']', b'.'])],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::NotTorch { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("state_dict"));
    // A dict whose value is an int (e.g. an `epoch` entry of a wrapper dict).
    let mut p = vec![0x80, 2, b'}', b'('];
    ustr(&mut p, "epoch");
    p.extend([b'K', 3, b'u', b'.']);
    let path = write_zip(dir.path(), "wrapper.pth", &[("ck/data.pkl", &p)]);
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::NotTorch { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("`epoch`"));
    // A pickle cut short.
    let path = write_zip(dir.path(), "cut.pth", &[("ck/data.pkl", &[0x80, 2, b'}'])]);
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    message_naming(err, &path);
    // Two keys that collide once `module.` is stripped.
    let e = entry("FloatStorage", &[6], &[1]);
    let pkl = state_dict_pickle(&[
        Entry {
            key: "module.w",
            ..e
        },
        Entry {
            key: "w",
            ..entry("FloatStorage", &[6], &[1])
        },
    ]);
    let six = f32_bytes(&[1.0; 6]);
    let path = write_zip(
        dir.path(),
        "dup.pth",
        &[("ck/data.pkl", &pkl), ("ck/data/0", &six)],
    );
    let err = load_checkpoint(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::Corrupt { .. }), "{err:?}");
    message_naming(err, &path);
}

#[test]
fn reference_loader_rejects_a_checkpoint() {
    let path = golden("faco/checkpoint.pkl");
    let err = load_reference_image(&path).unwrap_err();
    assert!(matches!(err, CheckpointError::WrongKind { .. }), "{err:?}");
    assert!(message_naming(err, &path).contains("examples"));
}
