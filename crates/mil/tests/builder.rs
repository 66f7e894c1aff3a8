//! The builder types every op as it is added, plumbs parameters through named consts,
//! drops dead ops, and produces programs that validate.

use anetrain_mil::validate::validate_function;
use anetrain_mil::{Argument, Builder, DType, Literal, MilError, Op, Output, TensorType, Type};

fn dynamic_matmul() -> anetrain_mil::Bundle {
    // ane-reference §3.7: activation in columns 0..32, a 64x96 staged weight in columns 32..128.
    let mut b = Builder::new();
    let pk = b.input("pk", DType::Fp16, [1, 64, 1, 128]).unwrap();
    let act = b.slice(pk, &[0, 0, 0, 0], &[1, 64, 1, 32]).unwrap();
    let w = b.slice(pk, &[0, 0, 0, 32], &[1, 64, 1, 96]).unwrap();
    let a2 = b.reshape(act, &[1, 1, 64, 32]).unwrap();
    let a3 = b.transpose_last(a2).unwrap();
    let w2 = b.reshape(w, &[1, 1, 64, 96]).unwrap();
    let ym = b.matmul(a3, w2).unwrap();
    let yt = b.transpose_last(ym).unwrap();
    let y = b.reshape(yt, &[1, 96, 1, 32]).unwrap();
    b.output(y, "y").unwrap();
    b.finish().unwrap()
}

#[test]
fn dynamic_matmul_has_the_reference_shapes_and_named_params() {
    let bundle = dynamic_matmul();
    let f = bundle.program.main().unwrap();
    assert_eq!(f.outputs, vec!["y".to_string()]);
    assert_eq!(
        f.value_type("y").unwrap(),
        Type::Tensor(TensorType::new(DType::Fp16, [1, 96, 1, 32]))
    );
    let matmul = f.ops.iter().find(|o| o.op == Op::Matmul).unwrap();
    // Flags are references to bool consts, never inline literals (the ANE rejects those).
    for flag in ["transpose_x", "transpose_y"] {
        let name = matmul.arg_value(flag).unwrap();
        let producer = f.producer(name).unwrap();
        assert_eq!(producer.op, Op::Const);
        assert_eq!(producer.attr("val"), Some(&Literal::bool(false)));
    }
    // Arguments are printed alphabetically, as Apple's tools do.
    let names: Vec<&str> = matmul.args.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["transpose_x", "transpose_y", "x", "y"]);
    assert!(validate_function(f).is_ok());
}

#[test]
fn equal_constants_are_shared() {
    let bundle = dynamic_matmul();
    let f = bundle.program.main().unwrap();
    let perms = f
        .ops
        .iter()
        .filter(|o| {
            o.op == Op::Const && o.attr("val") == Some(&Literal::int32_tensor(&[0, 1, 3, 2]))
        })
        .count();
    assert_eq!(perms, 1, "both transposes must reuse one perm const");
    let bools = f
        .ops
        .iter()
        .filter(|o| o.op == Op::Const && o.attr("val") == Some(&Literal::bool(false)))
        .count();
    assert_eq!(bools, 1);
}

#[test]
fn shape_errors_are_reported_when_the_op_is_added() {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 64, 1, 32]).unwrap();
    let y = b.input("y", DType::Fp16, [1, 48, 1, 32]).unwrap();
    let err = b.add(x, y).unwrap_err();
    assert!(
        matches!(err, MilError::Type { ref op, .. } if op == "add"),
        "{err}"
    );
    assert!(err.to_string().contains("do not broadcast"), "{err}");
    let err = b.slice(x, &[0, 0, 0, 16], &[1, 64, 1, 32]).unwrap_err();
    assert!(err.to_string().contains("exceeds"), "{err}");
    let err = b.matmul(x, y).unwrap_err();
    assert!(err.to_string().contains("inner dimensions"), "{err}");
}

#[test]
fn dtype_mismatch_asks_for_a_cast() {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 8, 1, 32]).unwrap();
    let y = b.input("y", DType::Fp32, [1, 8, 1, 32]).unwrap();
    let err = b.mul(x, y).unwrap_err();
    assert!(err.to_string().contains("cast"), "{err}");
    let y16 = b.cast(y, DType::Fp16).unwrap();
    let product = b.mul(x, y16).unwrap();
    assert_eq!(b.dtype(product), DType::Fp16);
}

#[test]
fn ops_that_reach_no_output_are_dropped() {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 8, 1, 32]).unwrap();
    let dead = b.exp(x).unwrap();
    let _also_dead = b.relu(dead).unwrap();
    let y = b.sigmoid(x).unwrap();
    b.output(y, "y").unwrap();
    let f = b.finish().unwrap().program.functions.remove(0);
    assert!(f.ops.iter().all(|o| o.op != Op::Exp && o.op != Op::Relu));
    assert_eq!(f.ops.len(), 1);
}

#[test]
fn names_are_unique_and_checked() {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 8, 1, 32]).unwrap();
    assert!(b.input("x", DType::Fp16, [1, 8, 1, 32]).is_err());
    let y = b.relu(x).unwrap();
    assert!(b.rename(y, "not an identifier").is_err());
    assert!(b.rename(y, "x").is_err());
    b.rename(y, "hidden").unwrap();
    let z = b.sigmoid(y).unwrap();
    b.output(z, "z").unwrap();
    assert!(b.output(z, "z2").is_err(), "a value is returned once");
    let f = b.finish().unwrap().program.functions.remove(0);
    let mut labels: Vec<&str> = f.ops.iter().map(|o| o.label.as_str()).collect();
    labels.sort_unstable();
    let n = labels.len();
    labels.dedup();
    assert_eq!(labels.len(), n);
    assert!(f.producer("hidden").is_some());
}

#[test]
fn split_has_one_output_per_piece() {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 96, 1, 32]).unwrap();
    let parts = b.split(x, &[32, 64], 1).unwrap();
    assert_eq!(b.shape(parts[0]), &[1, 32, 1, 32]);
    assert_eq!(b.shape(parts[1]), &[1, 64, 1, 32]);
    b.output(parts[1], "second").unwrap();
    let f = b.finish().unwrap().program.functions.remove(0);
    let split = f.ops.iter().find(|o| o.op == Op::Split).unwrap();
    assert_eq!(split.outputs.len(), 2, "a live split keeps all its outputs");
}

#[test]
fn weights_land_in_blob_files_at_the_offsets_mil_references() {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 4, 1, 32]).unwrap();
    let values: Vec<f32> = (0..8 * 4).map(|i| i as f32 * 0.25).collect();
    let w = b
        .weight("proj", DType::Fp16, [8, 4, 1, 1], &values)
        .unwrap();
    let y = b.conv(x, w, &Default::default()).unwrap();
    b.output(y, "y").unwrap();
    let bundle = b.finish().unwrap();
    let f = bundle.program.main().unwrap();
    let (path, offset, ty) = f
        .ops
        .iter()
        .find_map(|o| match o.attr("val") {
            Some(Literal::Blob { path, offset, ty }) => Some((path.clone(), *offset, ty.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(path, "@model_path/weights/proj.bin");
    assert_eq!(
        offset, 64,
        "the first record's header sits after the 64-byte file header"
    );
    assert_eq!(
        bundle.weights.read_tensor(&path, offset, &ty).unwrap(),
        values
    );
    assert_eq!(bundle.program.weight_paths(), vec![path.as_str()]);
}

#[test]
fn validation_rejects_a_wrong_declared_type_and_names_the_op() {
    let mut f = dynamic_matmul().program.functions.remove(0);
    let index = f.ops.iter().position(|o| o.op == Op::Matmul).unwrap();
    f.ops[index].outputs[0] = Output {
        name: f.ops[index].outputs[0].name.clone(),
        ty: Type::Tensor(TensorType::new(DType::Fp16, [1, 1, 32, 95])),
    };
    let err = validate_function(&f).unwrap_err();
    assert_eq!(err.op_index, Some(index));
    assert!(
        err.error.to_string().contains("[1, 1, 32, 96]"),
        "{}",
        err.error
    );
}

#[test]
fn validation_requires_params_to_be_consts() {
    let mut f = dynamic_matmul().program.functions.remove(0);
    let index = f.ops.iter().position(|o| o.op == Op::Reshape).unwrap();
    // Point `shape` at a computed value instead of a const.
    for (name, arg) in &mut f.ops[index].args {
        if name == "shape" {
            *arg = Argument::Value("pk".into());
        }
    }
    let err = validate_function(&f).unwrap_err();
    assert!(
        err.error.to_string().contains("must name a const"),
        "{}",
        err.error
    );
}
