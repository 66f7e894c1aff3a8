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

/// A minimal fp32 `.npy` (format 1.0) of `shape`.
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ")
    );
    header.push_str(&" ".repeat(63 - (10 + header.len()) % 64));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

/// The fp32 data of a format-1.0 `.npy`.
fn read_npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[start..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn the_cpu_decode_plan_dumps_width_one_steps_that_compute_the_projection() {
    // tiny: dim 64, 4 heads of 16, hidden 128; a 64-token cache has buckets of 32 and 64.
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("cpu");
    let mut args = vec!["mil", "dump", "--model", "tiny", "--seq", "64"];
    args.extend(["--decode-plan", "cpu", "--out", out_dir.to_str().unwrap()]);
    let out = anetrain(&args);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("CPU's decode plan"), "{}", text(&out));
    let mut want: Vec<String> = KERNELS[..10].iter().map(|k| k.to_string()).collect();
    for w in [1, 64] {
        want.extend(["qkv", "wo", "ffn"].map(|k| format!("decode_{k}_w{w}")));
    }
    want.extend(["w1_a32", "w1_a64", "w64_a64"].map(|k| format!("decode_attention_{k}")));
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, want);

    // decode_qkv_w1 takes one activation column then M [64][192] and gives y = Mᵀ a.
    let file = out_dir.join("decode_qkv_w1").join("model.mil");
    let program = parse_program(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let (name, ty) = program.main().unwrap().inputs[0].clone();
    let (d, oc) = (64, 192);
    assert_eq!(ty.shape, [1, d, 1, 1 + oc], "{ty}");
    let value = |i: usize| ((i * 7919 % 211) as f32 / 211.0 - 0.5) * 0.25;
    let input: Vec<f32> = (0..d * (1 + oc)).map(value).collect();
    let npy = tmp.path().join("x.npy");
    write_npy(&npy, &[1, d, 1, 1 + oc], &input);
    let (x_arg, outputs) = (format!("{name}={}", npy.display()), tmp.path().join("out"));
    let run = anetrain(&[
        "mil",
        "run",
        file.to_str().unwrap(),
        "--input",
        &x_arg,
        "--out",
        outputs.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let y = read_npy(&outputs.join("y.npy"));
    assert_eq!(y.len(), oc);
    for (o, got) in y.iter().enumerate() {
        let want: f64 = (0..d)
            .map(|c| input[c * (1 + oc) + 1 + o] as f64 * input[c * (1 + oc)] as f64)
            .sum();
        assert!((*got as f64 - want).abs() < 1e-5, "y[{o}] {got} vs {want}");
    }
    // Every attention kernel of the plan runs from its directory.
    for k in ["decode_attention_w1_a32", "decode_attention_w64_a64"] {
        let file = out_dir.join(k).join("model.mil");
        let run = anetrain(&["mil", "run", file.to_str().unwrap(), "--random-inputs"]);
        assert!(run.status.success(), "{k}: {}", text(&run));
    }
}
