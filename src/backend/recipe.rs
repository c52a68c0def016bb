//! Engine recipes (`engines/*.toml`): what `moda-edge engine build` hands TensorRT's builder for
//! one network: every input's shape (fixed, or a min/opt/max profile), the default precision,
//! layers kept in float, the workspace, and per-device-class overrides (Orin Nano, NX, AGX).
//!
//! ```toml
//! network = "moda"
//! precision = "fp16"            # fp32 | fp16 | int8 | best
//! workspace_mib = 2048
//! strongly_typed = false        # Q/DQ graphs only: types follow the graph
//! keep_fp32 = ["/head/Softmax"] # ONNX node names kept in float32 (precision obeyed)
//! keep_fp16 = []
//!
//! [inputs.template]
//! shape = [1, 1434]
//! [inputs.waveform]
//! min = [1, 1067]
//! opt = [1, 53333]
//! max = [1, 320000]
//!
//! [device.nano]
//! precision = "int8"
//! workspace_mib = 768
//! ```
//!
//! Parsed without serde's messages: every mistake (unknown key, wrong type, min > max) is one
//! line naming the file, the key and what was expected. Always compiled, so a build without
//! TensorRT still reports recipe mistakes.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// The precision asked of the builder; `Best` lets TensorRT pick FP16 or INT8 per layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildPrecision {
    Fp32,
    Fp16,
    Int8,
    Best,
}

impl BuildPrecision {
    pub fn name(self) -> &'static str {
        match self {
            BuildPrecision::Fp32 => "fp32",
            BuildPrecision::Fp16 => "fp16",
            BuildPrecision::Int8 => "int8",
            BuildPrecision::Best => "best",
        }
    }

    /// `fp32`, `fp16`, `int8` or `best`.
    pub fn parse(text: &str) -> Option<BuildPrecision> {
        Some(match text {
            "fp32" => BuildPrecision::Fp32,
            "fp16" => BuildPrecision::Fp16,
            "int8" => BuildPrecision::Int8,
            "best" => BuildPrecision::Best,
            _ => return None,
        })
    }
}

/// Jetson Orin modules, the device classes a recipe has variants for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceClass {
    Nano,
    Nx,
    Agx,
}

impl DeviceClass {
    pub fn name(self) -> &'static str {
        match self {
            DeviceClass::Nano => "nano",
            DeviceClass::Nx => "nx",
            DeviceClass::Agx => "agx",
        }
    }

    pub fn parse(text: &str) -> Option<DeviceClass> {
        Some(match text {
            "nano" => DeviceClass::Nano,
            "nx" => DeviceClass::Nx,
            "agx" => DeviceClass::Agx,
            _ => return None,
        })
    }
}

/// One input's shapes: `min == opt == max` for a fixed input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputProfile {
    pub name: String,
    pub min: Vec<usize>,
    pub opt: Vec<usize>,
    pub max: Vec<usize>,
}

impl InputProfile {
    /// Whether every dimension is fixed.
    pub fn is_fixed(&self) -> bool {
        self.min == self.max
    }
}

/// What a device class changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceVariant {
    pub precision: Option<BuildPrecision>,
    pub workspace_mib: Option<u64>,
}

/// A parsed recipe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipe {
    pub path: PathBuf,
    pub network: String,
    pub precision: BuildPrecision,
    pub workspace_mib: u64,
    pub strongly_typed: bool,
    pub keep_fp32: Vec<String>,
    pub keep_fp16: Vec<String>,
    /// In the file's order.
    pub inputs: Vec<InputProfile>,
    pub devices: Vec<(DeviceClass, DeviceVariant)>,
}

/// A recipe resolved for one device class (or none: the recipe's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildPlan {
    pub precision: BuildPrecision,
    pub workspace_mib: u64,
}

/// A recipe mistake: one line, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RecipeError {
    pub path: PathBuf,
    pub message: String,
}

const TOP_KEYS: &str =
    "network, precision, workspace_mib, strongly_typed, keep_fp32, keep_fp16, inputs, device";
const NETWORKS: [&str; 3] = ["moda", "faco", "renderer"];

impl Recipe {
    /// Reads and checks a recipe file.
    ///
    /// # Errors
    /// [`RecipeError`]: unreadable file, TOML syntax (with its line), unknown key, wrong value.
    pub fn load(path: &Path) -> Result<Recipe, RecipeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError {
            path: path.into(),
            message: format!("cannot read the recipe: {e}"),
        })?;
        Recipe::parse(path, &text)
    }

    /// Parses recipe text; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Recipe::load`].
    pub fn parse(path: &Path, text: &str) -> Result<Recipe, RecipeError> {
        let err = |message: String| RecipeError {
            path: path.into(),
            message,
        };
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(1);
            let detail: Vec<&str> = e.message().lines().map(str::trim).collect();
            err(format!(
                "line {line}: not valid TOML ({})",
                detail.join("; ")
            ))
        })?;
        for key in table.keys() {
            if !TOP_KEYS.split(", ").any(|k| k == key) {
                return Err(err(format!(
                    "unknown key `{key}`; expected one of {TOP_KEYS}"
                )));
            }
        }
        let network = match table.get("network") {
            Some(Value::String(s)) if NETWORKS.contains(&s.as_str()) => s.clone(),
            Some(v) => {
                return Err(err(format!(
                    "`network` is {v}; expected \"moda\", \"faco\" or \"renderer\""
                )))
            }
            None => {
                return Err(err(
                    "`network` is missing; expected \"moda\", \"faco\" or \"renderer\"".into(),
                ))
            }
        };
        let precision = precision_of(table.get("precision"), "precision")
            .map_err(&err)?
            .unwrap_or(BuildPrecision::Fp16);
        let workspace_mib = mib_of(table.get("workspace_mib"), "workspace_mib")
            .map_err(&err)?
            .unwrap_or(1024);
        let strongly_typed = match table.get("strongly_typed") {
            None => false,
            Some(Value::Boolean(b)) => *b,
            Some(v) => {
                return Err(err(format!(
                    "`strongly_typed` is {v}; expected true or false"
                )))
            }
        };
        let keep_fp32 = names_of(table.get("keep_fp32"), "keep_fp32").map_err(&err)?;
        let keep_fp16 = names_of(table.get("keep_fp16"), "keep_fp16").map_err(&err)?;
        if let Some(both) = keep_fp32.iter().find(|n| keep_fp16.contains(n)) {
            return Err(err(format!(
                "layer `{both}` is in both keep_fp32 and keep_fp16; keep it in one"
            )));
        }
        let inputs = match table.get("inputs") {
            Some(Value::Table(t)) if !t.is_empty() => t
                .iter()
                .map(|(name, v)| input_of(name, v))
                .collect::<Result<Vec<_>, _>>()
                .map_err(&err)?,
            Some(_) | None => {
                return Err(err(
                    "no [inputs.NAME] table; give each network input its shape or min/opt/max"
                        .into(),
                ))
            }
        };
        let mut devices = Vec::new();
        match table.get("device") {
            None => {}
            Some(Value::Table(t)) => {
                for (name, v) in t {
                    let class = DeviceClass::parse(name).ok_or_else(|| {
                        err(format!(
                            "unknown device class [device.{name}]; expected nano, nx or agx"
                        ))
                    })?;
                    devices.push((class, variant_of(name, v).map_err(&err)?));
                }
            }
            Some(v) => {
                return Err(err(format!(
                    "`device` is {v}; expected tables [device.nano], [device.nx], [device.agx]"
                )))
            }
        }
        Ok(Recipe {
            path: path.into(),
            network,
            precision,
            workspace_mib,
            strongly_typed,
            keep_fp32,
            keep_fp16,
            inputs,
            devices,
        })
    }

    /// The precision and workspace for `class` (its variant over the defaults).
    pub fn plan(&self, class: Option<DeviceClass>) -> BuildPlan {
        let variant = class.and_then(|c| self.devices.iter().find(|(d, _)| *d == c));
        let variant = variant.map(|(_, v)| v.clone()).unwrap_or_default();
        BuildPlan {
            precision: variant.precision.unwrap_or(self.precision),
            workspace_mib: variant.workspace_mib.unwrap_or(self.workspace_mib),
        }
    }
}

fn precision_of(v: Option<&Value>, key: &str) -> Result<Option<BuildPrecision>, String> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => BuildPrecision::parse(s).map(Some).ok_or_else(|| {
            format!("`{key}` is \"{s}\"; expected \"fp32\", \"fp16\", \"int8\" or \"best\"")
        }),
        Some(v) => Err(format!(
            "`{key}` is {v}; expected \"fp32\", \"fp16\", \"int8\" or \"best\""
        )),
    }
}

fn mib_of(v: Option<&Value>, key: &str) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(Value::Integer(n)) if (16..=1 << 20).contains(n) => Ok(Some(*n as u64)),
        Some(v) => Err(format!(
            "`{key}` is {v}; expected an integer number of MiB from 16 to 1048576"
        )),
    }
}

fn names_of(v: Option<&Value>, key: &str) -> Result<Vec<String>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(format!(
                    "`{key}` holds {other}; expected ONNX node names (non-empty strings)"
                )),
            })
            .collect(),
        Some(v) => Err(format!(
            "`{key}` is {v}; expected a list of ONNX node names"
        )),
    }
}

fn dims_of(v: &Value, what: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("{what} is {v}; expected a list of 1 to 8 positive integers");
    let Value::Array(items) = v else {
        return Err(bad());
    };
    if items.is_empty() || items.len() > 8 {
        return Err(bad());
    }
    items
        .iter()
        .map(|i| match i {
            Value::Integer(n) if *n >= 1 => usize::try_from(*n).map_err(|_| bad()),
            _ => Err(bad()),
        })
        .collect()
}

fn input_of(name: &str, v: &Value) -> Result<InputProfile, String> {
    let Value::Table(t) = v else {
        return Err(format!(
            "`inputs.{name}` is {v}; expected a table with `shape`, or `min`, `opt` and `max`"
        ));
    };
    for key in t.keys() {
        if !["shape", "min", "opt", "max"].contains(&key.as_str()) {
            return Err(format!(
                "unknown key `{key}` in [inputs.{name}]; expected shape, or min, opt and max"
            ));
        }
    }
    let get = |k: &str| {
        t.get(k)
            .map(|v| dims_of(v, &format!("`inputs.{name}.{k}`")))
    };
    match (get("shape"), get("min"), get("opt"), get("max")) {
        (Some(shape), None, None, None) => {
            let shape = shape?;
            Ok(InputProfile {
                name: name.into(),
                min: shape.clone(),
                opt: shape.clone(),
                max: shape,
            })
        }
        (None, Some(min), Some(opt), Some(max)) => {
            let (min, opt, max) = (min?, opt?, max?);
            if min.len() != opt.len() || opt.len() != max.len() {
                return Err(format!(
                    "[inputs.{name}]: min, opt and max have different ranks ({}, {}, {})",
                    min.len(),
                    opt.len(),
                    max.len()
                ));
            }
            let ordered = min
                .iter()
                .zip(&opt)
                .zip(&max)
                .all(|((a, b), c)| a <= b && b <= c);
            if !ordered {
                return Err(format!(
                    "[inputs.{name}]: expected min <= opt <= max in every dimension, got \
                     {min:?}, {opt:?}, {max:?}"
                ));
            }
            Ok(InputProfile {
                name: name.into(),
                min,
                opt,
                max,
            })
        }
        _ => Err(format!(
            "[inputs.{name}] needs either `shape` or all three of `min`, `opt` and `max`"
        )),
    }
}

fn variant_of(name: &str, v: &Value) -> Result<DeviceVariant, String> {
    let Value::Table(t) = v else {
        return Err(format!("`device.{name}` is {v}; expected a table"));
    };
    for key in t.keys() {
        if !["precision", "workspace_mib"].contains(&key.as_str()) {
            return Err(format!(
                "unknown key `{key}` in [device.{name}]; expected precision, workspace_mib"
            ));
        }
    }
    Ok(DeviceVariant {
        precision: precision_of(t.get("precision"), &format!("device.{name}.precision"))?,
        workspace_mib: mib_of(
            t.get("workspace_mib"),
            &format!("device.{name}.workspace_mib"),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
network = "moda"
precision = "fp16"
workspace_mib = 2048
keep_fp32 = ["/a/Softmax"]

[inputs.waveform]
min = [1, 1067]
opt = [1, 53333]
max = [1, 320000]

[inputs.template]
shape = [1, 1434]

[device.nano]
precision = "int8"
workspace_mib = 512
"#;

    fn parse(text: &str) -> Result<Recipe, RecipeError> {
        Recipe::parse(Path::new("engines/x.toml"), text)
    }

    #[test]
    fn a_recipe_parses_with_profiles_and_device_variants() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.network, "moda");
        assert_eq!(r.inputs.len(), 2);
        assert!(!r
            .inputs
            .iter()
            .find(|i| i.name == "waveform")
            .unwrap()
            .is_fixed());
        assert!(r
            .inputs
            .iter()
            .find(|i| i.name == "template")
            .unwrap()
            .is_fixed());
        let nano = r.plan(Some(DeviceClass::Nano));
        assert_eq!(
            (nano.precision, nano.workspace_mib),
            (BuildPrecision::Int8, 512)
        );
        let agx = r.plan(Some(DeviceClass::Agx));
        assert_eq!(
            (agx.precision, agx.workspace_mib),
            (BuildPrecision::Fp16, 2048)
        );
    }

    #[test]
    fn every_mistake_is_one_line_naming_the_file_and_key() {
        let cases = [
            (
                GOOD.replace("workspace_mib = 2048", "workspace = 2048"),
                "unknown key `workspace`",
            ),
            (
                GOOD.replace("\"fp16\"", "\"fp8\""),
                "`precision` is \"fp8\"",
            ),
            (
                GOOD.replace("opt = [1, 53333]", "opt = [1, 999999]"),
                "min <= opt <= max",
            ),
            (
                GOOD.replace("shape = [1, 1434]", "shape = [1, 0]"),
                "`inputs.template.shape`",
            ),
            (
                GOOD.replace("[device.nano]", "[device.tx2]"),
                "unknown device class [device.tx2]",
            ),
            (
                GOOD.replace("workspace_mib = 512", "workspace_mb = 512"),
                "unknown key `workspace_mb` in [device.nano]",
            ),
            (
                GOOD.replace("min = [1, 1067]\n", ""),
                "needs either `shape` or all three",
            ),
            (
                GOOD.replace("network = \"moda\"", "network = \"wav2vec\""),
                "`network`",
            ),
            (
                GOOD.replace("precision = \"fp16\"", "precision = fp16"),
                "line 3: not valid TOML",
            ),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("engines/x.toml: "), "{e}");
            assert!(e.contains(want), "{e} lacks {want}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_shipped_recipes_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines");
        for name in ["moda", "faco", "renderer"] {
            let r = Recipe::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(r.network, name);
            for class in [DeviceClass::Nano, DeviceClass::Nx, DeviceClass::Agx] {
                assert!(
                    r.devices.iter().any(|(c, _)| *c == class),
                    "{name} {class:?}"
                );
            }
        }
    }
}
