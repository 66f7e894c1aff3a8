//! `anetrain mil dump`: every kernel of a preset, written as the compiler's model directory,
//! passes the constraint checker on every chip and uses only the MIL forms peers have run on
//! hardware (ane-reference §3.7): no transpose flag on a rectangular operand, no matmul with a
//! constant operand, no concat with a constant.

mod common;
use common::anetrain;

use anetrain_mil::{
    check, parse_program, Chip, Function, Literal, Op, Operation, Scalar, TensorData,
};
use std::path::Path;
use std::process::Output;

/// Every kernel a config sends to the device, training first, then decode.
const KERNELS: [&str; 14] = [
    "qkv_fwd",
    "attention_fwd",
    "wo_fwd",
    "ffn_up_fwd",
    "ffn_down_fwd",
    "ffn_down_bwd",
    "ffn_up_bwd",
    "wo_bwd",
    "attention_bwd",
    "qkv_bwd",
    "decode_qkv",
    "decode_attention",
    "decode_wo",
    "decode_ffn",
];

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn dump(model: &str, seq: &str, out: &Path) -> Output {
    anetrain(&[
        "mil",
        "dump",
        "--model",
        model,
        "--seq",
        seq,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// The op that defines `name`, when it is a `const`.
fn constant<'a>(f: &'a Function, name: &str) -> Option<&'a Operation> {
    f.producer(name).filter(|op| op.op == Op::Const)
}

fn flag(f: &Function, op: &Operation, arg: &str) -> bool {
    let value = op.arg_value(arg).and_then(|n| constant(f, n));
    match value.and_then(|c| c.attr("val")) {
        Some(Literal::Scalar(Scalar::Bool(b))) => *b,
        Some(Literal::Tensor {
            data: TensorData::Bool(b),
            ..
        }) => b.first().copied().unwrap_or(false),
        other => panic!("`{}`: {arg} is not a bool const: {other:?}", op.label),
    }
}

/// Every way `f` departs from the proven forms, as sentences.
fn unproven_forms(f: &Function) -> Vec<String> {
    let mut found = Vec::new();
    for op in &f.ops {
        match op.op {
            Op::Matmul => {
                for (operand, transpose) in [("x", "transpose_x"), ("y", "transpose_y")] {
                    let name = op.arg_value(operand).unwrap();
                    if constant(f, name).is_some() {
                        found.push(format!("matmul `{}` has a constant {operand}", op.label));
                    }
                    let ty = f.value_type(name).unwrap();
                    let shape = ty.shape();
                    let square = shape[shape.len() - 1] == shape[shape.len() - 2];
                    if flag(f, op, transpose) && !square {
                        found.push(format!(
                            "matmul `{}` sets {transpose} on {shape:?}",
                            op.label
                        ));
                    }
                }
            }
            Op::Concat => {
                for name in op.arg("values").unwrap().names() {
                    if constant(f, name).is_some() {
                        found.push(format!("concat `{}` joins constant `{name}`", op.label));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

#[test]
fn every_preset_dump_passes_every_chip_with_proven_forms_only() {
    let tmp = tempfile::tempdir().unwrap();
    for model in ["stories15M", "stories110M", "qwen3-0.6b"] {
        let out_dir = tmp.path().join(model);
        let out = dump(model, "64", &out_dir);
        assert!(out.status.success(), "{model}: {}", text(&out));
        for kernel in KERNELS {
            let file = out_dir.join(kernel).join("model.mil");
            let mil = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", file.display(), text(&out)));
            let program = parse_program(&mil).unwrap();
            for path in program.weight_paths() {
                let rel = path.strip_prefix("@model_path/").unwrap();
                assert!(out_dir.join(kernel).join(rel).is_file(), "{kernel}: {path}");
            }
            for chip in Chip::ALL {
                let report = check(&program, chip);
                assert!(report.is_clean(), "{model} {kernel} on {chip:?}:\n{report}");
            }
            let forms = unproven_forms(program.main().unwrap());
            assert!(forms.is_empty(), "{model} {kernel}: {forms:#?}");
        }
        let listed = std::fs::read_dir(&out_dir).unwrap().count();
        assert_eq!(listed, KERNELS.len(), "{model}: one directory per kernel");
    }
}

#[test]
fn a_dumped_kernel_runs_from_its_directory() {
    // The attention kernel reads its causal mask from weights/mask.bin: `mil run` finds it
    // only if the dump laid the directory out as the compiler expects.
    let tmp = tempfile::tempdir().unwrap();
    let out = dump("tiny", "32", tmp.path());
    assert!(out.status.success(), "{}", text(&out));
    let file = tmp.path().join("attention_fwd").join("model.mil");
    let run = anetrain(&["mil", "run", file.to_str().unwrap(), "--random-inputs"]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(!text(&run).contains("non-finite"), "{}", text(&run));
}

#[test]
fn the_dump_never_writes_into_a_used_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let keep = tmp.path().join("notes.txt");
    std::fs::write(&keep, "mine").unwrap();
    let out = dump("tiny", "32", tmp.path());
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("already exists") && msg.contains("new directory"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "mine");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    let out = dump("no-such-model", "32", &tmp.path().join("x"));
    assert!(!out.status.success());
    assert!(text(&out).contains("preset name"), "{}", text(&out));
    assert!(!tmp.path().join("x").exists());

    // A length the model cannot hold is refused before any kernel is built (tiny holds 64).
    let out = dump("tiny", "100000", &tmp.path().join("y"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--seq 100000") && text(&out).contains("max_seq_len 64"),
        "{}",
        text(&out)
    );
    assert!(!tmp.path().join("y").exists());
}
