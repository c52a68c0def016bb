//! A bounded pickle virtual machine (protocols 2–5), enough for `torch.save` zip checkpoints
//! and NumPy arrays pickled inline (the official `reference.pth`).
//!
//! Nothing is executed: `GLOBAL` pushes a [`Value::Global`] naming the callable, `REDUCE`/`NEWOBJ`
//! record the call as a [`Value::Object`], `BUILD` attaches its state. Two calls are evaluated
//! because their results are plain data: `collections.OrderedDict()` becomes an empty
//! [`Value::Dict`] (so `SETITEMS` can fill it) and `_codecs.encode(text, "latin1")` (how protocol 2
//! pickles `bytes`) becomes [`Value::Bytes`].
//!
//! Objects live in an arena while the VM runs, so the memo shares them the way Python does (a
//! dict memoised before `SETITEMS` is seen filled by a later `BINGET`). The result is then copied
//! into an owned [`Value`] tree under the budgets of [`Limits`], so hostile input (cycles,
//! exponential sharing, huge declared lengths, stack underflow) ends in a [`PickleError`], never
//! in a panic or an unbounded allocation.

mod arena;
mod opcodes;
mod vm;

#[cfg(test)]
mod tests;

/// A decoded pickle object.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Any integer that fits in 64 bits (`BININT*`, `LONG1`/`LONG4` up to 8 bytes).
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Key/value pairs in insertion order (a `dict` or an `OrderedDict`). A key set twice
    /// appears twice; Python would keep the last value.
    Dict(Vec<(Value, Value)>),
    /// A module attribute named by `GLOBAL`/`STACK_GLOBAL`, e.g. `torch._utils._rebuild_tensor_v2`.
    Global {
        module: String,
        name: String,
    },
    /// The result of `REDUCE` (`callable(*args)`) or `NEWOBJ` (`callable.__new__(callable, *args)`),
    /// with the state given by `BUILD`, if any.
    Object {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
    /// A persistent id (`BINPERSID`); torch uses it for tensor storages.
    PersistentId(Box<Value>),
}

impl Value {
    /// The string, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is a [`Value::Int`].
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of a tuple or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The pairs of a dict.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// The value stored under the string key `key` of a dict (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// `(module, name)` of a [`Value::Global`].
    pub fn as_global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    /// `(module, name)` of the callable that built a [`Value::Object`], when it is a global.
    pub fn constructor(&self) -> Option<(&str, &str)> {
        match self {
            Value::Object { callable, .. } => callable.as_global(),
            _ => None,
        }
    }

    /// A short description for error messages, with its article so that it reads after "is" or
    /// "holds": `a str "abc"`, `a tuple of 3 items`, `an object built by torch._utils.x`.
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => format!("a bool ({})", if *b { "True" } else { "False" }),
            Value::Int(i) => format!("an int ({i})"),
            Value::Float(f) => format!("a float ({f})"),
            Value::Str(s) if s.len() <= 40 => format!("a str ({s:?})"),
            Value::Str(s) => format!("a str of {} bytes", s.len()),
            Value::Bytes(b) => format!("a bytes object of {} bytes", b.len()),
            Value::Tuple(v) => format!("a tuple of {} items", v.len()),
            Value::List(v) => format!("a list of {} items", v.len()),
            Value::Dict(v) => format!("a dict of {} entries", v.len()),
            Value::Global { module, name } => {
                format!(
                    "the global {}.{}",
                    printable(module, 80),
                    printable(name, 80)
                )
            }
            Value::Object { callable, .. } => match callable.as_global() {
                Some((m, n)) => format!(
                    "an object built by {}.{}",
                    printable(m, 80),
                    printable(n, 80)
                ),
                None => "an object".into(),
            },
            Value::PersistentId(_) => "a persistent id".into(),
        }
    }
}

/// `text` for an error message: control characters (a newline would split the one-line message)
/// escaped, and cut to `max` characters with an ellipsis.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Budgets that keep a hostile pickle from exhausting memory or the call stack.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most values on the VM stack at once.
    pub max_stack: usize,
    /// Most memo entries.
    pub max_memo: usize,
    /// Most objects (strings, containers, globals, ...) created while running.
    pub max_objects: usize,
    /// Deepest nesting of the result.
    pub max_depth: usize,
    /// Most nodes in the result (a memoised object referenced twice counts twice).
    pub max_values: usize,
    /// Most bytes of strings copied a second time or more into the result because the pickle
    /// references them repeatedly (the first copy of each is bounded by the input size).
    pub max_shared_bytes: usize,
}

/// The defaults bound a run to a few hundred MB whatever the input: an official state_dict
/// pickle has a few thousand objects (about 15 per tensor), the official `reference.pth` one
/// bytes object of 0.8 MB, so these are two to three orders of magnitude above real files.
/// Each arena object costs about 64 bytes and each result value about 48, so 2 M of each is
/// about 230 MB at most.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stack: 1 << 20,
            max_memo: 1 << 20,
            max_objects: 1 << 21,
            max_depth: 200,
            max_values: 1 << 21,
            max_shared_bytes: 64 << 20,
        }
    }
}

/// Why a pickle could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PickleError {
    #[error("the pickle ends early at byte {offset} (reading {what})")]
    Truncated { offset: usize, what: &'static str },
    #[error("unsupported pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnknownOpcode { opcode: u8, offset: usize },
    #[error("malformed pickle at byte {offset} ({opcode}): {detail}")]
    Malformed {
        offset: usize,
        opcode: &'static str,
        detail: String,
    },
    #[error("the pickle exceeds the limit of {limit} {what}")]
    LimitExceeded { what: &'static str, limit: usize },
}

/// Decodes a complete pickle (up to its `STOP` opcode) with the default [`Limits`].
///
/// # Errors
/// [`PickleError`] for truncated input, an opcode outside the supported set, a malformed
/// sequence (stack underflow, undefined memo entry, wrong operand types) or an exceeded limit.
pub fn parse(data: &[u8]) -> Result<Value, PickleError> {
    parse_with_limits(data, &Limits::default())
}

/// Decodes a complete pickle under explicit `limits`.
///
/// # Errors
/// As [`parse`].
pub fn parse_with_limits(data: &[u8], limits: &Limits) -> Result<Value, PickleError> {
    vm::run(data, limits)
}
