//! Types (`tensor<fp16, [1, 64, 1, 32]>`, `int32`) and literals (`fp16(0x1p-3)`,
//! `tensor<int32, [2]>([1, 1])`, `BLOBFILE(...)`), with exact number conversion.

use super::cursor::Cursor;
use super::lexer::{NumberForm, Pos, Tok};
use super::suggest::did_you_mean;
use crate::error::Result;
use crate::types::{DType, Literal, Scalar, TensorData, TensorType, Type};

/// The most elements a tensor type may have. Far beyond any device (2^40 fp16 values is 2 TB);
/// the bound exists so that element counts and byte sizes computed from a parsed type can never
/// overflow `usize`.
pub(crate) const MAX_ELEMENTS: usize = 1 << 40;

impl Cursor {
    /// A dtype name, with a suggestion when it is misspelled.
    fn parse_dtype(&mut self) -> Result<(DType, Pos)> {
        let (name, pos) =
            self.expect_ident("a type such as `fp16` or `tensor<fp16, [1, 8, 1, 32]>`")?;
        match DType::from_name(&name) {
            Some(d) => Ok((d, pos)),
            None => {
                let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
                let otherwise = format!("; MIL types are {}", names.join(", "));
                Err(pos.error(format!(
                    "unknown type `{name}`{}",
                    did_you_mean(&name, &names, &otherwise)
                )))
            }
        }
    }

    /// `tensor<DTYPE, [d0, ...]>` or a scalar dtype.
    pub fn parse_type(&mut self) -> Result<Type> {
        if self.at_ident("tensor") {
            self.next();
            Ok(Type::Tensor(self.parse_tensor_type_body()?))
        } else {
            Ok(Type::Scalar(self.parse_dtype()?.0))
        }
    }

    /// `<DTYPE, [d0, ...]>`, after the word `tensor`.
    fn parse_tensor_type_body(&mut self) -> Result<TensorType> {
        self.expect_punct('<', "after `tensor`, as in `tensor<fp16, [1, 8, 1, 32]>`")?;
        let (dtype, dtype_pos) = self.parse_dtype()?;
        if !dtype.is_tensor_element() {
            return Err(dtype_pos.error(format!(
                "a tensor cannot hold `{dtype}`; tensor elements are fp16, fp32, int8, uint8, int32 or bool"
            )));
        }
        self.expect_punct(',', "between the element type and the shape")?;
        let shape_pos = self.expect_punct('[', "to open the shape, as in `[1, 8, 1, 32]`")?;
        let mut shape = Vec::new();
        let mut numel: usize = 1;
        while !self.at_punct(']') {
            if !shape.is_empty() {
                self.expect_punct(',', "between dimensions")?;
            }
            let token = self.next();
            let dim = match &token.tok {
                Tok::Number(text, NumberForm::DecimalInt) => text.parse::<usize>().ok(),
                Tok::Punct('?') => {
                    return Err(token.pos.error(
                        "dimension `?` is not allowed: the ANE compiles static shapes only; write the size",
                    ))
                }
                _ => None,
            };
            let Some(dim) = dim else {
                return Err(token.pos.error(format!(
                    "expected a dimension size (a non-negative integer), found {}",
                    token.tok
                )));
            };
            numel = numel.saturating_mul(dim);
            shape.push(dim);
        }
        self.next();
        if numel > MAX_ELEMENTS {
            return Err(shape_pos.error(format!(
                "shape {shape:?} has {numel} elements, more than any device holds (limit 2^40); check the dimensions"
            )));
        }
        self.expect_punct('>', "to close the tensor type")?;
        Ok(TensorType::new(dtype, shape))
    }

    /// A literal: `fp16(0.5)`, `string("x")`, `tensor<T, [..]>([..])` or a BLOBFILE tensor.
    /// Returns the literal and where it starts.
    pub fn parse_literal(&mut self) -> Result<(Literal, Pos)> {
        let pos = self.pos();
        if self.at_ident("tensor") {
            self.next();
            let ty = self.parse_tensor_type_body()?;
            self.expect_punct(
                '(',
                "after the tensor type of a literal, as in `tensor<int32, [2]>([1, 1])`",
            )?;
            let literal = if self.at_ident("BLOBFILE") {
                self.parse_blobfile(ty)?
            } else {
                self.parse_tensor_elements(ty)?
            };
            self.expect_punct(')', "to close the tensor literal")?;
            return Ok((literal, pos));
        }
        let literal = match &self.peek().tok {
            Tok::Ident(word) if DType::from_name(word).is_some() => {
                let (dtype, _) = self.parse_dtype()?;
                self.expect_punct('(', &format!("after `{dtype}` in a literal, as in `{dtype}(...)`"))?;
                let scalar = self.parse_scalar(dtype)?;
                self.expect_punct(')', &format!("to close the `{dtype}` literal"))?;
                Literal::Scalar(scalar)
            }
            _ => {
                return Err(self.unexpected(
                    "a typed literal such as `int32(1)`, `string(\"x\")` or `tensor<int32, [2]>([1, 1])`",
                ))
            }
        };
        Ok((literal, pos))
    }

    /// `BLOBFILE(path = string("..."), offset = uint64(N))`, keys in either order.
    fn parse_blobfile(&mut self, ty: TensorType) -> Result<Literal> {
        self.next();
        self.expect_punct('(', "after `BLOBFILE`")?;
        let mut path = None;
        let mut offset = None;
        while !self.at_punct(')') {
            if path.is_some() || offset.is_some() {
                self.expect_punct(',', "between BLOBFILE fields")?;
            }
            let (key, key_pos) = self.expect_ident("`path` or `offset` in BLOBFILE")?;
            self.expect_punct('=', &format!("after `{key}`"))?;
            let (value, value_pos) = self.parse_literal()?;
            let slot_taken = match (key.as_str(), value) {
                ("path", Literal::Scalar(Scalar::String(p))) => path.replace(p).is_some(),
                ("offset", Literal::Scalar(Scalar::Uint64(o))) => offset.replace(o).is_some(),
                ("path", _) => {
                    return Err(value_pos.error(
                        "BLOBFILE `path` must be a string, as in `path = string(\"@model_path/weights/w.bin\")`",
                    ))
                }
                ("offset", _) => {
                    return Err(value_pos.error(
                        "BLOBFILE `offset` must be a uint64, as in `offset = uint64(64)`",
                    ))
                }
                _ => {
                    return Err(key_pos.error(format!(
                        "unknown BLOBFILE field `{key}`; the fields are `path` and `offset`"
                    )))
                }
            };
            if slot_taken {
                return Err(
                    key_pos.error(format!("BLOBFILE field `{key}` is given twice; keep one"))
                );
            }
        }
        let close = self.next().pos;
        match (path, offset) {
            (Some(path), Some(offset)) => Ok(Literal::Blob { ty, path, offset }),
            (None, _) => Err(close.error("BLOBFILE is missing `path = string(\"...\")`")),
            (_, None) => Err(close.error("BLOBFILE is missing `offset = uint64(...)`")),
        }
    }

    /// `[e0, e1, ...]`, a flat list whose length must equal the type's element count.
    fn parse_tensor_elements(&mut self, ty: TensorType) -> Result<Literal> {
        let open = self.expect_punct(
            '[',
            "to open the element list, as in `([1, 2])`, or `BLOBFILE(...)`",
        )?;
        let mut data = match ty.dtype {
            DType::Fp16 => TensorData::Fp16(Vec::new()),
            DType::Fp32 => TensorData::Fp32(Vec::new()),
            DType::Int8 => TensorData::Int8(Vec::new()),
            DType::Uint8 => TensorData::Uint8(Vec::new()),
            DType::Int32 => TensorData::Int32(Vec::new()),
            DType::Bool => TensorData::Bool(Vec::new()),
            other @ (DType::Uint64 | DType::String) => {
                return Err(open.error(format!("a tensor cannot hold `{other}`")))
            }
        };
        while !self.at_punct(']') {
            if !data.is_empty() {
                self.expect_punct(',', "between tensor elements")?;
            }
            match &mut data {
                TensorData::Fp16(v) => v.push(self.parse_f16()?),
                TensorData::Fp32(v) => v.push(self.parse_f32()?),
                TensorData::Int8(v) => v.push(self.parse_int(DType::Int8)? as i8),
                TensorData::Uint8(v) => v.push(self.parse_int(DType::Uint8)? as u8),
                TensorData::Int32(v) => v.push(self.parse_int(DType::Int32)? as i32),
                TensorData::Bool(v) => v.push(self.parse_bool()?),
            }
        }
        self.next();
        // The shape was bounded by MAX_ELEMENTS, so this product cannot overflow.
        let expected = ty.numel();
        if data.len() != expected {
            return Err(open.error(format!(
                "{ty} needs {expected} element{}, but the list has {}; make the shape and the values agree",
                if expected == 1 { "" } else { "s" },
                data.len()
            )));
        }
        Ok(Literal::Tensor { ty, data })
    }

    /// One value of `dtype`, without the `dtype(...)` wrapper: `0.5`, `-0x1p-3`, `true`, `"s"`.
    /// The `as` casts are exact: `parse_int` has checked the dtype's range.
    fn parse_scalar(&mut self, dtype: DType) -> Result<Scalar> {
        Ok(match dtype {
            DType::String => Scalar::String(self.expect_str("a string in double quotes")?.0),
            DType::Bool => Scalar::Bool(self.parse_bool()?),
            DType::Fp16 => Scalar::Fp16(self.parse_f16()?),
            DType::Fp32 => Scalar::Fp32(self.parse_f32()?),
            DType::Int8 => Scalar::Int8(self.parse_int(dtype)? as i8),
            DType::Uint8 => Scalar::Uint8(self.parse_int(dtype)? as u8),
            DType::Int32 => Scalar::Int32(self.parse_int(dtype)? as i32),
            DType::Uint64 => Scalar::Uint64(self.parse_int(dtype)? as u64),
        })
    }

    fn parse_bool(&mut self) -> Result<bool> {
        let (word, pos) = self.expect_ident("`true` or `false`")?;
        match word.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(pos.error(format!("expected `true` or `false`, found `{word}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;

    fn literal(text: &str) -> Result<Literal> {
        Cursor::new(tokenize(text)?).parse_literal().map(|(l, _)| l)
    }

    #[test]
    fn tensor_literals_check_their_element_count() {
        assert_eq!(
            literal("tensor<int32, [2]>([1, -1])").unwrap(),
            Literal::int32_tensor(&[1, -1])
        );
        assert_eq!(
            literal("tensor<fp32, []>([2.5])").unwrap(),
            Literal::Tensor {
                ty: TensorType::new(DType::Fp32, []),
                data: TensorData::Fp32(vec![2.5])
            }
        );
        let err = literal("tensor<int32, [4]>([1, 2])").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1, column 20: tensor<int32, [4]> needs 4 elements, but the list has 2; make the shape and the values agree"
        );
        let err = literal("tensor<fp16, [2, ?]>([1])").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 1, column 18: dimension `?` is not allowed"),
            "{err}"
        );
        let err = literal("tensor<fp16, [1099511627777]>([1])").unwrap_err();
        assert!(
            err.to_string().contains("more than any device holds"),
            "{err}"
        );
    }

    #[test]
    fn blobfile_fields_in_any_order() {
        let expected = Literal::Blob {
            ty: TensorType::new(DType::Fp16, [2, 3]),
            path: "w.bin".into(),
            offset: 64,
        };
        for text in [
            "tensor<fp16, [2, 3]>(BLOBFILE(path = string(\"w.bin\"), offset = uint64(64)))",
            "tensor<fp16, [2, 3]>(BLOBFILE(offset = uint64(64), path = string(\"w.bin\")))",
        ] {
            assert_eq!(literal(text).unwrap(), expected);
        }
        let err = literal("tensor<fp16, [2]>(BLOBFILE(path = string(\"w\")))").unwrap_err();
        assert!(err.to_string().contains("missing `offset"), "{err}");
        let err = literal("tensor<fp16, [2]>(BLOBFILE(path = string(\"w\"), offset = int32(64)))")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("column 57: BLOBFILE `offset` must be a uint64"),
            "{err}"
        );
    }
}
