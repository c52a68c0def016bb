//! The objects a pickle creates, kept in an arena while the VM runs, and the budgeted copy of
//! the result into an owned [`Value`] tree.

use super::vm::limit;
use super::{Limits, PickleError, Value};

/// A stack slot: scalars inline, everything else an index into the arena.
#[derive(Clone, Copy, Debug)]
pub(super) enum Obj {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Node(usize),
}

#[derive(Debug)]
pub(super) enum Node {
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

/// Copies the graph reachable from `top` into an owned [`Value`], failing on cycles, excessive
/// depth, or sharing that would multiply the size of the result.
pub(super) fn copy_out(arena: &[Node], top: Obj, limits: &Limits) -> Result<Value, PickleError> {
    let mut copier = Copier {
        arena,
        limits,
        values: 0,
        shared_bytes: 0,
        copied: vec![false; arena.len()],
    };
    copier.copy(top, 0)
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
