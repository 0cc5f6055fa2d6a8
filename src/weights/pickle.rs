//! A restricted unpickler for PyTorch checkpoints. It understands the opcodes `torch.save`
//! emits and builds only plain values, dicts, tuples and tensor references; any global
//! outside a short allow-list, and any opcode it does not know, is refused. Nothing from the
//! file is ever executed.
//!
//! What a file can make it build is bounded by the file's size: every value pushed or copied
//! out of the memo is charged against a budget proportional to the stream's length (a memo
//! that doubles a list 40 times stops at the budget, not at 24 GB), and containers nest at
//! most [`MAX_DEPTH`] deep (so dropping or printing a value never overflows the stack).

use std::collections::BTreeMap;

/// A value rebuilt from a pickle stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// An integer too wide for i64 (LONG1 of more than 8 bytes), kept as its bytes.
    BigInt(Vec<u8>),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// An allowed global, e.g. `torch FloatStorage`.
    Global(String, String),
    /// The persistent id of a storage: what `torch.save` replaces storages with.
    PersistentId(Box<Value>),
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`.
    Tensor(TensorRef),
    Mark,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// The persistent id tuple: ('storage', type, key, location, numel, …).
    pub storage: Box<Value>,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "FloatStorage"),
    ("torch", "DoubleStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
    ("torch", "Size"),
];

/// How deep containers may nest. A state dict is 3 deep (dict, tensor, persistent id tuple).
pub const MAX_DEPTH: usize = 32;
/// Value units (nodes plus string bytes) a stream may build per byte of its length, on top of
/// [`BUDGET_BASE`]. Real checkpoints build about one unit per byte.
const BUDGET_PER_BYTE: usize = 16;
const BUDGET_BASE: usize = 1 << 16;

/// Reads one pickle from `data`; returns the value and how many bytes it used.
pub fn read(data: &[u8]) -> Result<(Value, usize), String> {
    Unpickler {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: BTreeMap::new(),
        budget: data
            .len()
            .saturating_mul(BUDGET_PER_BYTE)
            .saturating_add(BUDGET_BASE),
    }
    .run()
}

/// The size of `v` in budget units: one per node plus the bytes of its strings.
fn weight(v: &Value) -> usize {
    match v {
        Value::Str(s) => 1 + s.len(),
        Value::Bytes(b) | Value::BigInt(b) => 1 + b.len(),
        Value::Tuple(items) | Value::List(items) => {
            1 + items.iter().map(weight).fold(0, usize::saturating_add)
        }
        Value::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| weight(k).saturating_add(weight(v)))
            .fold(1, usize::saturating_add),
        Value::Global(m, n) => 1 + m.len() + n.len(),
        Value::PersistentId(inner) => 1 + weight(inner),
        Value::Tensor(t) => 1 + weight(&t.storage) + t.size.len() + t.stride.len(),
        Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Mark => 1,
    }
}

/// How deep `v` nests (a scalar is 0). Values on the stack are at most [`MAX_DEPTH`] deep,
/// so this recursion is bounded.
fn depth(v: &Value) -> usize {
    match v {
        Value::Tuple(items) | Value::List(items) => 1 + deepest(items),
        Value::Dict(pairs) => {
            1 + pairs
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::PersistentId(inner) => 1 + depth(inner),
        Value::Tensor(t) => 1 + depth(&t.storage),
        _ => 0,
    }
}

/// `v` for an error message, cut to a readable length.
pub fn brief(v: &Value) -> String {
    let mut s = format!("{v:?}");
    if s.len() > 160 {
        let mut end = 160;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …");
    }
    s
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: BTreeMap<u32, Value>,
    /// Units left to build (see [`weight`]).
    budget: usize,
}

impl<'a> Unpickler<'a> {
    fn charge(&mut self, units: usize) -> Result<(), String> {
        self.budget = self.budget.checked_sub(units).ok_or_else(|| {
            format!(
                "the pickle builds far more than its {} bytes hold (memo copies?); refused",
                self.data.len()
            )
        })?;
        Ok(())
    }
    /// Pushes a value; containers built from stack items are checked for nesting.
    fn push(&mut self, v: Value) -> Result<(), String> {
        self.charge(1)?;
        nest_check(depth(&v))?;
        self.stack.push(v);
        Ok(())
    }
    /// The value on top of the stack, for a memo PUT.
    fn top_copy(&mut self) -> Result<Value, String> {
        let v = self.top()?.clone();
        self.charge(weight(&v))?;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("pickle truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short read")?,
        ))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated line in pickle")?;
        let s = String::from_utf8_lossy(&rest[..nl]).into_owned();
        self.pos += nl + 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn str_of(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        Ok(Value::Str(
            String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in pickle string")?,
        ))
    }
    fn global(&mut self, module: String, name: String) -> Result<(), String> {
        if ALLOWED_GLOBALS
            .iter()
            .any(|(m, n)| *m == module && *n == name)
        {
            self.push(Value::Global(module, name))?;
            Ok(())
        } else {
            Err(format!("UNSAFE:global {module}.{name}"))
        }
    }

    fn run(mut self) -> Result<(Value, usize), String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.u64()?; // FRAME
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok((v, self.pos));
                }
                b'(' => self.push(Value::Mark)?,
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?;
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?;
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?;
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        self.push(Value::BigInt(b.to_vec()))?;
                        continue;
                    }
                    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
                        [0xffu8; 8]
                    } else {
                        [0u8; 8]
                    };
                    buf[..n].copy_from_slice(b);
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l.as_str() {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => Value::Int(s.trim().parse().map_err(|_| format!("bad INT '{s}'"))?),
                    };
                    self.push(v)?;
                }
                b'L' => {
                    let l = self.line()?;
                    let v = l
                        .trim_end_matches('L')
                        .parse()
                        .map_err(|_| format!("bad LONG '{l}'"))?;
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().map_err(|_| "short read")?);
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.str_of(n)?;
                    self.push(v)?;
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.push(Value::Bytes(b))?;
                }
                b')' => self.push(Value::Tuple(vec![]))?,
                b']' => self.push(Value::List(vec![]))?,
                b'}' => self.push(Value::Dict(vec![]))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(pairs(items)?))?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    nest_check(1 + depth(&v))?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return Err("APPEND to a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    nest_check(1 + deepest(&items))?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return Err("APPENDS to a non-list".into()),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    nest_check(1 + depth(&k).max(depth(&v)))?;
                    match self.top()? {
                        Value::Dict(d) => d.push((k, v)),
                        _ => return Err("SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    nest_check(1 + deepest(&items))?;
                    let new = pairs(items)?;
                    match self.top()? {
                        Value::Dict(d) => d.extend(new),
                        _ => return Err("SETITEMS on a non-dict".into()),
                    }
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top_copy()?;
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top_copy()?;
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    let v = self.top_copy()?;
                    self.memo.insert(i, v);
                }
                b'p' => {
                    let i: u32 = self.line()?.parse().map_err(|_| "bad PUT index")?;
                    let v = self.top_copy()?;
                    self.memo.insert(i, v);
                }
                b'h' | b'j' | b'g' => {
                    let i = match op {
                        b'h' => self.u8()? as u32,
                        b'j' => self.u32()?,
                        _ => self.line()?.parse().map_err(|_| "bad GET index")?,
                    };
                    let units = self
                        .memo
                        .get(&i)
                        .map(weight)
                        .ok_or_else(|| format!("pickle memo {i} missing"))?;
                    // charged before the copy is made
                    self.charge(units)?;
                    let v = self.memo.get(&i).cloned().unwrap_or(Value::None);
                    self.push(v)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.global(m, n)?,
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersistentId(Box::new(pid)))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = reduce(callable, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    // NEWOBJ: only OrderedDict-like empty construction is allowed
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = reduce(cls, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: state for the object below. A state dict's `_metadata` is dropped;
                    // tensors rebuilt from `_rebuild_parameter` carry no state we need.
                    self.pop()?;
                }
                other => {
                    return Err(format!(
                        "UNSAFE:opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ));
                }
            }
        }
    }
}

/// The depth of the deepest of `items` (0 for none).
fn deepest(items: &[Value]) -> usize {
    items.iter().map(depth).max().unwrap_or(0)
}

fn nest_check(depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nest more than {MAX_DEPTH} deep; refused"));
    }
    Ok(())
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn usizes(v: &Value) -> Result<Vec<usize>, String> {
    match v {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                other => Err(format!(
                    "expected a non-negative integer, found {}",
                    brief(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "expected a tuple of integers, found {}",
            brief(other)
        )),
    }
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global(module, name) = callable else {
        return Err(format!("REDUCE on a non-callable {}", brief(&callable)));
    };
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") => Ok(Value::Dict(vec![])),
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            if args.len() < 4 {
                return Err("_rebuild_tensor with too few arguments".into());
            }
            let Value::PersistentId(storage) = &args[0] else {
                return Err("_rebuild_tensor without a storage".into());
            };
            let offset = match &args[1] {
                Value::Int(i) if *i >= 0 => *i as usize,
                other => return Err(format!("bad storage offset {}", brief(other))),
            };
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset,
                size: usizes(&args[2])?,
                stride: usizes(&args[3])?,
            }))
        }
        ("torch._utils", "_rebuild_parameter") => args
            .into_iter()
            .next()
            .ok_or_else(|| "_rebuild_parameter without data".to_string()),
        ("torch", "Size") => Ok(args.into_iter().next().unwrap_or(Value::Tuple(vec![]))),
        _ => Err(format!("UNSAFE:call of {module}.{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_dict() {
        // pickle.dumps({'a': (1, 2.5), 'b': [True, None]}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01G@\x04\x00\x00\x00\x00\x00\x00\x86q\x02X\x01\x00\x00\x00bq\x03]q\x04(\x88Neu.";
        let (v, used) = read(bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            v,
            Value::Dict(vec![
                (
                    Value::Str("a".into()),
                    Value::Tuple(vec![Value::Int(1), Value::Float(2.5)])
                ),
                (
                    Value::Str("b".into()),
                    Value::List(vec![Value::Bool(true), Value::None])
                ),
            ])
        );
    }

    #[test]
    fn refuses_an_arbitrary_global() {
        // pickle of os.system('echo hi'), protocol 2
        let bytes = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
        let err = read(bytes).unwrap_err();
        assert_eq!(err, "UNSAFE:global posix.system");
    }

    #[test]
    fn truncated_stream_is_an_error_not_a_panic() {
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00";
        assert!(read(bytes).unwrap_err().contains("truncated"));
    }
}
