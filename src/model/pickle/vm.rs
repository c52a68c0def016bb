//! The opcode loop. Objects are arena nodes addressed by index (see [`super::arena`]), so memo
//! entries alias the way Python objects do.

use std::collections::HashMap;

use super::arena::{copy_out, Node, Obj};
use super::opcodes as op;
use super::{Limits, PickleError, Value};

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
        vm.op_name = op::name(op);
        if op == op::STOP {
            let top = vm.pop()?;
            return vm.finish(top);
        }
        vm.step(op)?;
    }
}

impl<'a> Vm<'a> {
    fn step(&mut self, op: u8) -> Result<(), PickleError> {
        match op {
            op::PROTO => {
                let proto = self.read_u8("the protocol number")?;
                if proto > 5 {
                    return Err(self.malformed(format!("protocol {proto} is newer than 5")));
                }
            }
            op::FRAME => {
                self.read_bytes(8, "a frame length")?;
            }
            op::MARK => {
                self.marks.push(self.stack.len());
            }
            op::POP => {
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() > floor {
                    self.stack.pop();
                } else {
                    self.pop_mark()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let top = self.peek()?;
                self.push(top)?;
            }
            op::NONE => self.push(Obj::None)?,
            op::NEWTRUE => self.push(Obj::Bool(true))?,
            op::NEWFALSE => self.push(Obj::Bool(false))?,
            op::BININT => {
                let b = self.read_array::<4>("a 4-byte int")?;
                self.push(Obj::Int(i32::from_le_bytes(b).into()))?;
            }
            op::BININT1 => {
                let v = self.read_u8("a 1-byte int")?;
                self.push(Obj::Int(v.into()))?;
            }
            op::BININT2 => {
                let b = self.read_array::<2>("a 2-byte int")?;
                self.push(Obj::Int(u16::from_le_bytes(b).into()))?;
            }
            op::LONG1 => {
                let n = self.read_u8("a long length")?.into();
                self.long(n)?;
            }
            op::LONG4 => {
                let n = i32::from_le_bytes(self.read_array::<4>("a long length")?);
                let n = usize::try_from(n).map_err(|_| self.malformed("negative long length"))?;
                self.long(n)?;
            }
            op::BINFLOAT => {
                let b = self.read_array::<8>("a float")?;
                self.push(Obj::Float(f64::from_be_bytes(b)))?;
            }
            op::BINUNICODE | op::SHORT_BINUNICODE | op::BINUNICODE8 => {
                let n = self.read_len(op, "a string length")?;
                let raw = self.read_bytes(n, "string data")?;
                let s = std::str::from_utf8(raw)
                    .map_err(|_| self.malformed("a unicode string is not valid UTF-8"))?;
                let s = s.to_owned();
                self.push_node(Node::Str(s))?;
            }
            op::SHORT_BINSTRING | op::BINSTRING => {
                // Protocol 1 byte strings: decoded as latin-1 like `encoding="latin1"` does.
                let n = self.read_len(op, "a string length")?;
                let s = self
                    .read_bytes(n, "string data")?
                    .iter()
                    .map(|&b| char::from(b))
                    .collect();
                self.push_node(Node::Str(s))?;
            }
            op::BINBYTES | op::SHORT_BINBYTES | op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.read_len(op, "a bytes length")?;
                let b = self.read_bytes(n, "bytes data")?.to_vec();
                self.push_node(Node::Bytes(b))?;
            }
            op::EMPTY_TUPLE => self.push_node(Node::Tuple(Vec::new()))?,
            op::EMPTY_LIST => self.push_node(Node::List(Vec::new()))?,
            op::EMPTY_DICT => self.push_node(Node::Dict(Vec::new()))?,
            op::TUPLE => {
                let items = self.pop_mark()?;
                self.push_node(Node::Tuple(items))?;
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(op - op::TUPLE1) + 1;
                let floor = self.marks.last().copied().unwrap_or(0);
                if self.stack.len() < floor + n {
                    return Err(self.malformed("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.push_node(Node::Tuple(items))?;
            }
            op::LIST => {
                let items = self.pop_mark()?;
                self.push_node(Node::List(items))?;
            }
            op::DICT => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.push_node(Node::Dict(pairs))?;
            }
            op::APPEND => {
                let v = self.pop()?;
                self.list_top()?.push(v);
            }
            op::APPENDS => {
                let items = self.pop_mark()?;
                self.list_top()?.extend(items);
            }
            op::SETITEM => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.dict_top()?.push((k, v));
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let pairs = self.pairs(items)?;
                self.dict_top()?.extend(pairs);
            }
            op::GLOBAL => {
                let module = self.read_line()?;
                let name = self.read_line()?;
                self.push_node(Node::Global { module, name })?;
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (module, name) = (self.text(module)?, self.text(name)?);
                self.push_node(Node::Global { module, name })?;
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let node = self.reduce(callable, args)?;
                self.push_node(node)?;
            }
            op::NEWOBJ => {
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_node(Node::Object {
                    callable,
                    args,
                    state: None,
                })?;
            }
            op::NEWOBJ_EX => {
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
            op::BUILD => {
                let state = self.pop()?;
                let target = self.peek()?;
                match self.node_mut(target) {
                    Some(Node::Object { state: slot, .. }) => *slot = Some(state),
                    // OrderedDict state (the `_metadata` of a torch state_dict): not needed.
                    Some(Node::Dict(_)) => {}
                    _ => return Err(self.malformed("BUILD on something that is not an object")),
                }
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                self.push_node(Node::PersistentId(pid))?;
            }
            op::BINPUT | op::LONG_BINPUT | op::MEMOIZE => {
                let idx = match op {
                    op::BINPUT => self.read_u8("a memo index")?.into(),
                    op::LONG_BINPUT => {
                        u32::from_le_bytes(self.read_array::<4>("a memo index")?).into()
                    }
                    _ => self.memo.len() as u64,
                };
                let top = self.peek()?;
                if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&idx) {
                    return Err(limit("memo entries", self.limits.max_memo));
                }
                self.memo.insert(idx, top);
            }
            op::BINGET | op::LONG_BINGET => {
                let idx: u64 = if op == op::BINGET {
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
        if !items.len().is_multiple_of(2) {
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
            op::SHORT_BINUNICODE | op::SHORT_BINBYTES | op::SHORT_BINSTRING => {
                self.read_u8(what)?.into()
            }
            op::BINUNICODE | op::BINBYTES => u32::from_le_bytes(self.read_array::<4>(what)?).into(),
            op::BINSTRING => {
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
        copy_out(&self.arena, top, self.limits)
    }
}

pub(super) fn limit(what: &'static str, limit: usize) -> PickleError {
    PickleError::LimitExceeded { what, limit }
}
