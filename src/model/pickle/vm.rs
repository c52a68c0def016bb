//! The opcode loop. Objects are arena nodes addressed by index, so memo entries alias the way
//! Python objects do; [`Vm::finish`] copies the result into an owned [`Value`] under the budgets.

use std::collections::HashMap;

use super::{Limits, PickleError, Value};

/// A stack slot: scalars inline, everything else an index into the arena.
#[derive(Clone, Copy, Debug)]
enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Node(usize),
}

#[derive(Debug)]
enum Node {
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Obj>),
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    Global {
        module: String,
        name: String,
    },
    Object {
        callable: Obj,
        args: Obj,
        state: Option<Obj>,
    },
    PersistentId(Obj),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset and name of the opcode being executed, for error messages.
    op_at: usize,
    op_name: &'static str,
    limits: &'a Limits,
    stack: Vec<Obj>,
    marks: Vec<usize>,
    memo: HashMap<u64, Obj>,
    arena: Vec<Node>,
}

/// Runs `data` to its `STOP` opcode and returns the object on top of the stack.
pub(super) fn run(data: &[u8], limits: &Limits) -> Result<Value, PickleError> {
    let mut vm = Vm {
        data,
        pos: 0,
        op_at: 0,
        op_name: "start",
        limits,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
    };
    loop {
        vm.op_at = vm.pos;
        let op = vm.read_u8("an opcode")?;
        vm.op_name = opcode_name(op);
        if op == b'.' {
            let top = vm.pop()?;
            return vm.finish(top);
        }
        vm.step(op)?;
    }
}

impl<'a> Vm<'a> {
    fn step(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            0x80 => {
                let proto = self.read_u8("the protocol number")?;
                if proto > 5 {
                    return Err(self.malformed(format!("protocol {proto} is newer than 5")));
                }
            }
            0x95 => {
                self.read_bytes(8, "a frame length")?;
            }
            b'(' => {
                self.marks.push(self.stack.len());
            }
            b'0' => {
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() > floor {
                    self.stack.pop();
                } else {
                    self.pop_mark()?;
                }
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.peek()?;
                self.push(top)?;
            }
            b'N' => self.push(Obj::None)?,
            0x88 => self.push(Obj::Bool(true))?,
            0x89 => self.push(Obj::Bool(false))?,
            b'J' => {
                let b = self.read_array::<4>("a 4-byte int")?;
                self.push(Obj::Int(i32::from_le_bytes(b).into()))?;
            }
            b'K' => {
                let v = self.read_u8("a 1-byte int")?;
                self.push(Obj::Int(v.into()))?;
            }
            b'M' => {
                let b = self.read_array::<2>("a 2-byte int")?;
                self.push(Obj::Int(u16::from_le_bytes(b).into()))?;
            }
            0x8a => {
                let n = self.read_u8("a long length")?.into();
                self.long(n)?;
            }
            0x8b => {
                let n = i32::from_le_bytes(self.read_array::<4>("a long length")?);
                let n = usize::try_from(n).map_err(|_| self.malformed("negative long length"))?;
                self.long(n)?;
            }
            b'G' => {
                let b = self.read_array::<8>("a float")?;
                self.push(Obj::Float(f64::from_be_bytes(b)))?;
            }
            b'X' | 0x8c | 0x8d => {
                let n = self.read_len(op, "a string length")?;
                let raw = self.read_bytes(n, "string data")?;
                let s = std::str::from_utf8(raw)
                    .map_err(|_| self.malformed("a unicode string is not valid UTF-8"))?;
                let s = s.to_owned();
                self.push_node(Node::Str(s))?;
            }
            b'U' | b'T' => {
                // Protocol 1 byte strings: decoded as latin-1 like `encoding="latin1"` does.
                let n = self.read_len(op, "a string length")?;
                let s = self
                    .read_bytes(n, "string data")?
                    .iter()
                    .map(|&b| char::from(b))
                    .collect();
                self.push_node(Node::Str(s))?;
            }
            b'B' | b'C' | 0x8e | 0x96 => {
                let n = self.read_len(op, "a bytes length")?;
                let b = self.read_bytes(n, "bytes data")?.to_vec();
                self.push_node(Node::Bytes(b))?;
            }
            b')' => self.push_node(Node::Tuple(Vec::new()))?,
            b']' => self.push_node(Node::List(Vec::new()))?,
            b'}' => self.push_node(Node::Dict(Vec::new()))?,
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items))?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return Err(self.malformed("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push_node(Node::Tuple(items))?;
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items))?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push_node(Node::Dict(pairs))?;
            }
            b'a' => {
                let v = self.pop()?;
                self.list_top()?.push(v);
            }
            b'e' => {
                let items = self.pop_mark()?;
                self.list_top()?.extend(items);
            }
            b's' => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.dict_top()?.push((k, v));
            }
            b'u' => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.dict_top()?.extend(pairs);
            }
            b'c' => {
                let module = self.read_line()?;
                let name = self.read_line()?;
                self.push_node(Node::Global { module, name })?;
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (module, name) = (self.text(module)?, self.text(name)?);
                self.push_node(Node::Global { module, name })?;
            }
            b'R' => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let node = self.reduce(callable, args)?;
                self.push_node(node)?;
            }
            0x81 => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_node(Node::Object {
                    callable,
                    args,
                    state: None,
                })?;
            }
            0x92 => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let callable = self.pop()?;
                if !matches!(self.node(kwargs), Some(Node::Dict(d)) if d.is_empty()) {
                    return Err(self.malformed("NEWOBJ_EX with keyword arguments"));
                }
                self.push_node(Node::Object {
                    callable,
                    args,
                    state: None,
                })?;
            }
            b'b' => {
                let state = self.pop()?;
                let target = self.peek()?;
                match self.node_mut(target) {
                    Some(Node::Object { state: slot, .. }) => *slot = Some(state),
                    // OrderedDict state (the `_metadata` of a torch state_dict): not needed.
                    Some(Node::Dict(_)) => {}
                    _ => return Err(self.malformed("BUILD on something that is not an object")),
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.push_node(Node::PersistentId(pid))?;
            }
            b'q' | b'r' | 0x94 => {
                let idx = match op {
                    b'q' => self.read_u8("a memo index")?.into(),
                    b'r' => u32::from_le_bytes(self.read_array::<4>("a memo index")?).into(),
                    _ => self.memo.len() as u64,
                };
                let top = self.peek()?;
                if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&idx) {
                    return Err(limit("memo entries", self.limits.max_memo));
                }
                self.memo.insert(idx, top);
            }
            b'h' | b'j' => {
                let idx: u64 = if op == b'h' {
                    self.read_u8("a memo index")?.into()
                } else {
                    u32::from_le_bytes(self.read_array::<4>("a memo index")?).into()
                };
                let v = *self
                    .memo
                    .get(&idx)
                    .ok_or_else(|| self.malformed(format!("memo entry {idx} is not defined")))?;
                self.push(v)?;
            }
            _ => {
                return Err(PickleError::UnknownOpcode {
                    opcode: op,
                    offset: self.op_at,
                })
            }
        }
        Ok(())
    }

    /// `REDUCE`: evaluates the two calls whose result is plain data, records all others.
    fn reduce(&self, callable: Obj, args: Obj) -> Result<Node, PickleError> {
        let global = match self.node(callable) {
            Some(Node::Global { module, name }) => Some((module.as_str(), name.as_str())),
            _ => None,
        };
        let arg_items = match self.node(args) {
            Some(Node::Tuple(items)) => items.as_slice(),
            _ => return Err(self.malformed("REDUCE arguments are not a tuple")),
        };
        match (global, arg_items) {
            (Some(("collections", "OrderedDict")), []) => Ok(Node::Dict(Vec::new())),
            (Some(("_codecs", "encode")), [text, enc]) => {
                let (Some(Node::Str(text)), Some(Node::Str(enc))) =
                    (self.node(*text), self.node(*enc))
                else {
                    return Err(self.malformed("_codecs.encode needs a string and an encoding"));
                };
                match enc.to_ascii_lowercase().as_str() {
                    "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)))
                        .collect::<Result<Vec<u8>, _>>()
                        .map(Node::Bytes)
                        .map_err(|_| {
                            self.malformed("a latin-1 string has a character above U+00FF")
                        }),
                    "utf-8" | "utf8" => Ok(Node::Bytes(text.as_bytes().to_vec())),
                    other => Err(self.malformed(format!("unsupported encoding {other:?}"))),
                }
            }
            _ => Ok(Node::Object {
                callable,
                args,
                state: None,
            }),
        }
    }

    /// `LONG1`/`LONG4`: little-endian two's complement of `n` bytes, at most 8.
    fn long(&mut self, n: usize) -> Result<(), PickleError> {
        let raw = self.read_bytes(n, "long data")?;
        if n > 8 {
            return Err(self.malformed(format!("a {n}-byte integer does not fit in 64 bits")));
        }
        let mut buf = if raw.last().is_some_and(|b| b & 0x80 != 0) {
            [0xff; 8]
        } else {
            [0; 8]
        };
        buf[..n].copy_from_slice(raw);
        self.push(Obj::Int(i64::from_le_bytes(buf)))
    }

    fn pairs(&self, items: Vec<Obj>) -> Result<Vec<(Obj, Obj)>, PickleError> {
        if items.len() % 2 != 0 {
            return Err(self.malformed("odd number of items for a dict"));
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    fn list_top(&mut self) -> Result<&mut Vec<Obj>, PickleError> {
        let top = self.peek()?;
        let err = self.malformed_fn();
        match self.node_mut(top) {
            Some(Node::List(v)) => Ok(v),
            _ => Err(err("APPEND to something that is not a list")),
        }
    }

    fn dict_top(&mut self) -> Result<&mut Vec<(Obj, Obj)>, PickleError> {
        let top = self.peek()?;
        let err = self.malformed_fn();
        match self.node_mut(top) {
            Some(Node::Dict(v)) => Ok(v),
            _ => Err(err("SETITEM on something that is not a dict")),
        }
    }

    fn text(&self, obj: Obj) -> Result<String, PickleError> {
        match self.node(obj) {
            Some(Node::Str(s)) => Ok(s.clone()),
            _ => Err(self.malformed("STACK_GLOBAL needs two strings")),
        }
    }

    fn node(&self, obj: Obj) -> Option<&Node> {
        match obj {
            Obj::Node(i) => self.arena.get(i),
            _ => None,
        }
    }

    fn node_mut(&mut self, obj: Obj) -> Option<&mut Node> {
        match obj {
            Obj::Node(i) => self.arena.get_mut(i),
            _ => None,
        }
    }

    fn push(&mut self, obj: Obj) -> Result<(), PickleError> {
        if self.stack.len() >= self.limits.max_stack {
            return Err(limit("stack entries", self.limits.max_stack));
        }
        self.stack.push(obj);
        Ok(())
    }

    fn push_node(&mut self, node: Node) -> Result<(), PickleError> {
        if self.arena.len() >= self.limits.max_objects {
            return Err(limit("objects", self.limits.max_objects));
        }
        self.arena.push(node);
        self.push(Obj::Node(self.arena.len() - 1))
    }

    /// Pops one value; never below the innermost mark.
    fn pop(&mut self) -> Result<Obj, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.malformed("stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn peek(&self) -> Result<Obj, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.last() {
            Some(v) if self.stack.len() > floor => Ok(*v),
            _ => Err(self.malformed("stack underflow")),
        }
    }

    /// Pops everything above the innermost mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Obj>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        Ok(self.stack.split_off(mark.min(self.stack.len())))
    }

    fn read_u8(&mut self, what: &'static str) -> Result<u8, PickleError> {
        Ok(self.read_bytes(1, what)?[0])
    }

    fn read_array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PickleError> {
        let mut out = [0; N];
        out.copy_from_slice(self.read_bytes(N, what)?);
        Ok(out)
    }

    /// Reads `n` bytes; a length beyond the end of the input is an error before any allocation.
    fn read_bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PickleError> {
        let data: &'a [u8] = self.data;
        let end = self.pos.checked_add(n).filter(|&e| e <= data.len());
        let end = end.ok_or(PickleError::Truncated {
            offset: self.pos,
            what,
        })?;
        let out = &data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The length operand of a string/bytes opcode: 1, 4 or 8 bytes depending on `op`.
    fn read_len(&mut self, op: u8, what: &'static str) -> Result<usize, PickleError> {
        let n: u64 = match op {
            0x8c | b'C' | b'U' => self.read_u8(what)?.into(),
            b'X' | b'B' => u32::from_le_bytes(self.read_array::<4>(what)?).into(),
            b'T' => {
                let n = i32::from_le_bytes(self.read_array::<4>(what)?);
                u64::try_from(n).map_err(|_| self.malformed("negative string length"))?
            }
            _ => u64::from_le_bytes(self.read_array::<8>(what)?),
        };
        usize::try_from(n).map_err(|_| PickleError::Truncated {
            offset: self.pos,
            what,
        })
    }

    fn read_line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos..];
        let len = rest.iter().position(|&b| b == b'\n');
        let len = len.ok_or(PickleError::Truncated {
            offset: self.pos,
            what: "a global name",
        })?;
        let line = std::str::from_utf8(&rest[..len])
            .map_err(|_| self.malformed("a global name is not valid UTF-8"))?
            .to_owned();
        self.pos += len + 1;
        Ok(line)
    }

    /// A [`Self::malformed`] that does not borrow `self`.
    fn malformed_fn(&self) -> impl Fn(&str) -> PickleError {
        let (offset, opcode) = (self.op_at, self.op_name);
        move |detail| PickleError::Malformed {
            offset,
            opcode,
            detail: detail.into(),
        }
    }

    fn malformed(&self, detail: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.op_at,
            opcode: self.op_name,
            detail: detail.into(),
        }
    }

    /// Copies the arena graph reachable from `top` into an owned [`Value`].
    fn finish(self, top: Obj) -> Result<Value, PickleError> {
        let mut copier = Copier {
            arena: &self.arena,
            limits: self.limits,
            values: 0,
            shared_bytes: 0,
            copied: vec![false; self.arena.len()],
        };
        copier.copy(top, 0)
    }
}

struct Copier<'a> {
    arena: &'a [Node],
    limits: &'a Limits,
    values: usize,
    shared_bytes: usize,
    /// Which string/bytes nodes were already copied once (later copies count as shared).
    copied: Vec<bool>,
}

impl Copier<'_> {
    fn copy(&mut self, obj: Obj, depth: usize) -> Result<Value, PickleError> {
        if depth > self.limits.max_depth {
            return Err(limit(
                "levels of nesting (or a reference cycle)",
                self.limits.max_depth,
            ));
        }
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(limit("values in the result", self.limits.max_values));
        }
        let i = match obj {
            Obj::None => return Ok(Value::None),
            Obj::Bool(b) => return Ok(Value::Bool(b)),
            Obj::Int(v) => return Ok(Value::Int(v)),
            Obj::Float(v) => return Ok(Value::Float(v)),
            Obj::Node(i) => i,
        };
        let d = depth + 1;
        Ok(match &self.arena[i] {
            Node::Str(s) => {
                self.count_bytes(i, s.len())?;
                Value::Str(s.clone())
            }
            Node::Bytes(b) => {
                self.count_bytes(i, b.len())?;
                Value::Bytes(b.clone())
            }
            Node::Tuple(items) => Value::Tuple(self.copy_all(items, d)?),
            Node::List(items) => Value::List(self.copy_all(items, d)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for &(k, v) in pairs {
                    out.push((self.copy(k, d)?, self.copy(v, d)?));
                }
                Value::Dict(out)
            }
            Node::Global { module, name } => Value::Global {
                module: module.clone(),
                name: name.clone(),
            },
            Node::Object {
                callable,
                args,
                state,
            } => Value::Object {
                callable: Box::new(self.copy(*callable, d)?),
                args: Box::new(self.copy(*args, d)?),
                state: match state {
                    Some(s) => Some(Box::new(self.copy(*s, d)?)),
                    None => None,
                },
            },
            Node::PersistentId(pid) => Value::PersistentId(Box::new(self.copy(*pid, d)?)),
        })
    }

    fn copy_all(&mut self, items: &[Obj], depth: usize) -> Result<Vec<Value>, PickleError> {
        items.iter().map(|&o| self.copy(o, depth)).collect()
    }

    fn count_bytes(&mut self, node: usize, len: usize) -> Result<(), PickleError> {
        if std::mem::replace(&mut self.copied[node], true) {
            self.shared_bytes = self.shared_bytes.saturating_add(len);
            if self.shared_bytes > self.limits.max_shared_bytes {
                return Err(limit(
                    "bytes of repeated strings",
                    self.limits.max_shared_bytes,
                ));
            }
        }
        Ok(())
    }
}

fn limit(what: &'static str, limit: usize) -> PickleError {
    PickleError::LimitExceeded { what, limit }
}

/// The name of an opcode, for error messages.
fn opcode_name(op: u8) -> &'static str {
    match op {
        0x80 => "PROTO",
        0x95 => "FRAME",
        b'.' => "STOP",
        b'(' => "MARK",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'N' => "NONE",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'M' => "BININT2",
        0x8a => "LONG1",
        0x8b => "LONG4",
        b'G' => "BINFLOAT",
        b'X' => "BINUNICODE",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        b'U' => "SHORT_BINSTRING",
        b'T' => "BINSTRING",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x8e => "BINBYTES8",
        0x96 => "BYTEARRAY8",
        b')' => "EMPTY_TUPLE",
        b']' => "EMPTY_LIST",
        b'}' => "EMPTY_DICT",
        b't' => "TUPLE",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        b'l' => "LIST",
        b'd' => "DICT",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b's' => "SETITEM",
        b'u' => "SETITEMS",
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'b' => "BUILD",
        b'Q' => "BINPERSID",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        0x94 => "MEMOIZE",
        b'h' => "BINGET",
        b'j' => "LONG_BINGET",
        _ => "unknown opcode",
    }
}
