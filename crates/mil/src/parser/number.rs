//! Number literals: `0.5`, `-1`, `1e-5`, `0x1.8p+2`, `inf`, `nan`, converted to a dtype with
//! exactly one rounding (fp16 ties to even via `half`) and range checks for integers.

use super::cursor::Cursor;
use super::lexer::{NumberForm, Pos, Tok};
use crate::error::Result;
use crate::types::DType;
use half::f16;

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

impl Cursor {
    /// An fp16 value, rounded to nearest-even from the literal's exact (hex) or f64 value.
    pub(super) fn parse_f16(&mut self) -> Result<f16> {
        let n = self.parse_number(DType::Fp16)?;
        let h = f16::from_f64(n.to_f64(DType::Fp16)?);
        n.check_finite(h.is_infinite(), DType::Fp16)?;
        Ok(h)
    }

    /// An fp32 value, rounded once from the literal.
    pub(super) fn parse_f32(&mut self) -> Result<f32> {
        let n = self.parse_number(DType::Fp32)?;
        let f = n.to_f64(DType::Fp32)? as f32;
        n.check_finite(f.is_infinite(), DType::Fp32)?;
        Ok(f)
    }

    /// An integer within the range of `dtype` (int8, uint8, int32 or uint64).
    pub(super) fn parse_int(&mut self, dtype: DType) -> Result<i128> {
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
    /// The literal as written, for error messages.
    fn text(&self) -> String {
        let sign = if self.negative { "-" } else { "" };
        match &self.body {
            NumberBody::Digits(t, _) => format!("{sign}{t}"),
            NumberBody::Inf => format!("{sign}inf"),
            NumberBody::Nan => format!("{sign}nan"),
        }
    }

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
    use crate::types::{Literal, Scalar};

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
}
