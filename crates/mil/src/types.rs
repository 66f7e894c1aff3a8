//! Value types and literals of MIL: `tensor<fp16, [1, 64, 1, 32]>`, `int32`, `string("valid")`.

use half::f16;
use std::fmt;

/// An element type. `String` and `Uint64` occur only as scalars (op parameters, BLOBFILE offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Fp16,
    Fp32,
    Int8,
    Uint8,
    Int32,
    Bool,
    Uint64,
    String,
}

impl DType {
    /// Every dtype, in the order the parser tries them.
    pub const ALL: [DType; 8] = [
        DType::Fp16,
        DType::Fp32,
        DType::Int8,
        DType::Uint8,
        DType::Int32,
        DType::Bool,
        DType::Uint64,
        DType::String,
    ];

    /// The MIL spelling (`fp16`, `int32`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::Fp16 => "fp16",
            DType::Fp32 => "fp32",
            DType::Int8 => "int8",
            DType::Uint8 => "uint8",
            DType::Int32 => "int32",
            DType::Bool => "bool",
            DType::Uint64 => "uint64",
            DType::String => "string",
        }
    }

    /// Parses the MIL spelling.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// True for fp16 and fp32.
    pub fn is_float(self) -> bool {
        matches!(self, DType::Fp16 | DType::Fp32)
    }

    /// True for dtypes a tensor may hold (everything but `string` and `uint64`).
    pub fn is_tensor_element(self) -> bool {
        !matches!(self, DType::String | DType::Uint64)
    }

    /// Bytes per element in a device buffer or weight blob.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::Fp16 => 2,
            DType::Fp32 | DType::Int32 => 4,
            DType::Int8 | DType::Uint8 | DType::Bool => 1,
            DType::Uint64 => 8,
            DType::String => 0,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A statically shaped tensor type, `tensor<dtype, [d0, d1, ...]>`. Rank 0 is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn new(dtype: DType, shape: impl Into<Vec<usize>>) -> TensorType {
        TensorType {
            dtype,
            shape: shape.into(),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Bytes this tensor takes packed in a device buffer.
    pub fn size_bytes(&self) -> usize {
        self.numel() * self.dtype.size_bytes()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tensor<{}, [", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]>")
    }
}

/// The type of a MIL value: a scalar (`fp16`, `string`, ...) or a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Scalar(DType),
    Tensor(TensorType),
}

impl Type {
    pub fn dtype(&self) -> DType {
        match self {
            Type::Scalar(d) => *d,
            Type::Tensor(t) => t.dtype,
        }
    }

    /// The shape; a scalar has the empty shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Type::Scalar(_) => &[],
            Type::Tensor(t) => &t.shape,
        }
    }

    /// The tensor type, if this is one.
    pub fn as_tensor(&self) -> Option<&TensorType> {
        match self {
            Type::Tensor(t) => Some(t),
            Type::Scalar(_) => None,
        }
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape().iter().product()
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Scalar(d) => write!(f, "{d}"),
            Type::Tensor(t) => write!(f, "{t}"),
        }
    }
}

/// A scalar literal as MIL writes it: `fp16(0.5)`, `int32(3)`, `bool(true)`, `string("valid")`.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Fp16(f16),
    Fp32(f32),
    Int8(i8),
    Uint8(u8),
    Int32(i32),
    Bool(bool),
    Uint64(u64),
    String(String),
}

impl Scalar {
    pub fn dtype(&self) -> DType {
        match self {
            Scalar::Fp16(_) => DType::Fp16,
            Scalar::Fp32(_) => DType::Fp32,
            Scalar::Int8(_) => DType::Int8,
            Scalar::Uint8(_) => DType::Uint8,
            Scalar::Int32(_) => DType::Int32,
            Scalar::Bool(_) => DType::Bool,
            Scalar::Uint64(_) => DType::Uint64,
            Scalar::String(_) => DType::String,
        }
    }

    /// The numeric value as f64 (bool is 0/1); `None` for strings.
    pub fn as_f64(&self) -> Option<f64> {
        Some(match self {
            Scalar::Fp16(v) => v.to_f64(),
            Scalar::Fp32(v) => *v as f64,
            Scalar::Int8(v) => *v as f64,
            Scalar::Uint8(v) => *v as f64,
            Scalar::Int32(v) => *v as f64,
            Scalar::Bool(v) => *v as u8 as f64,
            Scalar::Uint64(v) => *v as f64,
            Scalar::String(_) => return None,
        })
    }
}

/// The elements of an inline tensor literal, stored in the element type's own width.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
    Int8(Vec<i8>),
    Uint8(Vec<u8>),
    Int32(Vec<i32>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Fp16(_) => DType::Fp16,
            TensorData::Fp32(_) => DType::Fp32,
            TensorData::Int8(_) => DType::Int8,
            TensorData::Uint8(_) => DType::Uint8,
            TensorData::Int32(_) => DType::Int32,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Fp16(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Int8(v) => v.len(),
            TensorData::Uint8(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements widened to f32 (exact for every dtype here except int32 beyond 2^24).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            TensorData::Fp16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::Fp32(v) => v.clone(),
            TensorData::Int8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Uint8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Int32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
        }
    }

    /// The elements as i64 when this is an integer or bool tensor (shapes, axes, perms).
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            TensorData::Int8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::Uint8(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::Int32(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::Bool(v) => Some(v.iter().map(|&x| x as i64).collect()),
            TensorData::Fp16(_) | TensorData::Fp32(_) => None,
        }
    }
}

/// A constant value: a scalar, an inline tensor, or a tensor stored in a weight blob file.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Scalar(Scalar),
    /// `tensor<int32, [4]>([1, 12, 64, 256])`
    Tensor {
        ty: TensorType,
        data: TensorData,
    },
    /// `tensor<fp16, [O, I, 1, 1]>(BLOBFILE(path = string("@model_path/weights/w.bin"), offset = uint64(64)))`.
    /// `offset` is the byte offset of the record header in the blob file, not of the payload.
    Blob {
        ty: TensorType,
        path: String,
        offset: u64,
    },
}

impl Literal {
    /// The type this literal has.
    pub fn ty(&self) -> Type {
        match self {
            Literal::Scalar(s) => Type::Scalar(s.dtype()),
            Literal::Tensor { ty, .. } | Literal::Blob { ty, .. } => Type::Tensor(ty.clone()),
        }
    }

    pub fn int32(v: i32) -> Literal {
        Literal::Scalar(Scalar::Int32(v))
    }

    pub fn bool(v: bool) -> Literal {
        Literal::Scalar(Scalar::Bool(v))
    }

    pub fn string(v: impl Into<String>) -> Literal {
        Literal::Scalar(Scalar::String(v.into()))
    }

    /// A rank-1 int32 tensor, the form MIL uses for shapes, axes, begins and perms.
    pub fn int32_tensor(values: &[i32]) -> Literal {
        Literal::Tensor {
            ty: TensorType::new(DType::Int32, [values.len()]),
            data: TensorData::Int32(values.to_vec()),
        }
    }

    /// Integer contents (scalar or inline tensor) as i64s, e.g. for a shape or axes argument.
    pub fn as_i64_vec(&self) -> Option<Vec<i64>> {
        match self {
            Literal::Scalar(s) => match s {
                Scalar::Int8(_)
                | Scalar::Uint8(_)
                | Scalar::Int32(_)
                | Scalar::Bool(_)
                | Scalar::Uint64(_) => s.as_f64().map(|v| vec![v as i64]),
                _ => None,
            },
            Literal::Tensor { data, .. } => data.to_i64(),
            Literal::Blob { .. } => None,
        }
    }

    /// A scalar's numeric value.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Literal::Scalar(s) => s.as_f64(),
            _ => None,
        }
    }

    /// A bool scalar's value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Literal::Scalar(Scalar::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A string scalar's value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Literal::Scalar(Scalar::String(s)) => Some(s),
            _ => None,
        }
    }
}
