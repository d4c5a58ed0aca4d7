//! The subset of Python's pickle protocol 2 that a TorchScript archive's
//! `data.pkl` needs: module objects of `__torch__` classes whose state is a
//! dict of attributes, and tensors that point at storages stored next to it.

/// One value of the module tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// A TorchScript module: an object of class `__torch__.<module>.<class>`
    /// rebuilt from its attribute dict.
    Object {
        module: String,
        class: String,
        attributes: Vec<(String, Value)>,
    },
    /// A tensor over the whole of storage `key` (the archive's `data/<key>`).
    Tensor(TensorRef),
}

/// A contiguous tensor whose bytes are in the archive's `data/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub key: String,
    /// `FloatStorage` or `LongStorage`.
    pub storage: &'static str,
    pub shape: Vec<i64>,
    pub requires_grad: bool,
}

impl TensorRef {
    fn numel(&self) -> i64 {
        self.shape.iter().product()
    }

    /// Row-major strides of a contiguous tensor.
    fn strides(&self) -> Vec<i64> {
        let mut strides = vec![1; self.shape.len()];
        for i in (0..self.shape.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.shape[i + 1].max(1);
        }
        strides
    }
}

/// `value` as a complete pickle.
pub fn dumps(value: &Value) -> Vec<u8> {
    let mut out = vec![0x80, 2]; // PROTO 2
    write(&mut out, value);
    out.push(b'.'); // STOP
    out
}

fn global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(b'c');
    out.extend_from_slice(module.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
}

fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'X'); // BINUNICODE
    let len = u32::try_from(text.len()).expect("attribute names and keys are short");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn int(out: &mut Vec<u8>, value: i64) {
    match i32::try_from(value) {
        Ok(small) => {
            out.push(b'J'); // BININT
            out.extend_from_slice(&small.to_le_bytes());
        }
        Err(_) => {
            out.extend_from_slice(&[0x8a, 8]); // LONG1 of 8 bytes
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

fn tuple_of_ints(out: &mut Vec<u8>, values: &[i64]) {
    out.push(b'('); // MARK
    for &v in values {
        int(out, v);
    }
    out.push(b't'); // TUPLE
}

fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(true) => out.push(0x88),
        Value::Bool(false) => out.push(0x89),
        Value::Object { module, class, attributes } => {
            global(out, module, class);
            out.extend_from_slice(&[b')', 0x81, b'}']); // EMPTY_TUPLE NEWOBJ EMPTY_DICT
            if !attributes.is_empty() {
                out.push(b'(');
                for (name, value) in attributes {
                    string(out, name);
                    write(out, value);
                }
                out.push(b'u'); // SETITEMS
            }
            out.push(b'b'); // BUILD
        }
        Value::Tensor(t) => {
            // torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)
            global(out, "torch._utils", "_rebuild_tensor_v2");
            out.push(b'(');
            out.push(b'(');
            string(out, "storage");
            global(out, "torch", t.storage);
            string(out, &t.key);
            string(out, "cpu");
            int(out, t.numel());
            out.push(b't');
            out.push(b'Q'); // BINPERSID
            int(out, 0);
            tuple_of_ints(out, &t.shape);
            tuple_of_ints(out, &t.strides());
            out.push(if t.requires_grad { 0x88 } else { 0x89 });
            global(out, "collections", "OrderedDict");
            out.extend_from_slice(b")R"); // OrderedDict()
            out.extend_from_slice(b"tR");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        let t = TensorRef {
            key: "0".into(),
            storage: "FloatStorage",
            shape: vec![4, 3, 2, 5],
            requires_grad: true,
        };
        assert_eq!(t.strides(), [30, 10, 5, 1]);
        assert_eq!(t.numel(), 120);
        let scalar = TensorRef { shape: vec![], ..t };
        assert_eq!((scalar.strides(), scalar.numel()), (vec![], 1));
    }

    #[test]
    fn objects_pickle_as_newobj_then_build() {
        let value = Value::Object {
            module: "__torch__.m".into(),
            class: "C".into(),
            attributes: vec![("training".into(), Value::Bool(false))],
        };
        let expected = b"\x80\x02c__torch__.m\nC\n)\x81}(X\x08\x00\x00\x00training\x89ub.";
        assert_eq!(dumps(&value), expected);
    }
}
