//! Whole programs on the CPU device against naive references, strided-view edge cases,
//! input region writes, and the errors a caller can cause.

use anetrain_device::{CpuDevice, Device, DeviceError, Kernel, Precision};
use anetrain_mil::blob::BlobWriter;
use anetrain_mil::{
    Argument, DType, Function, Literal, MilError, Op, Operation, Output, Program, Scalar,
    TensorData, TensorType, Type, WeightFiles,
};

struct P {
    f: Function,
    n: usize,
}

impl P {
    fn new(inputs: &[&[usize]]) -> P {
        let inputs = inputs
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("in{i}"), TensorType::new(DType::Fp16, *s)))
            .collect();
        P {
            f: Function {
                name: "main".into(),
                target: "ios18".into(),
                inputs,
                ops: vec![],
                outputs: vec![],
            },
            n: 0,
        }
    }
    fn push(
        &mut self,
        op: Op,
        args: &[(&str, &str)],
        attrs: Vec<(String, Literal)>,
        ty: Type,
    ) -> String {
        self.n += 1;
        let name = format!("v{}", self.n);
        self.f.ops.push(Operation {
            op,
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), Argument::Value(v.to_string())))
                .collect(),
            attrs,
            label: name.clone(),
            outputs: vec![Output {
                name: name.clone(),
                ty,
            }],
        });
        name
    }
    fn lit(&mut self, lit: Literal) -> String {
        let ty = lit.ty();
        self.push(Op::Const, &[], vec![("val".into(), lit)], ty)
    }
    fn ints(&mut self, v: &[i32]) -> String {
        self.lit(Literal::int32_tensor(v))
    }
    fn op(&mut self, op: Op, args: &[(&str, &str)], shape: &[usize]) -> String {
        self.push(
            op,
            args,
            vec![],
            Type::Tensor(TensorType::new(DType::Fp16, shape)),
        )
    }
    fn compile(
        mut self,
        outs: &[&str],
        p: Precision,
        w: &WeightFiles,
    ) -> Result<Box<dyn Kernel>, DeviceError> {
        self.f.outputs = outs.iter().map(|s| s.to_string()).collect();
        CpuDevice::new(p).compile(&Program::new(self.f), w)
    }
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(747_796_405).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f32 / u32::MAX as f32 * 2.0 - 1.0
        })
        .collect()
}

fn close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }
}

fn read(k: &dyn Kernel, i: usize) -> Vec<f32> {
    let mut out = vec![0.0; k.outputs()[i].numel()];
    k.read_output(i, &mut out).unwrap();
    out
}

/// ane-reference §3.1: 1×1 conv with a BLOBFILE weight, then `h * sigmoid(h)`.
#[test]
fn conv_sigmoid_gate_program_with_blob_weights() {
    let (c, o, s) = (64, 128, 32);
    let w = values(o * c, 1);
    let x = values(c * s, 2);
    let mut blob = BlobWriter::new();
    let off = blob.add_fp16(&w);
    let mut weights = WeightFiles::new();
    weights.insert("@model_path/weights/proj.bin", blob.finish());
    let w16: Vec<f32> = w.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();

    for p in [Precision::F32, Precision::F16] {
        let mut b = P::new(&[&[1, c, 1, s]]);
        let pk = b.lit(Literal::string("valid"));
        let ones = b.ints(&[1, 1]);
        let zeros = b.ints(&[0, 0, 0, 0]);
        let g = b.lit(Literal::int32(1));
        let proj = b.lit(Literal::Blob {
            ty: TensorType::new(DType::Fp16, [o, c, 1, 1]),
            path: "@model_path/weights/proj.bin".into(),
            offset: off,
        });
        let h = b.op(
            Op::Conv,
            &[
                ("dilations", &ones),
                ("groups", &g),
                ("pad", &zeros),
                ("pad_type", &pk),
                ("strides", &ones),
                ("weight", &proj),
                ("x", "in0"),
            ],
            &[1, o, 1, s],
        );
        let gate = b.op(Op::Sigmoid, &[("x", &h)], &[1, o, 1, s]);
        let res = b.op(Op::Mul, &[("x", &h), ("y", &gate)], &[1, o, 1, s]);
        let mut k = b.compile(&[&res], p, &weights).unwrap();
        k.write_input(0, &x).unwrap();
        k.run().unwrap();
        let want: Vec<f32> = (0..o * s)
            .map(|f| {
                let (oc, t) = (f / s, f % s);
                let h: f32 = (0..c).map(|i| w16[oc * c + i] * x[i * s + t]).sum();
                h / (1.0 + (-h).exp())
            })
            .collect();
        close(
            &read(&*k, 0),
            &want,
            if p == Precision::F32 { 1e-4 } else { 2e-2 },
        );
    }
}

/// The §3.7 dynamic-weight matmul program: activation and weight share one input.
fn dynamic_matmul(c: usize, s: usize, o: usize) -> P {
    let mut b = P::new(&[&[1, c, 1, s + o]]);
    let ab = b.ints(&[0, 0, 0, 0]);
    let asz = b.ints(&[1, c as i32, 1, s as i32]);
    let act = b.op(
        Op::SliceBySize,
        &[("x", "in0"), ("begin", &ab), ("size", &asz)],
        &[1, c, 1, s],
    );
    let wb = b.ints(&[0, 0, 0, s as i32]);
    let ws = b.ints(&[1, c as i32, 1, o as i32]);
    let wt = b.op(
        Op::SliceBySize,
        &[("x", "in0"), ("begin", &wb), ("size", &ws)],
        &[1, c, 1, o],
    );
    let ra = b.ints(&[1, 1, c as i32, s as i32]);
    let a2 = b.op(Op::Reshape, &[("x", &act), ("shape", &ra)], &[1, 1, c, s]);
    let sw = b.ints(&[0, 1, 3, 2]);
    let a3 = b.op(Op::Transpose, &[("x", &a2), ("perm", &sw)], &[1, 1, s, c]);
    let rw = b.ints(&[1, 1, c as i32, o as i32]);
    let w2 = b.op(Op::Reshape, &[("x", &wt), ("shape", &rw)], &[1, 1, c, o]);
    let f = b.lit(Literal::bool(false));
    let ym = b.op(
        Op::Matmul,
        &[
            ("x", &a3),
            ("y", &w2),
            ("transpose_x", &f),
            ("transpose_y", &f),
        ],
        &[1, 1, s, o],
    );
    let yt = b.op(Op::Transpose, &[("x", &ym), ("perm", &sw)], &[1, 1, o, s]);
    let ro = b.ints(&[1, o as i32, 1, s as i32]);
    let y = b.op(Op::Reshape, &[("x", &yt), ("shape", &ro)], &[1, o, 1, s]);
    b.f.outputs = vec![y];
    b
}

#[test]
fn dynamic_matmul_with_region_writes_between_runs() {
    let (c, s, o) = (64, 32, 96);
    let b = dynamic_matmul(c, s, o);
    let out = b.f.outputs[0].clone();
    let mut k = b
        .compile(&[&out], Precision::F32, &WeightFiles::new())
        .unwrap();
    let weight = values(c * o, 3);
    k.write_input_region(0, 0..c, s..s + o, &weight).unwrap();
    let expect = |act: &[f32]| -> Vec<f32> {
        (0..o * s)
            .map(|f| {
                (0..c)
                    .map(|i| act[i * s + f % s] * weight[i * o + f / s])
                    .sum()
            })
            .collect()
    };
    for seed in [4, 5] {
        let act = values(c * s, seed);
        k.write_input_region(0, 0..c, 0..s, &act).unwrap();
        k.run().unwrap();
        close(&read(&*k, 0), &expect(&act), 1e-4);
    }
    // Channel reads of the (strided) output.
    let act = values(c * s, 5);
    let mut part = vec![0.0; 10 * s];
    k.read_output_channels(0, 7..17, &mut part).unwrap();
    close(&part, &expect(&act)[7 * s..17 * s], 1e-4);
}

/// Copies of 64K elements and more into and out of a kernel run on several threads; whole
/// writes, region writes (of a whole and of a segmented input) and reads must still land
/// exactly where a one-thread copy puts them.
#[test]
fn large_writes_and_reads_land_in_place() {
    let (c, s) = (300, 260);
    let mut b = P::new(&[&[1, c, 1, s]]);
    let y = b.op(Op::Sigmoid, &[("x", "in0")], &[1, c, 1, s]);
    let mut k = b
        .compile(&[&y], Precision::F32, &WeightFiles::new())
        .unwrap();
    let mut want = values(c * s, 11);
    k.write_input(0, &want).unwrap();
    let (ch, cols) = (7..290, 5..250);
    let patch = values(ch.len() * cols.len(), 12);
    k.write_input_region(0, ch.clone(), cols.clone(), &patch)
        .unwrap();
    for (i, row) in ch.enumerate() {
        let dst = &mut want[row * s + cols.start..][..cols.len()];
        dst.copy_from_slice(&patch[i * cols.len()..][..cols.len()]);
    }
    k.run().unwrap();
    let sigmoid: Vec<f32> = want.iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    close(&read(&*k, 0), &sigmoid, 1e-4);

    let (c, s, o) = (256, 300, 4);
    let b = dynamic_matmul(c, s, o);
    let out = b.f.outputs[0].clone();
    let mut k = b
        .compile(&[&out], Precision::F32, &WeightFiles::new())
        .unwrap();
    let (act, weight) = (values(c * s, 13), values(c * o, 14));
    k.write_input_region(0, 0..c, 0..s, &act).unwrap();
    k.write_input_region(0, 0..c, s..s + o, &weight).unwrap();
    k.run().unwrap();
    let want: Vec<f32> = (0..o * s)
        .map(|f| {
            (0..c)
                .map(|i| act[i * s + f % s] * weight[i * o + f / s])
                .sum()
        })
        .collect();
    close(&read(&*k, 0), &want, 1e-4);
}

#[test]
fn causal_attention_block() {
    let (h, t, d) = (2, 8, 4);
    let q = values(h * t * d, 6);
    let kk = values(h * t * d, 7);
    let v = values(h * t * d, 8);
    let mask: Vec<f32> = (0..t * t)
        .map(|f| if f % t > f / t { -1e4 } else { 0.0 })
        .collect();
    let mut b = P::new(&[&[1, h, t, d], &[1, h, t, d], &[1, h, t, d]]);
    let (f, tr) = (b.lit(Literal::bool(false)), b.lit(Literal::bool(true)));
    let sc = b.op(
        Op::Matmul,
        &[
            ("x", "in0"),
            ("y", "in1"),
            ("transpose_x", &f),
            ("transpose_y", &tr),
        ],
        &[1, h, t, t],
    );
    let scale = b.lit(Literal::Scalar(Scalar::Fp16(half::f16::from_f32(0.5))));
    let scaled = b.op(Op::Mul, &[("x", &sc), ("y", &scale)], &[1, h, t, t]);
    let m = b.lit(Literal::Tensor {
        ty: TensorType::new(DType::Fp16, [1, 1, t, t]),
        data: TensorData::Fp16(mask.iter().map(|&x| half::f16::from_f32(x)).collect()),
    });
    let masked = b.op(Op::Add, &[("x", &scaled), ("y", &m)], &[1, h, t, t]);
    let ax = b.lit(Literal::int32(-1));
    let pr = b.op(Op::Softmax, &[("x", &masked), ("axis", &ax)], &[1, h, t, t]);
    let out = b.op(
        Op::Matmul,
        &[
            ("x", &pr),
            ("y", "in2"),
            ("transpose_x", &f),
            ("transpose_y", &f),
        ],
        &[1, h, t, d],
    );
    let mut k = b
        .compile(&[&out], Precision::F32, &WeightFiles::new())
        .unwrap();
    for (i, data) in [&q, &kk, &v].into_iter().enumerate() {
        k.write_input(i, data).unwrap();
    }
    k.run().unwrap();
    let mut want = vec![0.0; h * t * d];
    for hh in 0..h {
        for i in 0..t {
            // Only keys j ≤ i take part; the -1e4 mask sends the rest to exp(...) = 0.
            let sc: Vec<f32> = (0..=i)
                .map(|j| {
                    0.5 * (0..d)
                        .map(|c| q[(hh * t + i) * d + c] * kk[(hh * t + j) * d + c])
                        .sum::<f32>()
                })
                .collect();
            let m = sc.iter().cloned().fold(f32::MIN, f32::max);
            let z: f32 = sc.iter().map(|x| (x - m).exp()).sum();
            for c in 0..d {
                want[(hh * t + i) * d + c] = (0..=i)
                    .map(|j| (sc[j] - m).exp() / z * v[(hh * t + j) * d + c])
                    .sum();
            }
        }
    }
    close(&read(&*k, 0), &want, 1e-4);
}

#[test]
fn slice_then_transpose_then_matmul_and_reshape_of_transposed_copy() {
    let (r, c) = (6, 10);
    let x = values(r * c, 9);
    let mut b = P::new(&[&[r, c]]);
    let bg = b.ints(&[1, 2]);
    let sz = b.ints(&[4, 5]);
    let sl = b.op(
        Op::SliceBySize,
        &[("x", "in0"), ("begin", &bg), ("size", &sz)],
        &[4, 5],
    );
    let perm = b.ints(&[1, 0]);
    let tr = b.op(Op::Transpose, &[("x", &sl), ("perm", &perm)], &[5, 4]);
    let f = b.lit(Literal::bool(false));
    let mm = b.op(
        Op::Matmul,
        &[
            ("x", &tr),
            ("y", &sl),
            ("transpose_x", &f),
            ("transpose_y", &f),
        ],
        &[5, 5],
    );
    let shp = b.ints(&[2, 10]);
    let rs = b.op(Op::Reshape, &[("x", &tr), ("shape", &shp)], &[2, 10]);
    let mut k = b
        .compile(&[&mm, &rs], Precision::F32, &WeightFiles::new())
        .unwrap();
    k.write_input(0, &x).unwrap();
    k.run().unwrap();
    let s = |i: usize, j: usize| x[(1 + i) * c + 2 + j];
    let want_mm: Vec<f32> = (0..25)
        .map(|f| (0..4).map(|kk| s(kk, f / 5) * s(kk, f % 5)).sum())
        .collect();
    let want_rs: Vec<f32> = (0..20).map(|f| s(f % 4, f / 4)).collect();
    close(&read(&*k, 0), &want_mm, 1e-5);
    close(&read(&*k, 1), &want_rs, 0.0);
}

#[test]
fn constexpr_affine_dequantize_from_int8_blob_per_channel() {
    let (o, i) = (3, 4);
    let q: Vec<i8> = (0..(o * i) as i8).map(|v| v * 9 - 50).collect();
    let scales = [0.5f32, 0.25, 2.0];
    let mut blob = BlobWriter::new();
    let off = blob.add_int8(&q);
    let mut weights = WeightFiles::new();
    weights.insert("@model_path/weights/q.bin", blob.finish());
    let mut b = P::new(&[&[1, i]]);
    let attrs = vec![
        ("axis".to_string(), Literal::int32(0)),
        (
            "quantized_data".to_string(),
            Literal::Blob {
                ty: TensorType::new(DType::Int8, [o, i]),
                path: "@model_path/weights/q.bin".into(),
                offset: off,
            },
        ),
        (
            "scale".to_string(),
            Literal::Tensor {
                ty: TensorType::new(DType::Fp16, [o]),
                data: TensorData::Fp16(scales.iter().map(|&v| half::f16::from_f32(v)).collect()),
            },
        ),
        ("zero_point".to_string(), Literal::Scalar(Scalar::Int8(2))),
    ];
    let w = b.push(
        Op::ConstexprAffineDequantize,
        &[],
        attrs,
        Type::Tensor(TensorType::new(DType::Fp16, [o, i])),
    );
    let y = b.op(Op::Linear, &[("x", "in0"), ("weight", &w)], &[1, o]);
    let mut k = b.compile(&[&w, &y], Precision::F32, &weights).unwrap();
    let x = [1.0, -1.0, 0.5, 2.0];
    k.write_input(0, &x).unwrap();
    k.run().unwrap();
    let deq: Vec<f32> = (0..o * i)
        .map(|f| (q[f] as f32 - 2.0) * scales[f / i])
        .collect();
    close(&read(&*k, 0), &deq, 0.0);
    let want: Vec<f32> = (0..o)
        .map(|r| (0..i).map(|c| deq[r * i + c] * x[c]).sum())
        .collect();
    close(&read(&*k, 1), &want, 1e-6);
}

fn small_kernel() -> Box<dyn Kernel> {
    let mut b = P::new(&[&[1, 4, 1, 8]]);
    let y = b.op(Op::Relu, &[("x", "in0")], &[1, 4, 1, 8]);
    b.compile(&[&y], Precision::F32, &WeightFiles::new())
        .unwrap()
}

#[test]
fn wrong_input_length_is_a_layout_error() {
    let mut k = small_kernel();
    let err = k.write_input(0, &[0.0; 31]).unwrap_err();
    assert!(
        matches!(err, DeviceError::Layout(ref m) if m.contains("32 elements") && m.contains("31")),
        "{err}"
    );
    assert!(matches!(
        k.write_input(1, &[0.0; 32]),
        Err(DeviceError::Layout(_))
    ));
}

#[test]
fn region_out_of_bounds_is_a_layout_error_and_valid_regions_land() {
    let mut k = small_kernel();
    assert!(
        matches!(k.write_input_region(0, 2..5, 0..2, &[0.0; 6]), Err(DeviceError::Layout(m)) if m.contains("channels"))
    );
    assert!(
        matches!(k.write_input_region(0, 0..1, 6..9, &[0.0; 3]), Err(DeviceError::Layout(m)) if m.contains("columns"))
    );
    assert!(matches!(
        k.write_input_region(0, 0..2, 0..2, &[0.0; 3]),
        Err(DeviceError::Layout(_))
    ));
    k.write_input(0, &[-1.0; 32]).unwrap();
    k.write_input_region(0, 1..3, 2..4, &[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    k.run().unwrap();
    let out = read(&*k, 0);
    let mut want = vec![0.0; 32];
    want[8 + 2..8 + 4].copy_from_slice(&[1.0, 2.0]);
    want[16 + 2..16 + 4].copy_from_slice(&[3.0, 4.0]);
    assert_eq!(out, want);
}

#[test]
fn reading_before_run_and_bad_channel_ranges_are_errors() {
    let mut k = small_kernel();
    let mut buf = vec![0.0; 32];
    assert!(matches!(
        k.read_output(0, &mut buf),
        Err(DeviceError::Runtime(_))
    ));
    k.run().unwrap();
    assert!(matches!(
        k.read_output(0, &mut buf[..5]),
        Err(DeviceError::Layout(_))
    ));
    assert!(matches!(
        k.read_output_channels(0, 3..5, &mut buf[..16]),
        Err(DeviceError::Layout(_))
    ));
}

#[test]
fn missing_blob_file_is_reported_with_its_path() {
    let mut b = P::new(&[&[2, 2]]);
    let w = b.lit(Literal::Blob {
        ty: TensorType::new(DType::Fp16, [2, 2]),
        path: "@model_path/weights/absent.bin".into(),
        offset: 64,
    });
    let y = b.op(Op::Add, &[("x", "in0"), ("y", &w)], &[2, 2]);
    let err = b
        .compile(&[&y], Precision::F32, &WeightFiles::new())
        .err()
        .expect("must fail");
    assert!(
        matches!(err, DeviceError::Mil(MilError::Blob { ref path, .. }) if path.contains("absent.bin")),
        "{err}"
    );
}

#[test]
fn declared_shape_that_disagrees_with_the_arguments_is_rejected() {
    let mut b = P::new(&[&[2, 3]]);
    let y = b.op(Op::Relu, &[("x", "in0")], &[3, 2]);
    let err = b
        .compile(&[&y], Precision::F32, &WeightFiles::new())
        .err()
        .expect("must fail");
    assert!(
        matches!(err, DeviceError::Mil(MilError::Type { .. })),
        "{err}"
    );
}

#[test]
fn non_const_parameter_is_rejected_by_validation() {
    let mut b = P::new(&[&[2, 3], &[2]]);
    b.f.inputs[1].1.dtype = DType::Int32;
    let y = b.op(Op::Reshape, &[("x", "in0"), ("shape", "in1")], &[3, 2]);
    let err = b
        .compile(&[&y], Precision::F32, &WeightFiles::new())
        .err()
        .expect("must fail");
    assert!(
        matches!(&err, DeviceError::Mil(MilError::Type { message, .. }) if message.contains("must name a const")),
        "{err}"
    );
}

/// A fork shares the compiled program but not the buffers: writing one leaves the other alone.
#[test]
fn forked_kernels_keep_their_own_inputs() {
    use anetrain_mil::{Builder, DType};
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, 4, 1, 8]).unwrap();
    let y = b.scale(x, 2.0).unwrap();
    b.output(y, "y").unwrap();
    let bundle = b.finish().unwrap();
    let device = anetrain_device::CpuDevice::new(anetrain_device::Precision::F32);
    let mut first = device.compile(&bundle.program, &bundle.weights).unwrap();
    let mut second = first.fork().unwrap();
    let ones = vec![1.0f32; 32];
    let threes = vec![3.0f32; 32];
    first.write_input(0, &ones).unwrap();
    second.write_input(0, &threes).unwrap();
    first.run().unwrap();
    second.run().unwrap();
    let (mut a, mut c) = (vec![0.0; 32], vec![0.0; 32]);
    first.read_output(0, &mut a).unwrap();
    second.read_output(0, &mut c).unwrap();
    assert!(a.iter().all(|&v| v == 2.0));
    assert!(c.iter().all(|&v| v == 6.0));
}
