//! The ANE constraint checker: every implemented rule fires on a program that breaks it, lands
//! in the right list for each chip (violation, unknown, warning, or dropped), and stays silent
//! on a program that keeps it.

use anetrain_mil::check::{rule, rules, Applies, Enforcement, RULES};
use anetrain_mil::{
    check, Argument, Chip, DType, Function, Literal, Op, Operation, Output, Program, Report,
    TensorType, Type, Violation,
};
use proptest::prelude::*;

fn fp16(shape: &[usize]) -> TensorType {
    TensorType::new(DType::Fp16, shape)
}

fn op(kind: Op, name: &str, args: &[(&str, &str)], ty: TensorType) -> Operation {
    Operation {
        op: kind,
        args: args
            .iter()
            .map(|(a, v)| (a.to_string(), Argument::Value(v.to_string())))
            .collect(),
        attrs: vec![],
        label: name.to_string(),
        outputs: vec![Output {
            name: name.to_string(),
            ty: Type::Tensor(ty),
        }],
    }
}

fn weight(name: &str, ty: TensorType) -> Operation {
    Operation::constant(
        name,
        Literal::Blob {
            ty,
            path: "@model_path/weights/w.bin".to_string(),
            offset: 64,
        },
    )
}

fn program(inputs: Vec<(&str, TensorType)>, ops: Vec<Operation>, outputs: &[&str]) -> Program {
    Program::new(Function {
        name: "main".to_string(),
        target: "ios18".to_string(),
        inputs: inputs
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
        ops,
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
    })
}

/// `y = conv(x, w)` for x `[1, cin, 1, width]` and w `[cout, cin, 1, kw]`, valid padding.
fn conv_program(cin: usize, cout: usize, width: usize, kw: usize) -> Program {
    let out_width = width + 1 - kw;
    program(
        vec![("x", fp16(&[1, cin, 1, width]))],
        vec![
            weight("w", fp16(&[cout, cin, 1, kw])),
            op(
                Op::Conv,
                "y",
                &[("x", "x"), ("weight", "w")],
                fp16(&[1, cout, 1, out_width]),
            ),
        ],
        &["y"],
    )
}

/// `[1, 768, 1, 32]` fp16 in and out (exactly 49,152 bytes) through a 768×768 1×1 conv: keeps
/// every rule on every chip.
fn clean() -> Program {
    conv_program(768, 768, 32, 1)
}

/// `clean()` with `extra` ops spliced in before the conv and the conv reading `conv_input`.
fn clean_with(extra: Vec<Operation>, conv_input: &str) -> Program {
    let mut ops = extra;
    ops.push(weight("w", fp16(&[768, 768, 1, 1])));
    ops.push(op(
        Op::Conv,
        "y",
        &[("x", conv_input), ("weight", "w")],
        fp16(&[1, 768, 1, 32]),
    ));
    program(vec![("x", fp16(&[1, 768, 1, 32]))], ops, &["y"])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placed {
    V, // violation
    U, // unknown
    W, // warning
    A, // absent
}
use Placed::{A, U, V, W};

fn placed(report: &Report, rule: &str) -> Placed {
    let has = |list: &[Violation]| list.iter().any(|v| v.rule == rule);
    match (
        has(&report.violations),
        has(&report.unknown),
        has(&report.warnings),
    ) {
        (true, false, false) => V,
        (false, true, false) => U,
        (false, false, true) => W,
        (false, false, false) => A,
        other => panic!("rule {rule} in several lists: {other:?}"),
    }
}

/// Where `rule`'s findings land on M1, M2, M3, M4, M5.
fn across(program: &Program, rule: &str) -> [Placed; 5] {
    Chip::ALL.map(|chip| placed(&check(program, chip), rule))
}

fn finding(report: &Report, rule: &str) -> Violation {
    let all = report
        .violations
        .iter()
        .chain(&report.unknown)
        .chain(&report.warnings);
    let found = all.clone().find(|v| v.rule == rule).cloned();
    found.unwrap_or_else(|| panic!("no {rule} finding in:\n{report}"))
}

/// Labels of the ops `rule` blames, in program order.
fn blamed(report: &Report, rule: &str) -> Vec<String> {
    let all = report
        .violations
        .iter()
        .chain(&report.unknown)
        .chain(&report.warnings);
    all.filter(|v| v.rule == rule)
        .filter_map(|v| v.op_label.clone())
        .collect()
}

const EVERYWHERE: [Placed; 5] = [V; 5];
const NOWHERE: [Placed; 5] = [A; 5];
const UNKNOWN: [Placed; 5] = [U; 5];

#[test]
fn clean_program_is_clean_on_every_chip_with_nothing_unknown() {
    for chip in Chip::ALL {
        let report = check(&clean(), chip);
        assert!(report.is_clean(), "{chip}:\n{report}");
        assert!(
            report.unknown.is_empty() && report.warnings.is_empty(),
            "{chip}:\n{report}"
        );
        assert_eq!(report.to_string(), "");
    }
}

#[test]
fn fp32_arithmetic_is_a_violation_but_boundary_casts_are_not() {
    let fp32 = TensorType::new(DType::Fp32, [1, 768, 1, 32]);
    let add = op(Op::Add, "s", &[("x", "x"), ("y", "x")], fp32.clone());
    let mut p = clean_with(vec![add], "x");
    p.functions[0].outputs.push("s".to_string());
    assert_eq!(across(&p, "fp16-compute"), EVERYWHERE);
    let v = finding(&check(&p, Chip::M4), "fp16-compute");
    assert_eq!(
        (v.op_label.as_deref(), v.op.as_deref()),
        (Some("s"), Some("add"))
    );

    let h = fp16(&[1, 768, 1, 32]);
    let boundary = program(
        vec![("x", fp32.clone())],
        vec![
            Operation::constant("dt", Literal::string("fp16")),
            op(Op::Cast, "h", &[("x", "x"), ("dtype", "dt")], h.clone()),
            weight("w", fp16(&[768, 768, 1, 1])),
            op(Op::Conv, "c", &[("x", "h"), ("weight", "w")], h),
            Operation::constant("dt32", Literal::string("fp32")),
            op(Op::Cast, "y", &[("x", "c"), ("dtype", "dt32")], fp32),
        ],
        &["y"],
    );
    for chip in Chip::ALL {
        let report = check(&boundary, chip);
        assert!(report.is_clean() && report.unknown.is_empty(), "{report}");
    }
}

#[test]
fn io_rank_other_than_3_or_4_is_unknown_only() {
    let matmul = |shape: &[usize], w: &[usize]| {
        program(
            vec![("x", fp16(shape))],
            vec![
                weight("w", fp16(w)),
                op(Op::Matmul, "y", &[("x", "x"), ("y", "w")], fp16(shape)),
            ],
            &["y"],
        )
    };
    assert_eq!(across(&matmul(&[768, 64], &[64, 64]), "io-rank"), UNKNOWN);
    assert_eq!(
        across(&matmul(&[2, 768, 64], &[2, 64, 64]), "io-rank"),
        UNKNOWN
    );
    assert_eq!(
        across(&matmul(&[1, 768, 64], &[1, 64, 64]), "io-rank"),
        NOWHERE
    );
}

#[test]
fn width_rule_is_a_violation_on_m5_and_unknown_elsewhere() {
    // 16 wide: OR's M4 Max decode bucket; 1536 channels keep it at 49,152 bytes.
    let narrow = conv_program(1536, 1536, 16, 1);
    assert_eq!(across(&narrow, "io-width-multiple-of-32"), [U, U, U, U, V]);
    let msg = finding(&check(&narrow, Chip::M5), "io-width-multiple-of-32").message;
    assert!(msg.contains("width 16 is narrower than 32"), "{msg}");
    let odd = conv_program(768, 768, 100, 1);
    let msg = finding(&check(&odd, Chip::M5), "io-width-multiple-of-32").message;
    assert!(
        msg.contains("not a multiple of 32") && msg.contains("stride of 128"),
        "{msg}"
    );
    let wide = conv_program(768, 768, 64, 1);
    assert_eq!(across(&wide, "io-width-multiple-of-32"), NOWHERE);
}

#[test]
fn small_ports_are_a_warning_on_m4_and_unknown_elsewhere() {
    // A warning, not a violation: the minimum is on the buffer, which the device pads.
    let small = conv_program(64, 64, 32, 1); // 64 * 32 * 2 = 4096 bytes
    assert_eq!(across(&small, "io-min-bytes"), [U, U, U, W, U]);
    assert!(finding(&check(&small, Chip::M4), "io-min-bytes")
        .message
        .contains("4096 bytes"));
    assert_eq!(across(&clean(), "io-min-bytes"), NOWHERE);
}

#[test]
fn several_inputs_or_outputs_need_equal_sizes() {
    let two_inputs = |b: &[usize], y: &[usize]| {
        program(
            vec![("a", fp16(&[1, 768, 1, 32])), ("b", fp16(b))],
            vec![op(Op::Matmul, "y", &[("x", "a"), ("y", "b")], fp16(y))],
            &["y"],
        )
    };
    let unequal = two_inputs(&[1, 768, 1, 64], &[1, 768, 1, 64]);
    assert_eq!(across(&unequal, "equal-input-sizes"), EVERYWHERE);
    let msg = finding(&check(&unequal, Chip::M3), "equal-input-sizes").message;
    assert!(
        msg.contains("`a` 49152 B") && msg.contains("`b` 98304 B"),
        "{msg}"
    );
    let equal = two_inputs(&[1, 32, 1, 768], &[1, 768, 1, 768]);
    assert_eq!(across(&equal, "equal-input-sizes"), NOWHERE);

    let mut two_out = clean();
    two_out.functions[0].outputs.push("x".to_string());
    assert_eq!(across(&two_out, "equal-output-sizes"), NOWHERE);
    let mut uneven = conv_program(768, 1536, 32, 1);
    uneven.functions[0].outputs.push("x".to_string());
    assert_eq!(across(&uneven, "equal-output-sizes"), EVERYWHERE);
}

#[test]
fn disputed_ops_are_unknown_not_violations() {
    let unary = |kind| {
        clean_with(
            vec![op(kind, "g", &[("x", "x")], fp16(&[1, 768, 1, 32]))],
            "g",
        )
    };
    assert_eq!(across(&unary(Op::Gelu), "gelu"), UNKNOWN);
    for kind in [Op::Exp, Op::Log, Op::Sqrt] {
        assert_eq!(across(&unary(kind), "transcendentals"), UNKNOWN, "{kind}");
    }
    for kind in [Op::Relu, Op::Sigmoid, Op::Rsqrt, Op::Tanh] {
        for chip in Chip::ALL {
            let report = check(&unary(kind), chip);
            assert!(
                report.is_clean() && report.unknown.is_empty(),
                "{kind}: {report}"
            );
        }
    }
}

#[test]
fn reduce_mean_is_unknown_on_m5_and_fine_elsewhere() {
    let p = clean_with(
        vec![
            Operation::constant("ax", Literal::int32_tensor(&[3])),
            op(
                Op::ReduceMean,
                "m",
                &[("x", "x"), ("axes", "ax")],
                fp16(&[1, 768, 1, 1]),
            ),
            op(
                Op::Sub,
                "d",
                &[("x", "x"), ("y", "m")],
                fp16(&[1, 768, 1, 32]),
            ),
        ],
        "d",
    );
    assert_eq!(across(&p, "reduce-mean-m5"), [A, A, A, A, U]);
    assert_eq!(across(&clean(), "reduce-mean-m5"), NOWHERE);
}

#[test]
fn sdpa_with_a_mask_is_a_violation() {
    let t = fp16(&[1, 4, 64, 32]);
    let attention = |mask: bool| {
        let mut args = vec![("query", "x"), ("key", "x"), ("value", "x")];
        if mask {
            args.push(("attn_mask", "m"));
        }
        program(
            vec![("x", t.clone())],
            vec![
                weight("m", fp16(&[1, 1, 64, 64])),
                op(Op::ScaledDotProductAttention, "a", &args, t.clone()),
                weight("w", fp16(&[4, 4, 1, 1])),
                op(Op::Conv, "y", &[("x", "a"), ("weight", "w")], t.clone()),
            ],
            &["y"],
        )
    };
    assert_eq!(across(&attention(true), "sdpa-mask-ignored"), EVERYWHERE);
    assert_eq!(
        blamed(&check(&attention(true), Chip::M1), "sdpa-mask-ignored"),
        ["a"]
    );
    assert_eq!(across(&attention(false), "sdpa-mask-ignored"), NOWHERE);
}

#[test]
fn conv_kernel_width_limits_per_chip() {
    let k16 = conv_program(768, 768, 64, 16);
    assert_eq!(across(&k16, "conv-kernel-width-16"), EVERYWHERE);
    assert_eq!(across(&k16, "conv-kernel-width-14"), NOWHERE);
    let k14 = conv_program(768, 768, 64, 14);
    assert_eq!(across(&k14, "conv-kernel-width-14"), [V, U, U, A, A]);
    assert_eq!(across(&k14, "conv-kernel-width-16"), NOWHERE);
    let k13 = conv_program(768, 768, 64, 13);
    assert_eq!(across(&k13, "conv-kernel-width-14"), NOWHERE);
    let v = finding(&check(&k16, Chip::M4), "conv-kernel-width-16");
    assert_eq!(v.message, "kernel width is 16");
    assert_eq!(v.op_label.as_deref(), Some("y"));
}

#[test]
fn conv_input_channel_limits() {
    let p32k = conv_program(32_000, 32, 32, 1);
    assert_eq!(across(&p32k, "conv-input-channels-32000"), EVERYWHERE);
    assert_eq!(across(&p32k, "conv-input-channels-8192"), NOWHERE);
    let p10k = conv_program(10_000, 32, 32, 1);
    assert_eq!(across(&p10k, "conv-input-channels-8192"), UNKNOWN);
    assert_eq!(across(&p10k, "conv-input-channels-32000"), NOWHERE);
    let p8k = conv_program(8192, 32, 32, 1);
    assert_eq!(across(&p8k, "conv-input-channels-8192"), NOWHERE);
}

#[test]
fn axis_extent_limits_per_chip() {
    // 20000 wide: over the M1–M3 spatial limit, within M4+; reported for input x and result y.
    let wide = conv_program(32, 32, 20_000, 1);
    assert_eq!(across(&wide, "axis-extent-16384"), [V, V, V, A, A]);
    assert_eq!(blamed(&check(&wide, Chip::M1), "axis-extent-16384"), ["y"]);
    // 20000 channels is not a spatial axis.
    let deep = conv_program(20_000, 32, 32, 1);
    assert_eq!(across(&deep, "axis-extent-16384"), NOWHERE);
    // 70000 output channels: the weight constant [70000, 32, 1, 1] and the result y.
    let huge = conv_program(32, 70_000, 32, 1);
    assert_eq!(across(&huge, "axis-extent-65536"), EVERYWHERE);
    assert_eq!(
        blamed(&check(&huge, Chip::M5), "axis-extent-65536"),
        ["w", "y"]
    );
}

#[test]
fn reshape_beyond_rank_5_is_a_violation() {
    let reshape_to = |shape: &[usize]| {
        let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
        let back = fp16(&[1, 768, 1, 32]);
        clean_with(
            vec![
                Operation::constant("s", Literal::int32_tensor(&dims)),
                op(Op::Reshape, "r", &[("x", "x"), ("shape", "s")], fp16(shape)),
                Operation::constant("b", Literal::int32_tensor(&[1, 768, 1, 32])),
                op(Op::Reshape, "back", &[("x", "r"), ("shape", "b")], back),
            ],
            "back",
        )
    };
    let six = reshape_to(&[1, 2, 2, 192, 1, 32]);
    assert_eq!(across(&six, "rank-at-most-5"), EVERYWHERE);
    assert_eq!(blamed(&check(&six, Chip::M4), "rank-at-most-5"), ["r"]);
    assert_eq!(
        across(&reshape_to(&[1, 2, 384, 1, 32]), "rank-at-most-5"),
        NOWHERE
    );
}

#[test]
fn rank_5_matmul_with_transpose_is_a_violation() {
    let mm = |shape: &[usize], transpose: bool| {
        let t = fp16(shape);
        let args = [
            ("x", "x"),
            ("y", "x"),
            ("transpose_x", "t"),
            ("transpose_y", "t"),
        ];
        program(
            vec![("x", t.clone())],
            vec![
                Operation::constant("t", Literal::bool(transpose)),
                op(Op::Matmul, "y", &args, t),
            ],
            &["y"],
        )
    };
    let rule = "matmul-rank-5-transpose";
    assert_eq!(across(&mm(&[1, 2, 3, 64, 64], true), rule), EVERYWHERE);
    assert_eq!(across(&mm(&[1, 2, 3, 64, 64], false), rule), NOWHERE);
    assert_eq!(across(&mm(&[1, 6, 64, 64], true), rule), NOWHERE);
}

#[test]
fn total_weight_bytes_against_the_ceiling() {
    let with_const = |shape: &[usize]| {
        let mut p = clean();
        p.functions[0].ops.insert(0, weight("big", fp16(shape)));
        p
    };
    // 40000 * 27500 * 2 = 2.2e9 bytes (plus the conv weight, 768 * 768 * 2 = 1179648);
    // 30000 * 30000 * 2 = 1.8e9 bytes.
    let over = with_const(&[40_000, 27_500]);
    assert_eq!(across(&over, "weights-over-2gb"), EVERYWHERE);
    assert!(finding(&check(&over, Chip::M4), "weights-over-2gb")
        .message
        .contains("2201179648 bytes"));
    let between = with_const(&[30_000, 30_000]);
    assert_eq!(across(&between, "weights-over-1.5gb"), UNKNOWN);
    assert_eq!(across(&between, "weights-over-2gb"), NOWHERE);
    assert_eq!(across(&clean(), "weights-over-1.5gb"), NOWHERE);
}

#[test]
fn large_working_set_is_a_warning_not_a_violation() {
    // Weight 4096 * 4096 * 2 = 32 MiB plus activations exceeds the 32 MiB SRAM.
    let big = conv_program(4096, 4096, 32, 1);
    assert_eq!(across(&big, "sram-working-set"), [W; 5]);
    let report = check(&big, Chip::M4);
    assert!(report.is_clean(), "{report}");
    assert!(report
        .to_string()
        .contains("warning: op `y` (conv): rule sram-working-set"));
    assert_eq!(
        across(&conv_program(2048, 2048, 32, 1), "sram-working-set"),
        NOWHERE
    );
}

/// x `[1, 768, 1, 96]` sliced at the given last-axis begins (each 32 wide) and concatenated
/// on channels.
fn sliced_concat(begins: &[i32]) -> Program {
    let mut ops = vec![
        Operation::constant("sz", Literal::int32_tensor(&[1, 768, 1, 32])),
        Operation::constant("ax", Literal::int32_tensor(&[1])),
    ];
    let mut parts = Vec::new();
    for (i, &b) in begins.iter().enumerate() {
        let (bn, sn) = (format!("b{i}"), format!("s{i}"));
        ops.push(Operation::constant(
            &bn,
            Literal::int32_tensor(&[0, 0, 0, b]),
        ));
        let args = [("x", "x"), ("begin", bn.as_str()), ("size", "sz")];
        ops.push(op(Op::SliceBySize, &sn, &args, fp16(&[1, 768, 1, 32])));
        parts.push(sn);
    }
    let channels = 768 * begins.len();
    let mut cat = op(
        Op::Concat,
        "c",
        &[("axis", "ax")],
        fp16(&[1, channels, 1, 32]),
    );
    cat.args
        .insert(0, ("values".to_string(), Argument::Tuple(parts)));
    ops.push(cat);
    ops.push(weight("w", fp16(&[768, channels, 1, 1])));
    ops.push(op(
        Op::Conv,
        "y",
        &[("x", "c"), ("weight", "w")],
        fp16(&[1, 768, 1, 32]),
    ));
    program(vec![("x", fp16(&[1, 768, 1, 96]))], ops, &["y"])
}

#[test]
fn concat_of_width_offset_slices_is_wrong_on_m1_to_m3() {
    let p = sliced_concat(&[32, 64]);
    assert_eq!(across(&p, "width-offset-slice-concat"), [V, V, V, A, A]);
    let msg = finding(&check(&p, Chip::M1), "width-offset-slice-concat").message;
    assert!(msg.contains("`s0`, `s1`"), "{msg}");
    // One slice at offset 0: only one width-offset slice feeds the concat.
    assert_eq!(
        across(&sliced_concat(&[0, 64]), "width-offset-slice-concat"),
        NOWHERE
    );
}

#[test]
fn width_offset_slices_warn_about_range_on_m1_and_m2() {
    let p = sliced_concat(&[0, 64]);
    assert_eq!(across(&p, "width-offset-slice-range"), [W, W, A, A, A]);
    assert_eq!(
        blamed(&check(&p, Chip::M2), "width-offset-slice-range"),
        ["s1"]
    );
}

/// The rule reads the resolved slice, so `slice_by_index` counts too: where it starts reading
/// on the last axis decides, whatever the spelling (a negative begin, a backwards stride).
#[test]
fn width_offset_is_where_a_slice_by_index_reads_from() {
    let by_index = |begin: i32, end: i32, stride: i32, end_mask: i32, width: usize| {
        clean_with(
            vec![
                Operation::constant("b", Literal::int32_tensor(&[0, 0, 0, begin])),
                Operation::constant("e", Literal::int32_tensor(&[0, 0, 0, end])),
                Operation::constant("st", Literal::int32_tensor(&[1, 1, 1, stride])),
                Operation::constant("bm", Literal::int32_tensor(&[1, 1, 1, 0])),
                Operation::constant("em", Literal::int32_tensor(&[1, 1, 1, end_mask])),
                op(
                    Op::SliceByIndex,
                    "s",
                    &[
                        ("x", "x"),
                        ("begin", "b"),
                        ("end", "e"),
                        ("stride", "st"),
                        ("begin_mask", "bm"),
                        ("end_mask", "em"),
                    ],
                    fp16(&[1, 768, 1, width]),
                ),
            ],
            "s",
        )
    };
    let rule = "width-offset-slice-range";
    // Columns 16..32 of 32, spelled with a negative begin.
    assert_eq!(across(&by_index(-16, 32, 1, 0, 16), rule), [W, W, A, A, A]);
    // All 32 columns walked backwards read from column 0; the last 16 backwards from 16.
    assert_eq!(across(&by_index(31, 0, -1, 1, 32), rule), NOWHERE);
    assert_eq!(across(&by_index(31, 15, -1, 0, 16), rule), [W, W, A, A, A]);
}

#[test]
fn concat_itself_is_disputed() {
    assert_eq!(across(&sliced_concat(&[0, 64]), "concat"), UNKNOWN);
    assert_eq!(across(&clean(), "concat"), NOWHERE);
}

#[test]
fn long_reduce_sum_warns_about_precision() {
    let reduce = |axes: Option<&[i32]>, out: &[usize]| {
        let mut ops = Vec::new();
        let mut args = vec![("x", "x")];
        if let Some(axes) = axes {
            ops.push(Operation::constant("ax", Literal::int32_tensor(axes)));
            args.push(("axes", "ax"));
        }
        ops.push(op(Op::ReduceSum, "r", &args, fp16(out)));
        ops.push(op(
            Op::Mul,
            "m",
            &[("x", "x"), ("y", "r")],
            fp16(&[1, 768, 1, 32]),
        ));
        clean_with(ops, "m")
    };
    let rule = "reduce-sum-precision";
    // Channels: K = 768; last axis: K = 32; axes 2 and 3: K = 32; all axes: K = 24576.
    assert_eq!(across(&reduce(Some(&[1]), &[1, 1, 1, 32]), rule), [W; 5]);
    assert_eq!(across(&reduce(Some(&[-1]), &[1, 768, 1, 1]), rule), NOWHERE);
    assert_eq!(
        across(&reduce(Some(&[2, 3]), &[1, 768, 1, 1]), rule),
        NOWHERE
    );
    let all = reduce(None, &[1, 1, 1, 1]);
    let msg = finding(&check(&all, Chip::M4), rule).message;
    assert!(msg.contains("sums 24576 elements"), "{msg}");
}

#[test]
fn int8_weights_warn_about_activation_range() {
    let dequant = Operation {
        op: Op::ConstexprAffineDequantize,
        args: vec![],
        attrs: vec![(
            "quantized_data".to_string(),
            Literal::Blob {
                ty: TensorType::new(DType::Int8, [768, 768, 1, 1]),
                path: "@model_path/weights/w.bin".to_string(),
                offset: 64,
            },
        )],
        label: "wq".to_string(),
        outputs: vec![Output {
            name: "wq".to_string(),
            ty: Type::Tensor(fp16(&[768, 768, 1, 1])),
        }],
    };
    let conv = op(
        Op::Conv,
        "y",
        &[("x", "x"), ("weight", "wq")],
        fp16(&[1, 768, 1, 32]),
    );
    let p = program(
        vec![("x", fp16(&[1, 768, 1, 32]))],
        vec![dequant, conv],
        &["y"],
    );
    assert_eq!(across(&p, "int8-weight-activation-range"), [W; 5]);
    assert_eq!(across(&clean(), "int8-weight-activation-range"), NOWHERE);
}

#[test]
fn dead_return_values_and_dead_ops_are_violations() {
    let mut p = clean();
    p.functions[0].outputs.push("ghost".to_string());
    assert_eq!(across(&p, "dead-return-value"), EVERYWHERE);
    assert!(finding(&check(&p, Chip::M4), "dead-return-value")
        .message
        .contains("`ghost`"));
    assert_eq!(across(&clean(), "dead-return-value"), NOWHERE);

    // A dead relu → sigmoid chain is reported op by op; an unused constant is not.
    let dead = clean_with(
        vec![
            op(Op::Relu, "r", &[("x", "x")], fp16(&[1, 768, 1, 32])),
            op(Op::Sigmoid, "s", &[("x", "r")], fp16(&[1, 768, 1, 32])),
            Operation::constant("unused", Literal::int32(3)),
        ],
        "x",
    );
    assert_eq!(across(&dead, "dead-op"), EVERYWHERE);
    let report = check(&dead, Chip::M4);
    assert_eq!(blamed(&report, "dead-op"), ["r", "s"]);
    assert_eq!(finding(&report, "dead-op").op.as_deref(), Some("relu"));
    assert!(finding(&report, "dead-op").fix.starts_with("remove"));
    assert_eq!(across(&clean(), "dead-op"), NOWHERE);
}

#[test]
fn elementwise_only_program_has_no_anchor() {
    let mul = op(
        Op::Mul,
        "y",
        &[("x", "x"), ("y", "x")],
        fp16(&[1, 768, 1, 32]),
    );
    let p = program(vec![("x", fp16(&[1, 768, 1, 32]))], vec![mul], &["y"]);
    assert_eq!(across(&p, "no-anchor"), EVERYWHERE);
    assert_eq!(across(&clean(), "no-anchor"), NOWHERE);
}

#[test]
fn display_prints_one_line_per_finding() {
    let mut p = conv_program(768, 768, 64, 16);
    p.functions[0]
        .ops
        .push(op(Op::Gelu, "g", &[("x", "y")], fp16(&[1, 768, 1, 49])));
    let report = check(&p, Chip::M4);
    let text = report.to_string();
    let fix = rule("conv-kernel-width-16")
        .map(|r| r.fix)
        .unwrap_or_default();
    let line = format!("op `y` (conv): rule conv-kernel-width-16: kernel width is 16; fix: {fix}");
    assert!(text.lines().any(|l| l == line), "{text}");
    let gelu = "unknown on M4 (H16): op `g` (gelu): rule gelu: uses gelu; fix: ";
    assert!(text.lines().any(|l| l.starts_with(gelu)), "{text}");
    let findings = report.violations.len() + report.unknown.len() + report.warnings.len();
    assert_eq!(text.lines().count(), findings);
}

#[test]
fn chip_names_parse_case_insensitively() {
    for (name, chip) in [
        ("m4", Chip::M4),
        ("M4", Chip::M4),
        ("Apple M4 Max", Chip::M4),
        ("h16", Chip::M4),
        ("H16G", Chip::M4),
        ("h13", Chip::M1),
        ("M2 Pro", Chip::M2),
        ("H15", Chip::M3),
        ("h17s", Chip::M5),
        (" m5 ", Chip::M5),
    ] {
        assert_eq!(Chip::from_name(name).ok(), Some(chip), "{name}");
    }
    for bad in ["m9", "", "h1", "intel", "hx16"] {
        let err = Chip::from_name(bad).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(&format!("`{bad}`")), "{err}");
        assert!(
            err.contains("m1, m2, m3, m4, m5") && err.contains("h16"),
            "{err}"
        );
    }
    assert_eq!(Chip::M5.generation(), "H16/H17s");
}

#[test]
fn catalog_is_well_formed() {
    assert_eq!(rules().len(), RULES.len());
    for (i, r) in RULES.iter().enumerate() {
        let kebab =
            r.id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c));
        assert!(kebab, "{}", r.id);
        assert!(
            RULES[..i].iter().all(|o| o.id != r.id),
            "duplicate {}",
            r.id
        );
        assert!(!r.description.is_empty() && !r.fix.is_empty() && !r.sources.is_empty());
        assert!(r.section.starts_with('§'), "{}", r.id);
        assert_eq!(rule(r.id), Some(r));
    }
    assert_eq!(rule("no-such-rule"), None);
    // What the reference pins down (§2.4, §9).
    let width = rule("io-width-multiple-of-32").unwrap();
    assert!(width.disputed);
    assert_eq!(width.applies_to(Chip::M5), Applies::Yes);
    assert_eq!(width.applies_to(Chip::M4), Applies::Unknown);
    assert_eq!(
        rule("io-min-bytes").unwrap().applies_to(Chip::M4),
        Applies::Yes
    );
    assert_eq!(
        rule("static-shapes").unwrap().enforcement,
        Enforcement::ByConstruction
    );
}

fn any_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![
            Just(0usize),
            1usize..40,
            Just(usize::MAX),
            Just(70_000usize)
        ],
        0..7,
    )
}

fn any_op() -> impl Strategy<Value = Operation> {
    let names = prop::collection::vec(
        prop::sample::select(vec!["x", "a", "b", "c", "missing", "k"]),
        0..4,
    );
    (
        prop::sample::select(Op::ALL.to_vec()),
        prop::sample::select(vec!["a", "b", "c", "k"]),
        names,
        any_shape(),
        prop::sample::select(vec![DType::Fp16, DType::Fp32, DType::Int32, DType::Bool]),
        any::<bool>(),
    )
        .prop_map(|(kind, name, args, shape, dtype, tuple)| {
            let arg_names: Vec<&str> = kind.args().iter().map(|a| a.name).collect();
            let args = arg_names
                .iter()
                .zip(args.iter().cycle())
                .map(|(a, v)| {
                    let value = if tuple {
                        Argument::Tuple(vec![v.to_string(), "x".to_string()])
                    } else {
                        Argument::Value(v.to_string())
                    };
                    (a.to_string(), value)
                })
                .collect();
            let ty = TensorType::new(dtype, shape.clone());
            Operation {
                op: kind,
                args,
                attrs: vec![(
                    "val".to_string(),
                    Literal::Tensor {
                        ty: TensorType::new(DType::Int32, [shape.len()]),
                        data: anetrain_mil::TensorData::Int32(
                            shape
                                .iter()
                                .map(|&d| d.min(i32::MAX as usize) as i32 - 3)
                                .collect(),
                        ),
                    },
                )],
                label: name.to_string(),
                outputs: vec![Output {
                    name: name.to_string(),
                    ty: Type::Tensor(ty),
                }],
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Arbitrary, mostly invalid IR (missing names, duplicates, tuples where values belong,
    /// absurd shapes) never makes the checker panic, on any chip.
    #[test]
    fn check_never_panics(
        input_shape in any_shape(),
        ops in prop::collection::vec(any_op(), 0..8),
        outputs in prop::collection::vec(prop::sample::select(vec!["a", "b", "x", "ghost"]), 0..3),
    ) {
        let p = program(vec![("x", fp16(&input_shape))], ops, &outputs);
        for chip in Chip::ALL {
            let report = check(&p, chip);
            let _ = report.to_string();
        }
    }
}
