//! The ANE constraint checker: every implemented rule fires on a program that breaks it, lands
//! in the right list for each chip (violation, unknown, warning, or dropped), and stays silent
//! on a program that keeps it.

use anetrain_mil::check::{rule, rules, Applies, Enforcement, RULES};
use anetrain_mil::{
    check, Argument, Chip, DType, Function, Literal, Op, Operation, Output, Program, Report,
    TensorType, Type,
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

fn konst(name: &str, value: Literal) -> Operation {
    Operation {
        op: Op::Const,
        args: vec![],
        label: name.to_string(),
        outputs: vec![Output {
            name: name.to_string(),
            ty: value.ty(),
        }],
        attrs: vec![("val".to_string(), value)],
    }
}

fn weight(name: &str, ty: TensorType) -> Operation {
    konst(
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

#[derive(Debug, PartialEq, Eq)]
enum Placed {
    Violation,
    Unknown,
    Warning,
    Absent,
}

fn placed(report: &Report, rule: &str) -> Placed {
    let has = |list: &[anetrain_mil::Violation]| list.iter().any(|v| v.rule == rule);
    match (
        has(&report.violations),
        has(&report.unknown),
        has(&report.warnings),
    ) {
        (true, false, false) => Placed::Violation,
        (false, true, false) => Placed::Unknown,
        (false, false, true) => Placed::Warning,
        (false, false, false) => Placed::Absent,
        other => panic!("rule {rule} in several lists: {other:?}"),
    }
}

fn on(program: &Program, chip: Chip, rule: &str) -> Placed {
    placed(&check(program, chip), rule)
}

fn finding(report: &Report, rule: &str) -> anetrain_mil::Violation {
    report
        .violations
        .iter()
        .chain(&report.unknown)
        .chain(&report.warnings)
        .find(|v| v.rule == rule)
        .cloned()
        .unwrap_or_else(|| panic!("no {rule} finding in:\n{report}"))
}

#[test]
fn clean_program_is_clean_on_every_chip_with_nothing_unknown() {
    for chip in Chip::ALL {
        let report = check(&clean(), chip);
        assert!(report.is_clean(), "{chip}:\n{report}");
        assert!(report.unknown.is_empty(), "{chip}:\n{report}");
        assert!(report.warnings.is_empty(), "{chip}:\n{report}");
        assert_eq!(report.to_string(), "");
    }
}

#[test]
fn fp32_arithmetic_is_a_violation_but_boundary_casts_are_not() {
    let fp32 = TensorType::new(DType::Fp32, [1, 768, 1, 32]);
    let p = clean_with(
        vec![op(Op::Add, "s", &[("x", "x"), ("y", "x")], fp32.clone())],
        "x",
    );
    let mut p = p;
    p.functions[0].outputs.push("s".to_string());
    for chip in Chip::ALL {
        assert_eq!(on(&p, chip, "fp16-compute"), Placed::Violation);
    }
    let v = finding(&check(&p, Chip::M4), "fp16-compute");
    assert_eq!(v.op_label.as_deref(), Some("s"));
    assert_eq!(v.op.as_deref(), Some("add"));

    let boundary = program(
        vec![("x", fp32.clone())],
        vec![
            konst("dt", Literal::string("fp16")),
            op(
                Op::Cast,
                "h",
                &[("x", "x"), ("dtype", "dt")],
                fp16(&[1, 768, 1, 32]),
            ),
            weight("w", fp16(&[768, 768, 1, 1])),
            op(
                Op::Conv,
                "c",
                &[("x", "h"), ("weight", "w")],
                fp16(&[1, 768, 1, 32]),
            ),
            konst("dt32", Literal::string("fp32")),
            op(Op::Cast, "y", &[("x", "c"), ("dtype", "dt32")], fp32),
        ],
        &["y"],
    );
    let report = check(&boundary, Chip::M5);
    assert!(report.is_clean() && report.unknown.is_empty(), "{report}");
}

#[test]
fn io_rank_other_than_3_or_4_is_unknown_only() {
    let p = program(
        vec![("x", fp16(&[768, 64]))],
        vec![
            weight("w", fp16(&[64, 64])),
            op(Op::Matmul, "y", &[("x", "x"), ("y", "w")], fp16(&[768, 64])),
        ],
        &["y"],
    );
    for chip in Chip::ALL {
        assert_eq!(on(&p, chip, "io-rank"), Placed::Unknown);
    }
    let rank3 = program(
        vec![("x", fp16(&[1, 768, 64]))],
        vec![
            weight("w", fp16(&[1, 64, 64])),
            op(
                Op::Matmul,
                "y",
                &[("x", "x"), ("y", "w")],
                fp16(&[1, 768, 64]),
            ),
        ],
        &["y"],
    );
    assert_eq!(on(&rank3, Chip::M4, "io-rank"), Placed::Absent);
}

#[test]
fn width_rule_is_a_violation_on_m5_and_unknown_elsewhere() {
    // 16 wide: OR's M4 Max decode bucket; 1536 channels keep it at 49,152 bytes.
    let narrow = conv_program(1536, 1536, 16, 1);
    assert_eq!(
        on(&narrow, Chip::M5, "io-width-multiple-of-32"),
        Placed::Violation
    );
    for chip in [Chip::M1, Chip::M2, Chip::M3, Chip::M4] {
        assert_eq!(
            on(&narrow, chip, "io-width-multiple-of-32"),
            Placed::Unknown
        );
    }
    let v = finding(&check(&narrow, Chip::M5), "io-width-multiple-of-32");
    assert!(
        v.message.contains("width 16 is narrower than 32"),
        "{}",
        v.message
    );
    let odd = conv_program(768, 768, 100, 1);
    let v = finding(&check(&odd, Chip::M5), "io-width-multiple-of-32");
    assert!(v.message.contains("stride of 128"), "{}", v.message);
    assert_eq!(
        on(
            &conv_program(768, 768, 64, 1),
            Chip::M5,
            "io-width-multiple-of-32"
        ),
        Placed::Absent
    );
}

#[test]
fn small_buffers_are_a_violation_on_m4_only() {
    let small = conv_program(64, 64, 32, 1); // 64 * 32 * 2 = 4096 bytes
    assert_eq!(on(&small, Chip::M4, "io-min-bytes"), Placed::Violation);
    assert_eq!(on(&small, Chip::M5, "io-min-bytes"), Placed::Unknown);
    assert!(finding(&check(&small, Chip::M4), "io-min-bytes")
        .message
        .contains("4096 bytes"));
    assert_eq!(on(&clean(), Chip::M4, "io-min-bytes"), Placed::Absent);
}

#[test]
fn several_inputs_or_outputs_need_equal_sizes() {
    let unequal = program(
        vec![("a", fp16(&[1, 768, 1, 32])), ("b", fp16(&[1, 768, 1, 64]))],
        vec![op(
            Op::Matmul,
            "y",
            &[("x", "a"), ("y", "b")],
            fp16(&[1, 768, 1, 64]),
        )],
        &["y"],
    );
    assert_eq!(
        on(&unequal, Chip::M3, "equal-input-sizes"),
        Placed::Violation
    );
    let msg = finding(&check(&unequal, Chip::M3), "equal-input-sizes").message;
    assert!(
        msg.contains("`a` 49152 B") && msg.contains("`b` 98304 B"),
        "{msg}"
    );

    let equal = program(
        vec![("a", fp16(&[1, 768, 1, 32])), ("b", fp16(&[1, 32, 1, 768]))],
        vec![op(
            Op::Matmul,
            "y",
            &[("x", "a"), ("y", "b")],
            fp16(&[1, 768, 1, 768]),
        )],
        &["y"],
    );
    assert_eq!(on(&equal, Chip::M3, "equal-input-sizes"), Placed::Absent);

    let mut two_out = clean();
    two_out.functions[0].outputs.push("x".to_string());
    assert_eq!(on(&two_out, Chip::M3, "equal-output-sizes"), Placed::Absent);
    let mut uneven = conv_program(768, 1536, 32, 1);
    uneven.functions[0].outputs.push("x".to_string());
    assert_eq!(
        on(&uneven, Chip::M3, "equal-output-sizes"),
        Placed::Violation
    );
}

#[test]
fn disputed_ops_are_unknown_not_violations() {
    for (kind, rule) in [
        (Op::Gelu, "gelu"),
        (Op::Exp, "transcendentals"),
        (Op::Log, "transcendentals"),
        (Op::Sqrt, "transcendentals"),
    ] {
        let p = clean_with(
            vec![op(kind, "g", &[("x", "x")], fp16(&[1, 768, 1, 32]))],
            "g",
        );
        for chip in Chip::ALL {
            assert_eq!(on(&p, chip, rule), Placed::Unknown, "{kind} on {chip}");
        }
    }
    for kind in [Op::Relu, Op::Sigmoid, Op::Rsqrt, Op::Tanh] {
        let p = clean_with(
            vec![op(kind, "g", &[("x", "x")], fp16(&[1, 768, 1, 32]))],
            "g",
        );
        let report = check(&p, Chip::M5);
        assert!(
            report.is_clean() && report.unknown.is_empty(),
            "{kind}: {report}"
        );
    }
}

#[test]
fn reduce_mean_is_unknown_on_m5_and_fine_elsewhere() {
    let p = clean_with(
        vec![
            konst("ax", Literal::int32_tensor(&[3])),
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
    assert_eq!(on(&p, Chip::M5, "reduce-mean-m5"), Placed::Unknown);
    assert_eq!(on(&p, Chip::M4, "reduce-mean-m5"), Placed::Absent);
    assert_eq!(on(&clean(), Chip::M5, "reduce-mean-m5"), Placed::Absent);
}

#[test]
fn sdpa_with_a_mask_is_a_violation() {
    let t = fp16(&[1, 4, 64, 32]);
    let with_mask = |mask: bool| {
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
    assert_eq!(
        on(&with_mask(true), Chip::M1, "sdpa-mask-ignored"),
        Placed::Violation
    );
    assert_eq!(
        on(&with_mask(false), Chip::M1, "sdpa-mask-ignored"),
        Placed::Absent
    );
}

#[test]
fn conv_kernel_width_limits_per_chip() {
    let k16 = conv_program(768, 768, 64, 16);
    for chip in Chip::ALL {
        assert_eq!(on(&k16, chip, "conv-kernel-width-16"), Placed::Violation);
        assert_eq!(on(&k16, chip, "conv-kernel-width-14"), Placed::Absent);
    }
    let k14 = conv_program(768, 768, 64, 14);
    assert_eq!(
        on(&k14, Chip::M1, "conv-kernel-width-14"),
        Placed::Violation
    );
    assert_eq!(on(&k14, Chip::M2, "conv-kernel-width-14"), Placed::Unknown);
    assert_eq!(on(&k14, Chip::M4, "conv-kernel-width-14"), Placed::Absent);
    assert_eq!(on(&k14, Chip::M4, "conv-kernel-width-16"), Placed::Absent);
    let k13 = conv_program(768, 768, 64, 13);
    assert_eq!(on(&k13, Chip::M1, "conv-kernel-width-14"), Placed::Absent);
    let v = finding(&check(&k16, Chip::M4), "conv-kernel-width-16");
    assert_eq!(v.message, "kernel width is 16");
    assert_eq!(v.op_label.as_deref(), Some("y"));
}

#[test]
fn conv_input_channel_limits() {
    let p32k = conv_program(32_000, 32, 32, 1);
    assert_eq!(
        on(&p32k, Chip::M4, "conv-input-channels-32000"),
        Placed::Violation
    );
    assert_eq!(
        on(&p32k, Chip::M4, "conv-input-channels-8192"),
        Placed::Absent
    );
    let p10k = conv_program(10_000, 32, 32, 1);
    assert_eq!(
        on(&p10k, Chip::M4, "conv-input-channels-8192"),
        Placed::Unknown
    );
    assert_eq!(
        on(&p10k, Chip::M4, "conv-input-channels-32000"),
        Placed::Absent
    );
    let p8k = conv_program(8192, 32, 32, 1);
    assert_eq!(
        on(&p8k, Chip::M4, "conv-input-channels-8192"),
        Placed::Absent
    );
}

#[test]
fn axis_extent_limits_per_chip() {
    // 20000 wide: over the M1–M3 spatial limit, within M4+.
    let wide = conv_program(32, 32, 20_000, 1);
    assert_eq!(on(&wide, Chip::M3, "axis-extent-16384"), Placed::Violation);
    assert_eq!(on(&wide, Chip::M4, "axis-extent-16384"), Placed::Absent);
    // 20000 channels is not a spatial axis.
    let deep = conv_program(20_000, 32, 32, 1);
    assert_eq!(on(&deep, Chip::M1, "axis-extent-16384"), Placed::Absent);
    let huge = conv_program(32, 70_000, 32, 1);
    let report = check(&huge, Chip::M5);
    assert_eq!(placed(&report, "axis-extent-65536"), Placed::Violation);
    // Reported for the conv's result and its weight constant (axis 0 of [70000, 32, 1, 1]).
    let labels: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.rule == "axis-extent-65536")
        .filter_map(|v| v.op_label.as_deref())
        .collect();
    assert_eq!(labels, vec!["w", "y"]);
}

#[test]
fn reshape_beyond_rank_5_is_a_violation() {
    let reshape_to = |shape: &[usize]| {
        let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
        clean_with(
            vec![
                konst("s", Literal::int32_tensor(&dims)),
                op(Op::Reshape, "r", &[("x", "x"), ("shape", "s")], fp16(shape)),
                konst("b", Literal::int32_tensor(&[1, 768, 1, 32])),
                op(
                    Op::Reshape,
                    "back",
                    &[("x", "r"), ("shape", "b")],
                    fp16(&[1, 768, 1, 32]),
                ),
            ],
            "back",
        )
    };
    let six = reshape_to(&[1, 2, 2, 192, 1, 32]);
    assert_eq!(on(&six, Chip::M4, "rank-at-most-5"), Placed::Violation);
    assert_eq!(
        finding(&check(&six, Chip::M4), "rank-at-most-5")
            .op_label
            .as_deref(),
        Some("r")
    );
    assert_eq!(
        on(&reshape_to(&[1, 2, 384, 1, 32]), Chip::M4, "rank-at-most-5"),
        Placed::Absent
    );
}

#[test]
fn rank_5_matmul_with_transpose_is_a_violation() {
    let mm = |shape: &[usize], transpose: bool| {
        let t = fp16(shape);
        program(
            vec![("x", t.clone())],
            vec![
                konst("t", Literal::bool(transpose)),
                op(
                    Op::Matmul,
                    "y",
                    &[
                        ("x", "x"),
                        ("y", "x"),
                        ("transpose_x", "t"),
                        ("transpose_y", "t"),
                    ],
                    t.clone(),
                ),
            ],
            &["y"],
        )
    };
    assert_eq!(
        on(
            &mm(&[1, 2, 3, 64, 64], true),
            Chip::M4,
            "matmul-rank-5-transpose"
        ),
        Placed::Violation
    );
    assert_eq!(
        on(
            &mm(&[1, 2, 3, 64, 64], false),
            Chip::M4,
            "matmul-rank-5-transpose"
        ),
        Placed::Absent
    );
    assert_eq!(
        on(
            &mm(&[1, 6, 64, 64], true),
            Chip::M4,
            "matmul-rank-5-transpose"
        ),
        Placed::Absent
    );
}

#[test]
fn total_weight_bytes_against_the_ceiling() {
    let with_const = |shape: &[usize]| {
        let mut p = clean();
        p.functions[0].ops.insert(0, weight("big", fp16(shape)));
        p
    };
    // 40000 * 27500 * 2 = 2.2e9 bytes; 30000 * 30000 * 2 = 1.8e9 bytes.
    assert_eq!(
        on(&with_const(&[40_000, 27_500]), Chip::M4, "weights-over-2gb"),
        Placed::Violation
    );
    let between = with_const(&[30_000, 30_000]);
    assert_eq!(
        on(&between, Chip::M4, "weights-over-1.5gb"),
        Placed::Unknown
    );
    assert_eq!(on(&between, Chip::M4, "weights-over-2gb"), Placed::Absent);
    assert_eq!(on(&clean(), Chip::M4, "weights-over-1.5gb"), Placed::Absent);
}

#[test]
fn large_working_set_is_a_warning_not_a_violation() {
    // Weight 4096 * 4096 * 2 = 32 MiB plus activations exceeds the 32 MiB SRAM.
    let big = conv_program(4096, 4096, 32, 1);
    let report = check(&big, Chip::M4);
    assert_eq!(placed(&report, "sram-working-set"), Placed::Warning);
    assert!(report.is_clean(), "{report}");
    assert!(report
        .to_string()
        .contains("warning: op `y` (conv): rule sram-working-set"));
    assert_eq!(
        on(
            &conv_program(2048, 2048, 32, 1),
            Chip::M4,
            "sram-working-set"
        ),
        Placed::Absent
    );
}

/// x `[1, 768, 1, 96]` sliced at the given last-axis begins (each 32 wide) and concatenated
/// on channels.
fn sliced_concat(begins: &[i32]) -> Program {
    let mut ops = vec![
        konst("sz", Literal::int32_tensor(&[1, 768, 1, 32])),
        konst("ax", Literal::int32_tensor(&[1])),
    ];
    let mut parts = Vec::new();
    for (i, &b) in begins.iter().enumerate() {
        let (bn, sn) = (format!("b{i}"), format!("s{i}"));
        ops.push(konst(&bn, Literal::int32_tensor(&[0, 0, 0, b])));
        ops.push(op(
            Op::SliceBySize,
            &sn,
            &[("x", "x"), ("begin", &bn), ("size", "sz")],
            fp16(&[1, 768, 1, 32]),
        ));
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
    for chip in [Chip::M1, Chip::M2, Chip::M3] {
        assert_eq!(on(&p, chip, "width-offset-slice-concat"), Placed::Violation);
    }
    for chip in [Chip::M4, Chip::M5] {
        assert_eq!(on(&p, chip, "width-offset-slice-concat"), Placed::Absent);
    }
    let msg = finding(&check(&p, Chip::M1), "width-offset-slice-concat").message;
    assert!(msg.contains("`s0`, `s1`"), "{msg}");
    // One slice at offset 0: only one width-offset slice feeds the concat.
    assert_eq!(
        on(
            &sliced_concat(&[0, 64]),
            Chip::M1,
            "width-offset-slice-concat"
        ),
        Placed::Absent
    );
}

#[test]
fn width_offset_slices_warn_about_range_on_m1_and_m2() {
    let p = sliced_concat(&[0, 64]);
    let report = check(&p, Chip::M2);
    let warned: Vec<_> = report
        .warnings
        .iter()
        .filter(|v| v.rule == "width-offset-slice-range")
        .filter_map(|v| v.op_label.as_deref())
        .collect();
    assert_eq!(warned, vec!["s1"]);
    assert_eq!(on(&p, Chip::M3, "width-offset-slice-range"), Placed::Absent);
}

#[test]
fn concat_itself_is_disputed() {
    assert_eq!(
        on(&sliced_concat(&[0, 64]), Chip::M4, "concat"),
        Placed::Unknown
    );
}

#[test]
fn long_reduce_sum_warns_about_precision() {
    let reduce = |axes: Option<&[i32]>, out: &[usize]| {
        let mut ops = Vec::new();
        let mut args = vec![("x", "x")];
        if let Some(axes) = axes {
            ops.push(konst("ax", Literal::int32_tensor(axes)));
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
    // Channels: K = 768; last axis: K = 32; all axes: K = 24576.
    assert_eq!(
        on(
            &reduce(Some(&[1]), &[1, 1, 1, 32]),
            Chip::M4,
            "reduce-sum-precision"
        ),
        Placed::Warning
    );
    assert_eq!(
        on(
            &reduce(Some(&[-1]), &[1, 768, 1, 1]),
            Chip::M4,
            "reduce-sum-precision"
        ),
        Placed::Absent
    );
    assert_eq!(
        on(
            &reduce(Some(&[2, 3]), &[1, 768, 1, 1]),
            Chip::M4,
            "reduce-sum-precision"
        ),
        Placed::Absent
    );
    let all = reduce(None, &[1, 1, 1, 1]);
    let msg = finding(&check(&all, Chip::M4), "reduce-sum-precision").message;
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
    let p = program(
        vec![("x", fp16(&[1, 768, 1, 32]))],
        vec![
            dequant,
            op(
                Op::Conv,
                "y",
                &[("x", "x"), ("weight", "wq")],
                fp16(&[1, 768, 1, 32]),
            ),
        ],
        &["y"],
    );
    assert_eq!(
        on(&p, Chip::M4, "int8-weight-activation-range"),
        Placed::Warning
    );
    assert_eq!(
        on(&clean(), Chip::M4, "int8-weight-activation-range"),
        Placed::Absent
    );
}

#[test]
fn dead_return_values_and_dead_ops_are_violations() {
    let mut p = clean();
    p.functions[0].outputs.push("ghost".to_string());
    let report = check(&p, Chip::M4);
    assert!(finding(&report, "dead-return-value")
        .message
        .contains("`ghost`"));
    assert_eq!(placed(&report, "dead-return-value"), Placed::Violation);

    // A dead relu → sigmoid chain is reported op by op; an unused constant is not.
    let dead = clean_with(
        vec![
            op(Op::Relu, "r", &[("x", "x")], fp16(&[1, 768, 1, 32])),
            op(Op::Sigmoid, "s", &[("x", "r")], fp16(&[1, 768, 1, 32])),
            konst("unused", Literal::int32(3)),
        ],
        "x",
    );
    let report = check(&dead, Chip::M4);
    let dead_ops: Vec<_> = report
        .violations
        .iter()
        .filter(|v| v.rule == "dead-op")
        .map(|v| (v.op_label.as_deref(), v.op.as_deref()))
        .collect();
    assert_eq!(
        dead_ops,
        vec![(Some("r"), Some("relu")), (Some("s"), Some("sigmoid"))]
    );
    assert!(finding(&report, "dead-op").fix.starts_with("remove"));
    assert_eq!(on(&clean(), Chip::M4, "dead-op"), Placed::Absent);
}

#[test]
fn elementwise_only_program_has_no_anchor() {
    let p = program(
        vec![("x", fp16(&[1, 768, 1, 32]))],
        vec![op(
            Op::Mul,
            "y",
            &[("x", "x"), ("y", "x")],
            fp16(&[1, 768, 1, 32]),
        )],
        &["y"],
    );
    assert_eq!(on(&p, Chip::M2, "no-anchor"), Placed::Violation);
    assert_eq!(on(&clean(), Chip::M2, "no-anchor"), Placed::Absent);
}

#[test]
fn display_prints_one_line_per_finding() {
    let mut p = conv_program(768, 768, 64, 16);
    p.functions[0]
        .ops
        .push(op(Op::Gelu, "g", &[("x", "y")], fp16(&[1, 768, 1, 49])));
    let report = check(&p, Chip::M4);
    let text = report.to_string();
    let fix = rule("conv-kernel-width-16").unwrap().fix;
    let expected_line =
        format!("op `y` (conv): rule conv-kernel-width-16: kernel width is 16; fix: {fix}");
    assert!(text.lines().any(|l| l == expected_line), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("unknown on M4 (H16): op `g` (gelu): rule gelu:")),
        "{text}"
    );
    assert_eq!(
        text.lines().count(),
        report.violations.len() + report.unknown.len() + report.warnings.len()
    );
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
        assert_eq!(Chip::from_name(name).unwrap(), chip, "{name}");
    }
    for bad in ["m9", "", "h1", "intel", "hx16"] {
        let err = Chip::from_name(bad).unwrap_err().to_string();
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
        assert!(
            r.id.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c)),
            "{}",
            r.id
        );
        assert!(
            RULES[..i].iter().all(|o| o.id != r.id),
            "duplicate {}",
            r.id
        );
        assert!(!r.description.is_empty() && !r.fix.is_empty() && !r.sources.is_empty());
        assert!(r.section.starts_with('§'));
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
