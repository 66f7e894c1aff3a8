//! Types (`tensor<fp16, [1, 64, 1, 32]>`, `int32`) and literals (`fp16(0x1p-3)`,
//! `tensor<int32, [2]>([1, 1])`, `BLOBFILE(...)`), with exact number conversion.

use super::cursor::Cursor;
use super::lexer::{NumberForm, Pos, Tok};
use super::suggest::did_you_mean;
use crate::error::Result;
use crate::types::{DType, Literal, Scalar, TensorData, TensorType, Type};
use half::f16;

/// The most elements a tensor type may have. Far beyond any device (2^40 fp16 values is 2 TB);
/// the bound exists so that element counts and byte sizes computed from a parsed type can never
/// overflow `usize`.
pub(crate) const MAX_ELEMENTS: usize = 1 << 40;

/// A number as written, sign included, before it is converted to a dtype.
struct Number {
    negative: bool,
    body: NumberBody,
    pos: Pos,
}

enum NumberBody {
    Digits(String, NumberForm),
    Inf,
    Nan,
}

impl Number {
    fn text(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        match &self.body {
            NumberBody::Digits(t, _) => format!("{sign}{t}"),
            NumberBody::Inf => format!("{sign}inf"),
            NumberBody::Nan => format!("{sign}nan"),
        }
    }
}

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

    /// An fp16 value, rounded to nearest-even from the literal's exact (hex) or f64 value.
    fn parse_f16(&mut self) -> Result<f16> {
        let n = self.parse_number(DType::Fp16)?;
        let h = f16::from_f64(n.to_f64(DType::Fp16)?);
        n.check_finite(h.is_infinite(), DType::Fp16)?;
        Ok(h)
    }

    /// An fp32 value, rounded once from the literal.
    fn parse_f32(&mut self) -> Result<f32> {
        let n = self.parse_number(DType::Fp32)?;
        let f = n.to_f64(DType::Fp32)? as f32;
        n.check_finite(f.is_infinite(), DType::Fp32)?;
        Ok(f)
    }

    /// An integer within the range of `dtype` (int8, uint8, int32 or uint64).
    fn parse_int(&mut self, dtype: DType) -> Result<i128> {
        let n = self.parse_number(dtype)?;
        let magnitude: Option<i128> = match &n.body {
            NumberBody::Digits(text, NumberForm::DecimalInt) => text.parse().ok(),
            NumberBody::Digits(text, NumberForm::HexInt) => text
                .get(2..)
                .and_then(|hex| i128::from_str_radix(hex, 16).ok()),
            _ => {
                return Err(n.pos.error(format!(
                    "{dtype} literal must be a whole number, found `{}`",
                    n.text()
                )))
            }
        };
        let (min, max): (i128, i128) = match dtype {
            DType::Int8 => (i8::MIN.into(), i8::MAX.into()),
            DType::Uint8 => (0, u8::MAX.into()),
            DType::Int32 => (i32::MIN.into(), i32::MAX.into()),
            _ => (0, u64::MAX.into()),
        };
        magnitude
            .map(|m| if n.negative { -m } else { m })
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                n.pos.error(format!(
                    "{dtype} literal `{}` is out of range {min}..={max}",
                    n.text()
                ))
            })
    }

    /// An optionally signed number, `inf` or `nan`.
    fn parse_number(&mut self, dtype: DType) -> Result<Number> {
        let pos = self.pos();
        let negative = self.eat_punct('-');
        if !negative {
            self.eat_punct('+');
        }
        let token = self.next();
        let body = match token.tok {
            Tok::Number(text, form) => NumberBody::Digits(text, form),
            Tok::Ident(word) if word == "inf" => NumberBody::Inf,
            Tok::Ident(word) if word == "nan" => NumberBody::Nan,
            other => {
                return Err(token
                    .pos
                    .error(format!("expected a number of type {dtype}, found {other}")));
            }
        };
        Ok(Number {
            negative,
            body,
            pos,
        })
    }
}

impl Number {
    /// The signed value as f64. For an fp32 decimal the text is parsed straight to f32 (going
    /// through f64 could round twice), so the result is exactly that f32.
    fn to_f64(&self, dtype: DType) -> Result<f64> {
        let malformed = || {
            self.pos
                .error(format!("malformed number `{}`", self.text()))
        };
        let magnitude = match &self.body {
            NumberBody::Inf => f64::INFINITY,
            NumberBody::Nan => f64::NAN,
            NumberBody::Digits(text, NumberForm::HexFloat | NumberForm::HexInt) => {
                hex_to_f64(text).ok_or_else(malformed)?
            }
            NumberBody::Digits(text, _) if dtype == DType::Fp32 => {
                text.parse::<f32>().map_err(|_| malformed())? as f64
            }
            NumberBody::Digits(text, _) => text.parse::<f64>().map_err(|_| malformed())?,
        };
        Ok(if self.negative { -magnitude } else { magnitude })
    }

    /// Rejects a finite literal that rounded to infinity: almost always a typo in the exponent.
    fn check_finite(&self, became_infinite: bool, dtype: DType) -> Result<()> {
        if became_infinite && !matches!(self.body, NumberBody::Inf) {
            return Err(self.pos.error(format!(
                "{dtype} literal `{}` is too large and would become infinity; write `inf` if that is intended",
                self.text()
            )));
        }
        Ok(())
    }
}

/// The value of `0xH.HpE` (or a hex integer `0xH`), rounded once to f64. Exact whenever the
/// significant digits fit in 53 bits, which covers every fp16 and fp32 value.
fn hex_to_f64(text: &str) -> Option<f64> {
    let body = text.get(2..)?;
    let (digits, exponent) = match body.split_once('p') {
        Some((d, e)) => (d, e.parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let mut mantissa: u64 = 0;
    // Each hex digit scales by 16; digits beyond 60 bits only shift the exponent (their value
    // is below f64 precision anyway).
    let mut scale: i64 = 0;
    for (i, c) in whole.chars().chain(fraction.chars()).enumerate() {
        let d = c.to_digit(16)? as u64;
        if mantissa >> 56 == 0 {
            mantissa = mantissa * 16 + d;
            if i >= whole.len() {
                scale -= 4;
            }
        } else if i < whole.len() {
            scale += 4;
        }
    }
    let exp = exponent.saturating_add(scale).clamp(-2200, 2200) as i32;
    // Split the power of two so neither factor overflows or underflows on its own.
    let half = exp / 2;
    Some(mantissa as f64 * 2f64.powi(half) * 2f64.powi(exp - half))
}

#[cfg(test)]
mod tests {
    use super::super::lexer::tokenize;
    use super::*;
    use crate::error::MilError;

    fn literal(text: &str) -> Result<Literal> {
        Cursor::new(tokenize(text)?).parse_literal().map(|(l, _)| l)
    }

    fn fp16(text: &str) -> f16 {
        match literal(text) {
            Ok(Literal::Scalar(Scalar::Fp16(v))) => v,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn hex_floats_are_exact() {
        assert_eq!(fp16("fp16(0x1p-3)").to_f32(), 0.125);
        assert_eq!(fp16("fp16(-0x1.8p+2)").to_f32(), -6.0);
        assert_eq!(fp16("fp16(0x1.ffcp15)").to_f32(), 65504.0);
        assert_eq!(
            fp16("fp16(0x1p-24)").to_bits(),
            1,
            "smallest fp16 subnormal"
        );
        assert_eq!(
            literal("fp32(0x1.fffffep127)").unwrap(),
            Literal::Scalar(Scalar::Fp32(f32::MAX))
        );
        assert_eq!(
            literal("fp32(0x10)").unwrap(),
            Literal::Scalar(Scalar::Fp32(16.0))
        );
    }

    #[test]
    fn fp16_rounds_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1 and the next fp16 (1 + 2^-10): ties go to even (1).
        assert_eq!(fp16("fp16(1.00048828125)").to_f32(), 1.0);
        // 1 + 3 * 2^-11 is halfway between 1 + 2^-10 and 1 + 2^-9: even is 1 + 2^-9.
        assert_eq!(fp16("fp16(1.00146484375)").to_f32(), 1.0 + 2f32.powi(-9));
        assert_eq!(fp16("fp16(-1)").to_f32(), -1.0);
        assert_eq!(fp16("fp16(1e-5)"), f16::from_f64(1e-5));
        assert!(fp16("fp16(-inf)").is_infinite() && fp16("fp16(-inf)").is_sign_negative());
        assert!(fp16("fp16(nan)").is_nan());
    }

    #[test]
    fn fp32_parses_without_double_rounding() {
        // Slightly above the midpoint between two f32s, but rounds to the midpoint as f64,
        // which would then tie to even (the lower f32) when going through f64.
        let text = "1.000000059604644775390625000000000001";
        let direct: f32 = text.parse().unwrap();
        assert_eq!(
            literal(&format!("fp32({text})")).unwrap(),
            Literal::Scalar(Scalar::Fp32(direct))
        );
        assert_ne!(direct, text.parse::<f64>().unwrap() as f32);
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            literal("int8(-128)").unwrap(),
            Literal::Scalar(Scalar::Int8(-128))
        );
        assert_eq!(
            literal("uint64(18446744073709551615)").unwrap(),
            Literal::Scalar(Scalar::Uint64(u64::MAX))
        );
        for (text, column, message) in [
            (
                "int8(128)",
                6,
                "int8 literal `128` is out of range -128..=127",
            ),
            ("uint8(-1)", 7, "uint8 literal `-1` is out of range 0..=255"),
            ("int32(2147483648)", 7, "out of range"),
            (
                "int32(1.5)",
                7,
                "int32 literal must be a whole number, found `1.5`",
            ),
            ("fp16(70000)", 6, "fp16 literal `70000` is too large"),
        ] {
            match literal(text) {
                Err(MilError::Parse {
                    line: 1,
                    column: c,
                    message: m,
                }) => {
                    assert_eq!(c, column, "{text}: {m}");
                    assert!(m.contains(message), "{text}: {m}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
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
