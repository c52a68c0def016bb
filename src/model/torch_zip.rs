//! The `torch.save` zip container (PyTorch 1.6 and later): `<stem>/data.pkl` is a pickle whose
//! tensors point, through persistent ids, at raw storage records `<stem>/data/<key>`.
//!
//! [`load_checkpoint`] reads an official state_dict checkpoint into a [`Checkpoint`];
//! [`load_reference_image`] reads the official `reference.pth`, a dict whose `examples` list
//! holds NumPy uint8 images pickled inline. Neither needs Python: the pickle is decoded by
//! [`super::pickle`], nothing in it is executed.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::result::ZipError;
use zip::ZipArchive;

use super::checkpoint::{Checkpoint, CheckpointError};
use super::pickle::{self, printable, Value};
use super::tensor::{DType, ShapeDisplay, Tensor};

mod numpy;
mod storage;

use storage::{decode, element_size, is_contiguous, storage_dtype};

/// The largest `data.pkl` read into memory. A state_dict pickle is a few hundred KiB; the
/// official `reference.pth` embeds a 512 × 512 image (0.8 MB).
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// How many bytes of storage records one file may make us read and decode, as a multiple of the
/// file's own size (plus [`DATA_SLACK_BYTES`]). `torch.save` stores records uncompressed and
/// each storage once, so a real checkpoint reads at most its own size (twice for a storage that
/// two tensors share). A deflated record that inflates a thousandfold, or thousands of tensors
/// pointing at one large storage, would otherwise turn a small file into gigabytes and minutes.
const MAX_DATA_EXPANSION: u64 = 4;
const DATA_SLACK_BYTES: u64 = 16 << 20;

/// Reads a state_dict written by `torch.save` (a bare mapping from key to tensor, as the official
/// `BaseModel.save_networks` writes it).
///
/// Tensors may be float32, float64, int64, bool or uint8, contiguous, at any storage offset
/// (storages shared between tensors are read once per tensor). A leading `module.` (left by
/// `DataParallel`) is stripped from every key; no other key is renamed. The `_metadata` state of
/// the `OrderedDict` is ignored. `sha256` is computed over the whole file.
///
/// # Errors
/// - [`CheckpointError::Io`] when the file cannot be opened or read,
/// - [`CheckpointError::NotTorch`] when it is not a zip archive, has no `data.pkl`, or the pickle
///   is not a dict of tensors (e.g. a legacy pre-1.6 pickle, a `.npy` file, a wrapper dict),
/// - [`CheckpointError::Corrupt`] when the archive is truncated, the pickle cannot be decoded, a
///   storage record is missing or shorter than its tensors, or two keys collide after stripping,
/// - [`CheckpointError::WrongKind`] for an unsupported dtype or a non-contiguous tensor.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let mut archive = TorchArchive::open(path)?;
    let root = archive.pickle()?;
    let pairs = root.as_dict().ok_or_else(|| {
        archive.not_torch(format!(
            "data.pkl holds {}, expected a state_dict (a dict from parameter name to tensor)",
            root.describe()
        ))
    })?;
    let mut tensors = BTreeMap::new();
    for (k, v) in pairs {
        let key = k.as_str().ok_or_else(|| {
            archive.not_torch(format!(
                "the state_dict has {} as a key, expected a str",
                k.describe()
            ))
        })?;
        if key.chars().any(char::is_control) {
            return Err(archive.not_torch(format!(
                "the state_dict has a key with a control character ({}); PyTorch parameter names have none",
                printable(key, 80)
            )));
        }
        let view = archive.tensor_view(key, v)?;
        let tensor = archive.read_tensor(key, &view)?;
        let name = key.strip_prefix("module.").unwrap_or(key);
        if tensors.insert(name.to_owned(), tensor).is_some() {
            return Err(archive.corrupt(format!(
                "key `{name}` appears twice (after stripping `module.`)"
            )));
        }
    }
    let sha256 = sha256_file(path)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        sha256,
        tensors,
    })
}

/// Reads the official reference image file (`reference.pth`): a `torch.save` zip whose pickle is a
/// dict with `examples`, a list whose first element is a NumPy uint8 array of shape
/// (height, width, 3). Returns `(height, width, rgb)` with `rgb` row-major, 3 bytes per pixel.
///
/// # Errors
/// As [`load_checkpoint`] for the container; [`CheckpointError::WrongKind`] when the pickle is not
/// such a dict or `examples[0]` is not a C-ordered uint8 array of shape (height, width, 3).
pub fn load_reference_image(path: &Path) -> Result<(usize, usize, Vec<u8>), CheckpointError> {
    let mut archive = TorchArchive::open(path)?;
    let root = archive.pickle()?;
    let wrong = |detail: String| CheckpointError::WrongKind {
        path: path.to_path_buf(),
        expected: "reference image",
        detail: printable(&detail, 1000),
    };
    let examples = root.get("examples").ok_or_else(|| {
        wrong(format!(
            "data.pkl holds {}, expected a dict with an `examples` list",
            root.describe()
        ))
    })?;
    let first = examples
        .as_seq()
        .and_then(<[Value]>::first)
        .ok_or_else(|| {
            wrong(format!(
                "`examples` is {}, expected a non-empty list",
                examples.describe()
            ))
        })?;
    let array = numpy::NdArray::from_value(first).map_err(|d| wrong(format!("examples[0] {d}")))?;
    array
        .into_rgb8()
        .map_err(|d| wrong(format!("examples[0] {d}")))
}

/// Where a tensor's elements are: storage record, dtype, and the view into it.
struct TensorView {
    storage_key: String,
    dtype: DType,
    storage_numel: usize,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// An open `torch.save` archive.
struct TorchArchive {
    path: PathBuf,
    zip: ZipArchive<BufReader<File>>,
    /// Folder of `data.pkl` inside the zip, with its trailing `/` (the file stem at save time).
    prefix: String,
    big_endian: bool,
    file_len: u64,
    /// Bytes of storage records that may still be read (see [`MAX_DATA_EXPANSION`]).
    data_budget: u64,
}

impl TorchArchive {
    /// Opens the zip and locates `data.pkl`; tells a plain pickle or a `.npy` file apart.
    fn open(path: &Path) -> Result<Self, CheckpointError> {
        let io = |error| CheckpointError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut magic = Vec::with_capacity(8);
        (&mut file).take(8).read_to_end(&mut magic).map_err(io)?;
        file.rewind().map_err(io)?;
        let not_torch = |detail: &str| CheckpointError::NotTorch {
            path: path.to_path_buf(),
            detail: printable(detail, 1000),
        };
        if !magic.starts_with(b"PK\x03\x04") && !magic.starts_with(b"PK\x05\x06") {
            return Err(not_torch(if magic.is_empty() {
                "the file is empty"
            } else if magic.starts_with(b"\x93NUMPY") {
                "it is a NumPy .npy file"
            } else if magic[0] == 0x80 {
                "it is a plain pickle (the legacy format of torch.save before PyTorch 1.6, or \
                 pickle.dump); re-save it with torch.save from PyTorch 1.6 or newer"
            } else {
                "it does not start with a zip signature"
            }));
        }
        let zip = ZipArchive::new(BufReader::new(file)).map_err(|e| match e {
            ZipError::Io(source) if !is_data_error(&source) => io(source),
            ZipError::UnsupportedArchive(what) => {
                not_torch(&format!("unsupported zip archive: {what}"))
            }
            e => CheckpointError::Corrupt {
                path: path.to_path_buf(),
                detail: format!(
                    "the zip archive is truncated or its directory is unreadable ({e})"
                ),
            },
        })?;
        let pkl = (0..zip.len())
            .filter_map(|i| zip.name_for_index(i))
            .find(|name| {
                name.strip_suffix("data.pkl")
                    .is_some_and(|dir| dir.is_empty() || dir.find('/') == Some(dir.len() - 1))
            });
        let Some(pkl) = pkl else {
            let names: Vec<&str> = (0..zip.len().min(5))
                .filter_map(|i| zip.name_for_index(i))
                .collect();
            return Err(not_torch(&format!(
                "the zip archive has no <folder>/data.pkl record (it holds {} entries: {}{})",
                zip.len(),
                names.join(", "),
                if zip.len() > 5 { ", ..." } else { "" }
            )));
        };
        let prefix = pkl[..pkl.len() - "data.pkl".len()].to_owned();
        let mut archive = TorchArchive {
            path: path.to_path_buf(),
            zip,
            prefix,
            big_endian: false,
            file_len,
            data_budget: file_len
                .saturating_mul(MAX_DATA_EXPANSION)
                .saturating_add(DATA_SLACK_BYTES),
        };
        let order_name = format!("{}byteorder", archive.prefix);
        if archive.zip.index_for_name(&order_name).is_some() {
            let order = archive.read_record(&order_name, None)?;
            archive.big_endian = match order.trim_ascii() {
                b"little" => false,
                b"big" => true,
                other => {
                    let other = String::from_utf8_lossy(other);
                    return Err(archive.corrupt(format!(
                        "{order_name} says {other:?}, expected little or big"
                    )));
                }
            };
        }
        Ok(archive)
    }

    /// Decodes `data.pkl`.
    fn pickle(&mut self) -> Result<Value, CheckpointError> {
        let name = format!("{}data.pkl", self.prefix);
        let bytes = self.read_record(&name, None)?;
        pickle::parse(&bytes).map_err(|e| self.corrupt(format!("{name} cannot be decoded: {e}")))
    }

    /// Reads record `name`: all of it when `want` is `None` (at most [`MAX_PICKLE_BYTES`]),
    /// otherwise its first `want` bytes (a shorter record is an error).
    fn read_record(&mut self, name: &str, want: Option<u64>) -> Result<Vec<u8>, CheckpointError> {
        let path = self.path.clone();
        let corrupt = |detail: String| CheckpointError::Corrupt {
            path: path.clone(),
            detail: printable(&detail, 1000),
        };
        let mut entry = match self.zip.by_name(name) {
            Ok(entry) => entry,
            Err(ZipError::FileNotFound) => {
                return Err(corrupt(format!("record {name} is missing")))
            }
            Err(ZipError::Io(source)) if !is_data_error(&source) => {
                return Err(CheckpointError::Io {
                    path: path.clone(),
                    error: source,
                })
            }
            Err(e) => return Err(corrupt(format!("record {name} cannot be read ({e})"))),
        };
        let size = entry.size();
        let n = match want {
            None if size > MAX_PICKLE_BYTES => {
                return Err(corrupt(format!(
                    "record {name} holds {size} bytes, more than {MAX_PICKLE_BYTES}"
                )))
            }
            None => size,
            Some(w) if size < w => {
                return Err(corrupt(format!(
                    "record {name} holds {size} bytes, expected {w}"
                )))
            }
            Some(w) => w,
        };
        // One byte past the declared size lets the zip reader reach the end and check the CRC.
        let limit = if n == size { size + 1 } else { n };
        let mut buf = Vec::with_capacity(usize::try_from(n.min(self.file_len)).unwrap_or(0));
        if let Err(source) = (&mut entry).take(limit).read_to_end(&mut buf) {
            return Err(if is_data_error(&source) {
                corrupt(format!("record {name} is damaged ({source})"))
            } else {
                CheckpointError::Io {
                    path: path.clone(),
                    error: source,
                }
            });
        }
        if buf.len() as u64 != n {
            return Err(corrupt(format!(
                "record {name} holds {} bytes, its header says {size}",
                buf.len()
            )));
        }
        Ok(buf)
    }

    /// Interprets the pickled value of state_dict entry `key` as a tensor.
    fn tensor_view(&self, key: &str, value: &Value) -> Result<TensorView, CheckpointError> {
        let bad = |what: String| self.not_torch(format!("entry `{key}` {what}"));
        let args = match (value.constructor(), value) {
            (Some(("torch._utils", f)), Value::Object { args, .. }) => match (f, args.as_seq()) {
                ("_rebuild_parameter" | "_rebuild_parameter_with_state", Some([data, ..])) => {
                    return self.tensor_view(key, data)
                }
                ("_rebuild_tensor_v2" | "_rebuild_tensor", Some(a)) if a.len() >= 4 => a,
                _ => {
                    return Err(bad(format!(
                        "is built by torch._utils.{f} with {} as its arguments",
                        args.describe()
                    )))
                }
            },
            _ => return Err(bad(format!("is {}, expected a tensor", value.describe()))),
        };
        let Value::PersistentId(pid) = &args[0] else {
            return Err(bad(format!(
                "has {} as its storage, expected a persistent id",
                args[0].describe()
            )));
        };
        let (storage_key, dtype, storage_numel) = match pid.as_seq() {
            Some([tag, ty, k, _location, numel]) if tag.as_str() == Some("storage") => {
                let ty = match ty.as_global() {
                    Some(("torch", name)) => name,
                    _ => {
                        return Err(bad(format!(
                            "has {} as its storage type, expected a torch storage class",
                            ty.describe()
                        )))
                    }
                };
                let dtype = storage_dtype(ty).ok_or_else(|| CheckpointError::WrongKind {
                    path: self.path.clone(),
                    expected: "float32/float64/int64/bool/uint8",
                    detail: printable(&format!("tensor `{key}` is stored as torch.{ty}"), 1000),
                })?;
                let k = k
                    .as_str()
                    .filter(|k| !k.is_empty() && !k.contains(['/', '\\']));
                let k = k.ok_or_else(|| {
                    bad(format!(
                        "has a storage key that is not a plain name in {}",
                        pid.describe()
                    ))
                })?;
                (
                    k.to_owned(),
                    dtype,
                    to_usize(numel).ok_or_else(|| {
                        bad(format!(
                            "has {} as its storage size, expected a non-negative int",
                            numel.describe()
                        ))
                    })?,
                )
            }
            _ => {
                return Err(bad(format!(
                    "has {} as its storage id, expected ('storage', type, key, location, numel)",
                    pid.describe()
                )))
            }
        };
        let ints = |v: &Value| -> Option<Vec<usize>> { v.as_seq()?.iter().map(to_usize).collect() };
        let offset = to_usize(&args[1]).ok_or_else(|| {
            bad(format!(
                "has {} as its storage offset, expected a non-negative int",
                args[1].describe()
            ))
        })?;
        let shape = ints(&args[2]).ok_or_else(|| {
            bad(format!(
                "has {} as its size, expected a tuple of non-negative ints",
                args[2].describe()
            ))
        })?;
        let stride = ints(&args[3]).ok_or_else(|| {
            bad(format!(
                "has {} as its stride, expected a tuple of non-negative ints",
                args[3].describe()
            ))
        })?;
        if stride.len() != shape.len() {
            return Err(bad(format!(
                "has {} sizes but {} strides",
                shape.len(),
                stride.len()
            )));
        }
        Ok(TensorView {
            storage_key,
            dtype,
            storage_numel,
            offset,
            shape,
            stride,
        })
    }

    /// Reads the elements of `view` from its storage record.
    fn read_tensor(&mut self, key: &str, view: &TensorView) -> Result<Tensor, CheckpointError> {
        let numel = view.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let numel =
            numel.ok_or_else(|| self.corrupt(format!("tensor `{key}` has an impossible size")))?;
        if !is_contiguous(&view.shape, &view.stride) {
            return Err(CheckpointError::WrongKind {
                path: self.path.clone(),
                expected: "contiguous-tensor",
                detail: format!(
                    "tensor `{key}` has shape {} with strides {}; save tensor.contiguous() instead",
                    ShapeDisplay(&view.shape),
                    ShapeDisplay(&view.stride)
                ),
            });
        }
        let esize = element_size(view.dtype);
        let end = view
            .offset
            .checked_add(numel)
            .filter(|&e| e <= view.storage_numel);
        let end = end.ok_or_else(|| {
            self.corrupt(format!(
                "tensor `{key}` (offset {}, {numel} elements) does not fit its storage of {} elements",
                view.offset, view.storage_numel
            ))
        })?;
        let storage_bytes = view.storage_numel.checked_mul(esize).map(|b| b as u64);
        let storage_bytes = storage_bytes.ok_or_else(|| {
            self.corrupt(format!("tensor `{key}` has an impossible storage size"))
        })?;
        if storage_bytes > self.data_budget {
            return Err(self.corrupt(format!(
                "tensor `{key}` would read {storage_bytes} more bytes of storage, beyond what a checkpoint of {} bytes can hold (at most {MAX_DATA_EXPANSION} × its size: torch.save stores tensors uncompressed)",
                self.file_len
            )));
        }
        self.data_budget -= storage_bytes;
        let name = format!("{}data/{}", self.prefix, view.storage_key);
        let bytes = self
            .read_record(&name, Some(storage_bytes))
            .map_err(|e| match e {
                CheckpointError::Corrupt { path, detail } => CheckpointError::Corrupt {
                    path,
                    detail: format!(
                        "{detail} (storage of tensor `{key}`: {} {} elements)",
                        view.storage_numel, view.dtype
                    ),
                },
                e => e,
            })?;
        let raw = &bytes[view.offset * esize..end * esize];
        Ok(Tensor {
            shape: view.shape.clone(),
            data: decode(view.dtype, raw, self.big_endian),
        })
    }

    /// Details quote names from the file (keys, record names, globals): they are made
    /// printable so the message stays one line.
    fn not_torch(&self, detail: String) -> CheckpointError {
        CheckpointError::NotTorch {
            path: self.path.clone(),
            detail: printable(&detail, 1000),
        }
    }

    fn corrupt(&self, detail: String) -> CheckpointError {
        CheckpointError::Corrupt {
            path: self.path.clone(),
            detail: printable(&detail, 1000),
        }
    }
}

fn to_usize(v: &Value) -> Option<usize> {
    v.as_int().and_then(|i| usize::try_from(i).ok())
}

/// Errors from inside the zip reader that mean damaged data rather than a failing disk.
fn is_data_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
    )
}

/// sha256 of the whole file, lowercase hex.
fn sha256_file(path: &Path) -> Result<String, CheckpointError> {
    let io = |error| CheckpointError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}
