//! Prints a [`Program`] in exactly the text dialect the ANE compiler accepts (ane-reference §3).
//!
//! The layout is fixed: `buildInfo` on one line (the compiler rejects a line break inside it),
//! four spaces per nesting level, one statement per line, bracket attributes sorted by key.
//! Floats print as the shortest decimal that reads back to the same bits, so
//! `parse_program(&print_program(p)) == p`.

use crate::program::{Argument, Function, Operation, Program};
use crate::types::{Literal, Scalar, TensorData};
use half::f16;
use std::fmt::Write;

/// The MIL text of `program`.
pub fn print_program(program: &Program) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, so the fmt::Results below are discarded.
    let _ = writeln!(out, "program({})", program.version);
    if !program.build_info.is_empty() {
        let entries: Vec<String> = program
            .build_info
            .iter()
            .map(|(k, v)| format!("{{{}, {}}}", quote(k), quote(v)))
            .collect();
        let _ = writeln!(
            out,
            "[buildInfo = dict<string, string>({{{}}})]",
            entries.join(", ")
        );
    }
    out.push_str("{\n");
    for function in &program.functions {
        print_function(&mut out, function);
    }
    out.push_str("}\n");
    out
}

fn print_function(out: &mut String, function: &Function) {
    let inputs: Vec<String> = function
        .inputs
        .iter()
        .map(|(name, ty)| format!("{ty} {name}"))
        .collect();
    let _ = writeln!(
        out,
        "    func {}<{}>({}) {{",
        function.name,
        function.target,
        inputs.join(", ")
    );
    for op in &function.ops {
        out.push_str("        ");
        print_operation(out, op);
        out.push('\n');
    }
    let _ = writeln!(out, "    }} -> ({});", function.outputs.join(", "));
}

/// `TYPE a[, TYPE b] = op(args)[name = string("label"), attrs];`
fn print_operation(out: &mut String, op: &Operation) {
    let outputs: Vec<String> = op
        .outputs
        .iter()
        .map(|o| format!("{} {}", o.ty, o.name))
        .collect();
    let args: Vec<String> = op
        .args
        .iter()
        .map(|(name, arg)| match arg {
            Argument::Value(v) => format!("{name} = {v}"),
            Argument::Tuple(vs) => format!("{name} = ({})", vs.join(", ")),
        })
        .collect();
    let mut attrs: Vec<(&str, String)> = vec![("name", format!("string({})", quote(&op.label)))];
    attrs.extend(op.attrs.iter().map(|(k, l)| (k.as_str(), literal(l))));
    attrs.sort_by_key(|(k, _)| *k);
    let attrs: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let _ = write!(
        out,
        "{} = {}({})[{}];",
        outputs.join(", "),
        op.op,
        args.join(", "),
        attrs.join(", ")
    );
}

/// A literal as MIL writes it: `fp16(0.5)`, `tensor<int32, [2]>([1, 1])`, `tensor<...>(BLOBFILE(...))`.
pub(crate) fn literal(literal: &Literal) -> String {
    match literal {
        Literal::Scalar(s) => {
            let value = match s {
                Scalar::Fp16(v) => fp16(*v),
                Scalar::Fp32(v) => fp32(*v),
                Scalar::Int8(v) => v.to_string(),
                Scalar::Uint8(v) => v.to_string(),
                Scalar::Int32(v) => v.to_string(),
                Scalar::Bool(v) => v.to_string(),
                Scalar::Uint64(v) => v.to_string(),
                Scalar::String(v) => quote(v),
            };
            format!("{}({value})", s.dtype())
        }
        Literal::Tensor { ty, data } => {
            let elements: Vec<String> = match data {
                TensorData::Fp16(v) => v.iter().map(|x| fp16(*x)).collect(),
                TensorData::Fp32(v) => v.iter().map(|x| fp32(*x)).collect(),
                TensorData::Int8(v) => v.iter().map(i8::to_string).collect(),
                TensorData::Uint8(v) => v.iter().map(u8::to_string).collect(),
                TensorData::Int32(v) => v.iter().map(i32::to_string).collect(),
                TensorData::Bool(v) => v.iter().map(bool::to_string).collect(),
            };
            format!("{ty}([{}])", elements.join(", "))
        }
        Literal::Blob { ty, path, offset } => format!(
            "{ty}(BLOBFILE(path = string({}), offset = uint64({offset})))",
            quote(path)
        ),
    }
}

/// The shortest decimal that reads back as the same f32 (Rust's `{:?}` guarantees this and
/// switches to exponent form, `1e-8`, for very small and large magnitudes).
fn fp32(v: f32) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{v:?}")
    }
}

/// An fp16 printed as its exact f32 value: that decimal reads back to the same f32, and
/// rounding it to fp16 gives back the original bits since every fp16 is an f32.
fn fp16(v: f16) -> String {
    fp32(v.to_f32())
}

/// A double-quoted string with `"`, `\` and line breaks escaped, so every statement stays on
/// one line.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{DType, TensorType};

    #[test]
    fn floats_print_shortest_round_trip_forms() {
        assert_eq!(fp32(0.5), "0.5");
        assert_eq!(fp32(1.0), "1.0");
        assert_eq!(fp32(1e-8), "1e-8");
        assert_eq!(fp32(-0.0), "-0.0");
        assert_eq!(fp32(f32::NEG_INFINITY), "-inf");
        assert_eq!(fp32(f32::NAN), "nan");
        // 0.1 as fp16 is 0.0999755859375 exactly; its shortest f32 form is not "0.1".
        assert_eq!(fp16(f16::from_f32(0.1)), "0.099975586");
        assert_eq!(fp16(f16::from_bits(1)), "5.9604645e-8");
    }

    #[test]
    fn literals_match_the_reference_spelling() {
        assert_eq!(literal(&Literal::string("a\"b\\c")), r#"string("a\"b\\c")"#);
        assert_eq!(
            literal(&Literal::int32_tensor(&[1, 12, 64, 256])),
            "tensor<int32, [4]>([1, 12, 64, 256])"
        );
        let rank0 = Literal::Tensor {
            ty: TensorType::new(DType::Fp32, []),
            data: TensorData::Fp32(vec![2.5]),
        };
        assert_eq!(literal(&rank0), "tensor<fp32, []>([2.5])");
        let bools = Literal::Tensor {
            ty: TensorType::new(DType::Bool, [2]),
            data: TensorData::Bool(vec![true, false]),
        };
        assert_eq!(literal(&bools), "tensor<bool, [2]>([true, false])");
        let blob = Literal::Blob {
            ty: TensorType::new(DType::Fp16, [8, 4, 1, 1]),
            path: "@model_path/weights/w.bin".into(),
            offset: 64,
        };
        assert_eq!(
            literal(&blob),
            r#"tensor<fp16, [8, 4, 1, 1]>(BLOBFILE(path = string("@model_path/weights/w.bin"), offset = uint64(64)))"#
        );
        assert_eq!(
            literal(&Literal::Scalar(Scalar::Fp16(f16::from_f32(-6.0)))),
            "fp16(-6.0)"
        );
        assert_eq!(literal(&Literal::Scalar(Scalar::Uint8(255))), "uint8(255)");
    }
}
