//! The printer and parser are inverses: `parse(print(p)) == p` for random well-typed programs,
//! `print(parse(t)) == t` for the canonical example texts, and no input makes the parser panic.

use anetrain_mil::{
    parse_program, print_program, Argument, DType, Function, Literal, MilError, Op, Operation,
    Output, Program, Scalar, TensorData, TensorType, Type,
};
use half::f16;
use proptest::prelude::*;
use std::path::Path;

/// Reads `tests/examples/NAME`.
fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn canonical_examples_print_back_verbatim() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // The hand-written example is deliberately not canonical; see the next test.
        if !name.ends_with(".mil") || name == "hand_written.mil" {
            continue;
        }
        let text = example(&name);
        let program = parse_program(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            print_program(&program),
            text,
            "{name} does not print back verbatim"
        );
        checked.push(name);
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "dequantized_conv.mil",
            "dynamic_matmul.mil",
            "hand_written_canonical.mil",
            "minimal_conv.mil",
            "split_two_outputs.mil"
        ]
    );
}

#[test]
fn examples_parse_to_the_expected_structure() {
    let p = parse_program(&example("minimal_conv.mil")).unwrap();
    let main = p.main().unwrap();
    assert_eq!(
        main.inputs,
        [(
            "inp".to_string(),
            TensorType::new(DType::Fp16, [1, 64, 1, 32])
        )]
    );
    assert_eq!(main.ops.len(), 8);
    let conv = &main.ops[5];
    assert_eq!(conv.op, Op::Conv);
    assert_eq!(conv.arg_value("weight"), Some("proj"));
    assert_eq!(conv.arg_value("pad_type"), Some("pk"));
    assert_eq!(
        main.ops[4].attr("val"),
        Some(&Literal::Blob {
            ty: TensorType::new(DType::Fp16, [128, 64, 1, 1]),
            path: "@model_path/weights/proj.bin".into(),
            offset: 64
        })
    );
    assert_eq!(main.outputs, ["res"]);

    let p = parse_program(&example("split_two_outputs.mil")).unwrap();
    let split = &p.functions[0].ops[2];
    assert_eq!(split.op, Op::Split);
    assert_eq!(split.label, "parts");
    let names: Vec<&str> = split.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["big", "small"]);
    assert_eq!(
        p.functions[0].ops[4].arg("values"),
        Some(&Argument::Tuple(vec!["small".into(), "big".into()]))
    );

    let p = parse_program(&example("dequantized_conv.mil")).unwrap();
    let dq = &p.functions[0].ops[0];
    assert_eq!(dq.op, Op::ConstexprAffineDequantize);
    assert!(dq.args.is_empty());
    let keys: Vec<&str> = dq.attrs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["axis", "quantized_data", "scale", "zero_point"]);
    assert_eq!(
        dq.attr("scale"),
        Some(&Literal::Scalar(Scalar::Fp16(f16::from_f32(1.0 / 128.0))))
    );
    assert_eq!(p.build_info.len(), 2);
}

#[test]
fn hand_written_text_parses_like_its_canonical_form() {
    let hand = parse_program(&example("hand_written.mil")).unwrap();
    let canonical_text = example("hand_written_canonical.mil");
    assert_eq!(hand, parse_program(&canonical_text).unwrap());
    assert_eq!(print_program(&hand), canonical_text);

    assert!(hand.build_info.is_empty());
    let main = hand.main().unwrap();
    let val = |label: &str| {
        main.ops
            .iter()
            .find(|o| o.label == label)
            .and_then(|o| o.attr("val"))
            .cloned()
            .unwrap()
    };
    let fp16 = |v: f64| Literal::Scalar(Scalar::Fp16(f16::from_f64(v)));
    assert_eq!(val("eighth"), fp16(0.125));
    assert_eq!(val("m6"), fp16(-6.0));
    assert_eq!(val("eps"), fp16(1e-5));
    assert_eq!(val("neg1"), fp16(-1.0));
    assert_eq!(
        val("lowest"),
        Literal::Scalar(Scalar::Fp32(f32::NEG_INFINITY))
    );
    assert_eq!(
        val("pair"),
        Literal::Tensor {
            ty: TensorType::new(DType::Fp16, [2]),
            data: TensorData::Fp16(vec![f16::ONE, f16::from_f32(-2.0)])
        }
    );
    let b = main.ops.iter().find(|o| o.label == "b").unwrap();
    assert_eq!(
        b.args,
        [
            ("x".into(), Argument::Value("a".into())),
            ("y".into(), Argument::Value("m6".into()))
        ]
    );
    assert_eq!(hand.functions[1].name, "second");
}

/// Builds random well-typed programs from a stream of choice words, so proptest can shrink a
/// failing program by shrinking the words.
struct Gen {
    words: Vec<u32>,
    at: usize,
    next_id: usize,
    ops: Vec<Operation>,
    /// fp16 tensor values available as operands.
    values: Vec<(String, TensorType)>,
}

impl Gen {
    /// The next choice; past the end of the stream, the position itself, so that short
    /// streams (which shrinking produces) still build valid programs.
    fn word(&mut self) -> u32 {
        let w = self.words.get(self.at).copied().unwrap_or(self.at as u32);
        self.at += 1;
        w
    }

    fn below(&mut self, n: usize) -> usize {
        self.word() as usize % n
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    /// A label that is usually the value name, sometimes a different string with characters
    /// that need escaping.
    fn label(&mut self, name: &str) -> String {
        match self.below(8) {
            0 => format!("l_{name}"),
            1 => format!("q\"{name}\\\n\t"),
            _ => name.to_string(),
        }
    }

    fn f16(&mut self) -> f16 {
        let h = f16::from_bits(self.word() as u16);
        // Clearing the low exponent bit of a NaN leaves a finite value; NaN != NaN would make
        // the equality check meaningless.
        if h.is_nan() {
            f16::from_bits(h.to_bits() & !0x0400)
        } else {
            h
        }
    }

    fn f32(&mut self) -> f32 {
        let f = f32::from_bits(self.word());
        if f.is_nan() {
            f32::from_bits(f.to_bits() & !0x0080_0000)
        } else {
            f
        }
    }

    fn push(
        &mut self,
        op: Op,
        args: Vec<(&str, Argument)>,
        attrs: Vec<(&str, Literal)>,
        outputs: Vec<Output>,
    ) {
        let label = self.label(&outputs[0].name);
        self.ops.push(Operation {
            op,
            args: args.into_iter().map(|(k, a)| (k.to_string(), a)).collect(),
            attrs: attrs.into_iter().map(|(k, l)| (k.to_string(), l)).collect(),
            label,
            outputs,
        });
    }

    /// A const holding `literal`, returning its name.
    fn constant(&mut self, literal: Literal) -> String {
        let name = self.fresh("c");
        let ty = literal.ty();
        self.push(
            Op::Const,
            vec![],
            vec![("val", literal)],
            vec![Output {
                name: name.clone(),
                ty,
            }],
        );
        name
    }

    fn int32_const(&mut self, values: &[i32]) -> String {
        self.constant(Literal::int32_tensor(values))
    }

    fn scalar_const(&mut self, scalar: Scalar) -> String {
        self.constant(Literal::Scalar(scalar))
    }

    /// An fp16 tensor const of type `ty`: inline for small tensors, else a BLOBFILE reference.
    fn tensor_const(&mut self, ty: TensorType) -> String {
        let literal = if ty.numel() <= 16 {
            let data = (0..ty.numel()).map(|_| self.f16()).collect();
            Literal::Tensor {
                ty,
                data: TensorData::Fp16(data),
            }
        } else {
            let offset = 64 * (1 + self.below(100) as u64);
            Literal::Blob {
                ty,
                path: "@model_path/weights/w.bin".into(),
                offset,
            }
        };
        self.constant(literal)
    }

    fn output(&mut self, prefix: &str, ty: &TensorType) -> Output {
        Output {
            name: self.fresh(prefix),
            ty: Type::Tensor(ty.clone()),
        }
    }

    /// Appends one random op over the current values, keeping every shape consistent.
    fn step(&mut self) {
        let k = self.below(self.values.len());
        let (x, xt) = self.values[k].clone();
        let rank = xt.rank();
        let new_value = match self.below(10) {
            0 => {
                let op = [Op::Relu, Op::Sigmoid, Op::Exp, Op::Tanh][self.below(4)];
                let out = self.output("v", &xt);
                self.push(
                    op,
                    vec![("x", Argument::Value(x))],
                    vec![],
                    vec![out.clone()],
                );
                Some((out.name, xt))
            }
            1 | 2 => {
                let same: Vec<String> = self
                    .values
                    .iter()
                    .filter(|(_, t)| *t == xt)
                    .map(|(n, _)| n.clone())
                    .collect();
                let y = if self.below(2) == 0 {
                    same[self.below(same.len())].clone()
                } else {
                    self.tensor_const(xt.clone())
                };
                let op = [Op::Add, Op::Mul, Op::Sub][self.below(3)];
                let out = self.output("v", &xt);
                self.push(
                    op,
                    vec![("x", Argument::Value(x)), ("y", Argument::Value(y))],
                    vec![],
                    vec![out.clone()],
                );
                Some((out.name, xt))
            }
            3 => {
                // Rotating the dimensions keeps the element count.
                let mut shape = xt.shape.clone();
                shape.rotate_left(1 + self.below(rank));
                let s = self.int32_const(&shape.iter().map(|&d| d as i32).collect::<Vec<_>>());
                let ty = TensorType::new(DType::Fp16, shape);
                let out = self.output("v", &ty);
                self.push(
                    Op::Reshape,
                    vec![("shape", Argument::Value(s)), ("x", Argument::Value(x))],
                    vec![],
                    vec![out.clone()],
                );
                Some((out.name, ty))
            }
            4 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                for i in (1..rank).rev() {
                    let j = self.below(i + 1);
                    perm.swap(i, j);
                }
                let p = self.int32_const(&perm.iter().map(|&d| d as i32).collect::<Vec<_>>());
                let ty = TensorType::new(
                    DType::Fp16,
                    perm.iter().map(|&i| xt.shape[i]).collect::<Vec<_>>(),
                );
                let out = self.output("v", &ty);
                self.push(
                    Op::Transpose,
                    vec![("perm", Argument::Value(p)), ("x", Argument::Value(x))],
                    vec![],
                    vec![out.clone()],
                );
                Some((out.name, ty))
            }
            5 => {
                let axis = self.below(2 * rank) as i32 - rank as i32;
                let a = self.scalar_const(Scalar::Int32(axis));
                let out = self.output("v", &xt);
                self.push(
                    Op::Softmax,
                    vec![("axis", Argument::Value(a)), ("x", Argument::Value(x))],
                    vec![],
                    vec![out.clone()],
                );
                Some((out.name, xt))
            }
            6 if xt.numel() <= 512 => {
                let axis = self.below(rank);
                let a = self.scalar_const(Scalar::Int32(axis as i32));
                let il = self.scalar_const(Scalar::Bool(false));
                let mut shape = xt.shape.clone();
                shape[axis] *= 2;
                let ty = TensorType::new(DType::Fp16, shape);
                let out = self.output("v", &ty);
                let args = vec![
                    ("axis", Argument::Value(a)),
                    ("interleave", Argument::Value(il)),
                    ("values", Argument::Tuple(vec![x.clone(), x])),
                ];
                self.push(Op::Concat, args, vec![], vec![out.clone()]);
                Some((out.name, ty))
            }
            7 => {
                let (tx, ty_flag) = (self.below(2) == 1, self.below(2) == 1);
                let (p, q) = (xt.shape[rank - 2], xt.shape[rank - 1]);
                let (m, kk) = if tx { (q, p) } else { (p, q) };
                let n = 1 + self.below(4);
                let mut y_shape = xt.shape[..rank - 2].to_vec();
                y_shape.extend(if ty_flag { [n, kk] } else { [kk, n] });
                let y_ty = TensorType::new(DType::Fp16, y_shape);
                let y = if self.below(3) == 0 {
                    self.dequantized_const(y_ty)
                } else {
                    self.tensor_const(y_ty)
                };
                let fx = self.scalar_const(Scalar::Bool(tx));
                let fy = self.scalar_const(Scalar::Bool(ty_flag));
                let mut shape = xt.shape[..rank - 2].to_vec();
                shape.extend([m, n]);
                let ty = TensorType::new(DType::Fp16, shape);
                let out = self.output("v", &ty);
                let args = vec![
                    ("transpose_x", Argument::Value(fx)),
                    ("transpose_y", Argument::Value(fy)),
                    ("x", Argument::Value(x)),
                    ("y", Argument::Value(y)),
                ];
                self.push(Op::Matmul, args, vec![], vec![out.clone()]);
                Some((out.name, ty))
            }
            8 if xt.shape[1].is_multiple_of(2) => {
                let n = self.scalar_const(Scalar::Int32(2));
                let a = self.scalar_const(Scalar::Int32(1));
                let mut shape = xt.shape.clone();
                shape[1] /= 2;
                let ty = TensorType::new(DType::Fp16, shape);
                let (lo, hi) = (self.output("s", &ty), self.output("s", &ty));
                let args = vec![
                    ("axis", Argument::Value(a)),
                    ("num_splits", Argument::Value(n)),
                    ("x", Argument::Value(x)),
                ];
                self.push(Op::Split, args, vec![], vec![lo.clone(), hi.clone()]);
                self.values.push((lo.name, ty.clone()));
                Some((hi.name, ty))
            }
            _ => {
                self.odd_constant();
                None
            }
        };
        if let Some(v) = new_value {
            self.values.push(v);
        }
    }

    /// A weight folded from int8 at compile time.
    fn dequantized_const(&mut self, ty: TensorType) -> String {
        let name = self.fresh("dq");
        let quantized = Literal::Blob {
            ty: TensorType::new(DType::Int8, ty.shape.clone()),
            path: "@model_path/weights/q.bin".into(),
            offset: 64,
        };
        let scale = self.f16();
        let attrs = vec![
            ("axis", Literal::int32(0)),
            ("quantized_data", quantized),
            ("scale", Literal::Scalar(Scalar::Fp16(scale))),
            (
                "zero_point",
                Literal::Scalar(Scalar::Int8(self.word() as i8)),
            ),
        ];
        self.push(
            Op::ConstexprAffineDequantize,
            vec![],
            attrs,
            vec![Output {
                name: name.clone(),
                ty: Type::Tensor(ty),
            }],
        );
        name
    }

    /// A const of a literal kind the shape ops above do not produce, to cover every printer path.
    fn odd_constant(&mut self) {
        let literal = match self.below(8) {
            0 => Literal::Scalar(Scalar::Fp32(self.f32())),
            1 => Literal::Scalar(Scalar::Fp16(self.f16())),
            2 => Literal::Scalar(Scalar::Uint8(self.word() as u8)),
            3 => Literal::string(
                ["valid", "fp16", "a\"b\\c", "", "tab\there\nnewline", "ünï"][self.below(6)],
            ),
            4 => Literal::Tensor {
                ty: TensorType::new(DType::Fp32, []),
                data: TensorData::Fp32(vec![self.f32()]),
            },
            5 => Literal::Tensor {
                ty: TensorType::new(DType::Int8, [3]),
                data: TensorData::Int8((0..3).map(|_| self.word() as i8).collect()),
            },
            6 => Literal::Tensor {
                ty: TensorType::new(DType::Bool, [2]),
                data: TensorData::Bool(vec![self.below(2) == 0, true]),
            },
            _ => Literal::Scalar(Scalar::Int32(self.word() as i32)),
        };
        self.constant(literal);
    }
}

/// A random program: one or two functions of up to 12 random ops over random rank-4 inputs.
fn random_program(words: Vec<u32>) -> Program {
    let mut g = Gen {
        words,
        at: 0,
        next_id: 0,
        ops: Vec::new(),
        values: Vec::new(),
    };
    let mut functions = Vec::new();
    for f in 0..1 + g.below(2) {
        g.ops.clear();
        g.values.clear();
        let inputs: Vec<(String, TensorType)> = (0..1 + g.below(2))
            .map(|_| {
                let shape: Vec<usize> = (0..4).map(|_| 1 + g.below(4)).collect();
                (g.fresh("in"), TensorType::new(DType::Fp16, shape))
            })
            .collect();
        g.values = inputs.clone();
        for _ in 0..1 + g.below(12) {
            g.step();
        }
        let mut outputs = vec![g.values[g.values.len() - 1].0.clone()];
        if g.below(3) == 0 && g.values.len() > 1 {
            outputs.push(g.values[0].0.clone());
        }
        let name = if f == 0 {
            "main".to_string()
        } else {
            format!("f{f}")
        };
        functions.push(Function {
            name,
            target: "ios18".into(),
            inputs,
            ops: std::mem::take(&mut g.ops),
            outputs,
        });
    }
    let mut program = Program::new(functions.remove(0));
    program.functions.extend(functions);
    match g.below(4) {
        0 => program.build_info.clear(),
        1 => program.build_info = vec![("nonce".into(), format!("{}\"{}", g.word(), g.word()))],
        _ => {}
    }
    program
}

fn words() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(any::<u32>(), 0..200)
}

/// Applies each of `edits`: delete, duplicate or swap character ranges, insert MIL-ish
/// characters, or swap whole space-separated tokens.
fn mutate(text: &str, edits: &[(u8, u32, u32, u8)]) -> String {
    // Pieces of MIL syntax and troublemakers (huge numbers, non-ASCII), `|`-separated.
    let inserts: Vec<&str> = "(|)|[|]|{|}|<|>|,|=|;|-|->|\"|\\|?|//|\n| |0x1p|e-|1e400|99999999999999999999|tensor<|fp16(|BLOBFILE|é|inf|nan|x"
        .split('|')
        .collect();
    let mut chars: Vec<char> = text.chars().collect();
    for &(kind, a, b, pick) in edits {
        if chars.is_empty() {
            chars.push('{');
        }
        let len = chars.len();
        let (i, j) = (a as usize % len, b as usize % len);
        // Ranges of at most 40 characters keep most of the program intact.
        let lo = i.min(j);
        let hi = i.max(j).min(lo + 40);
        match kind % 5 {
            0 => {
                chars.drain(lo..hi);
            }
            1 => {
                let piece: Vec<char> = chars[lo..hi].to_vec();
                chars.splice(hi..hi, piece);
            }
            2 => chars.swap(i, j),
            3 => {
                let insert = inserts[pick as usize % inserts.len()];
                chars.splice(i..i, insert.chars());
            }
            _ => {
                let s: String = chars.iter().collect();
                let mut tokens: Vec<&str> = s.split(' ').collect();
                let n = tokens.len();
                tokens.swap(a as usize % n, b as usize % n);
                chars = tokens.join(" ").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #[test]
    fn parse_inverts_print(words in words()) {
        let program = random_program(words);
        let text = print_program(&program);
        let parsed = parse_program(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed, program, "{}", text);
    }

    #[test]
    fn mutated_text_never_panics_and_errors_point_inside_the_text(
        words in words(),
        edits in prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>(), any::<u8>()), 1..4),
    ) {
        let text = mutate(&print_program(&random_program(words)), &edits);
        match parse_program(&text) {
            Ok(program) => {
                // Whatever was accepted must itself round-trip.
                let again = print_program(&program);
                prop_assert_eq!(print_program(&parse_program(&again).unwrap()), again);
            }
            Err(MilError::Parse { line, column, message }) => {
                let lines: Vec<&str> = text.split('\n').collect();
                prop_assert!(line >= 1 && line <= lines.len(), "line {} of {}: {}", line, lines.len(), message);
                let width = lines[line - 1].chars().count();
                prop_assert!(column >= 1 && column <= width + 1, "column {} of {}: {}", column, width, message);
                prop_assert!(!message.is_empty());
            }
            Err(other) => prop_assert!(false, "not a parse error: {other:?}"),
        }
    }
}
