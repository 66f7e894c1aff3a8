//! CPU-device throughput on the kernels that dominate training, against bare `gemm`.
//!
//! The headline is the dynamic-weight matmul of ane-reference §3.7 at Stories110M size: input
//! `[1, 768, 1, 256 + 768]` holding the activation in columns 0..256 and a staged 768×768
//! weight in columns 256..1024, output `[1, 768, 1, 256]`. Its `run()` is compared with one
//! `gemm::gemm` call of the same product on packed buffers. Run with
//! `cargo bench -p anetrain-device --bench dynamic_matmul`.

use anetrain_device::{CpuDevice, Device, Kernel, Precision, SharedMatrix};
use anetrain_mil::{
    Argument, DType, Function, Literal, Op, Operation, Output, Program, TensorType, Type,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tiny IR builder: enough to write the benchmark programs.
struct Builder {
    f: Function,
}

impl Builder {
    fn new(inputs: &[(&str, &[usize])]) -> Builder {
        let inputs = inputs
            .iter()
            .map(|(n, s)| (n.to_string(), TensorType::new(DType::Fp16, *s)))
            .collect();
        Builder {
            f: Function {
                name: "main".into(),
                target: "ios18".into(),
                inputs,
                ops: vec![],
                outputs: vec![],
            },
        }
    }

    fn push(
        &mut self,
        op: Op,
        args: &[(&str, &str)],
        attrs: Vec<(String, Literal)>,
        name: &str,
        ty: Type,
    ) -> String {
        self.f.ops.push(Operation {
            op,
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), Argument::Value(v.to_string())))
                .collect(),
            attrs,
            label: name.into(),
            outputs: vec![Output {
                name: name.into(),
                ty,
            }],
        });
        name.to_string()
    }

    fn konst(&mut self, name: &str, lit: Literal) -> String {
        let ty = lit.ty();
        self.push(Op::Const, &[], vec![("val".into(), lit)], name, ty)
    }

    fn ints(&mut self, name: &str, v: &[i32]) -> String {
        self.konst(name, Literal::int32_tensor(v))
    }

    fn op(&mut self, op: Op, args: &[(&str, &str)], name: &str, shape: &[usize]) -> String {
        self.push(
            op,
            args,
            vec![],
            name,
            Type::Tensor(TensorType::new(DType::Fp16, shape)),
        )
    }

    fn finish(mut self, out: &str) -> Program {
        self.f.outputs = vec![out.to_string()];
        Program::new(self.f)
    }
}

/// The §3.7 dynamic matmul: `y[o, t] = Σ_i x[i, t] · W[i, o]` with W staged beside x.
fn dynamic_matmul(c: usize, s: usize, o: usize) -> Program {
    let mut b = Builder::new(&[("pk", &[1, c, 1, s + o])]);
    let ab = b.ints("ab", &[0, 0, 0, 0]);
    let asz = b.ints("asz", &[1, c as i32, 1, s as i32]);
    let act = b.op(
        Op::SliceBySize,
        &[("x", "pk"), ("begin", &ab), ("size", &asz)],
        "act",
        &[1, c, 1, s],
    );
    let wb = b.ints("wb", &[0, 0, 0, s as i32]);
    let ws = b.ints("ws", &[1, c as i32, 1, o as i32]);
    let wt = b.op(
        Op::SliceBySize,
        &[("x", "pk"), ("begin", &wb), ("size", &ws)],
        "wt",
        &[1, c, 1, o],
    );
    let ra = b.ints("ra", &[1, 1, c as i32, s as i32]);
    let a2 = b.op(
        Op::Reshape,
        &[("x", &act), ("shape", &ra)],
        "a2",
        &[1, 1, c, s],
    );
    let sw = b.ints("sw", &[0, 1, 3, 2]);
    let a3 = b.op(
        Op::Transpose,
        &[("x", &a2), ("perm", &sw)],
        "a3",
        &[1, 1, s, c],
    );
    let rw = b.ints("rw", &[1, 1, c as i32, o as i32]);
    let w2 = b.op(
        Op::Reshape,
        &[("x", &wt), ("shape", &rw)],
        "w2",
        &[1, 1, c, o],
    );
    let f = b.konst("f", Literal::bool(false));
    let ym = b.op(
        Op::Matmul,
        &[
            ("x", &a3),
            ("y", &w2),
            ("transpose_x", &f),
            ("transpose_y", &f),
        ],
        "ym",
        &[1, 1, s, o],
    );
    let yt = b.op(
        Op::Transpose,
        &[("x", &ym), ("perm", &sw)],
        "yt",
        &[1, 1, o, s],
    );
    let ro = b.ints("ro", &[1, o as i32, 1, s as i32]);
    let y = b.op(
        Op::Reshape,
        &[("x", &yt), ("shape", &ro)],
        "y",
        &[1, o, 1, s],
    );
    b.finish(&y)
}

fn softmax_program(shape: &[usize]) -> Program {
    let mut b = Builder::new(&[("x", shape)]);
    let ax = b.konst("ax", Literal::int32(-1));
    let y = b.op(Op::Softmax, &[("x", "x"), ("axis", &ax)], "y", shape);
    b.finish(&y)
}

fn add_program(shape: &[usize]) -> Program {
    let mut b = Builder::new(&[("x", shape), ("z", shape)]);
    let y = b.op(Op::Add, &[("x", "x"), ("y", "z")], "y", shape);
    b.finish(&y)
}

fn rms_norm_program(c: usize, s: usize) -> Program {
    let shape = [1, c, 1, s];
    let mut b = Builder::new(&[("x", &shape)]);
    let sq = b.op(Op::Mul, &[("x", "x"), ("y", "x")], "sq", &shape);
    let ax = b.ints("ax", &[1]);
    let t = b.konst("t", Literal::bool(true));
    let ms = b.op(
        Op::ReduceMean,
        &[("x", &sq), ("axes", &ax), ("keep_dims", &t)],
        "ms",
        &[1, 1, 1, s],
    );
    let r = b.op(Op::Rsqrt, &[("x", &ms)], "r", &[1, 1, 1, s]);
    let y = b.op(Op::Mul, &[("x", "x"), ("y", &r)], "y", &shape);
    b.finish(&y)
}

/// Best and median wall time of `iters` calls after `warmup` calls.
fn time(warmup: usize, iters: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..warmup {
        f();
    }
    let mut t: Vec<Duration> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[0], t[iters / 2])
}

fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn kernel_for(program: &Program) -> Box<dyn Kernel> {
    match CpuDevice::new(Precision::F32).compile(program, &Default::default()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("benchmark program failed to compile: {e}");
            std::process::exit(1);
        }
    }
}

fn bench_kernel(name: &str, program: &Program) {
    let mut k = kernel_for(program);
    for i in 0..k.inputs().len() {
        let data = pseudo_random(k.inputs()[i].numel(), i as u32 + 1);
        if let Err(e) = k.write_input(i, &data) {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
    let timing = time(5, 30, || {
        if let Err(e) = k.run() {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    });
    report(name, timing, 0.0);
}

/// Best and median of `iters` alternating runs of `a` and `b`, so both see the same machine
/// load (the benchmark machines are shared).
fn time_pair(iters: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> [(Duration, Duration); 2] {
    for _ in 0..5 {
        a();
        b();
    }
    let mut ta = Vec::with_capacity(iters);
    let mut tb = Vec::with_capacity(iters);
    for _ in 0..iters {
        let s = Instant::now();
        a();
        ta.push(s.elapsed());
        let s = Instant::now();
        b();
        tb.push(s.elapsed());
    }
    ta.sort();
    tb.sort();
    [(ta[0], ta[iters / 2]), (tb[0], tb[iters / 2])]
}

fn report(name: &str, (best, median): (Duration, Duration), flops: f64) {
    let rate = if flops > 0.0 {
        format!(", {:.1} GFLOP/s (best)", flops / best.as_secs_f64() / 1e9)
    } else {
        String::new()
    };
    println!(
        "{name:<40} best {:>9.1} µs  median {:>9.1} µs{rate}",
        best.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6
    );
}

/// The dynamic matmul with its weight columns staged as a copy against the same kernel
/// reading a shared `oc × ic` matrix in place: transposed (forward roles) and as is
/// (backward roles, where the square shape makes the two products the same size).
fn bench_shared(c: usize, s: usize) {
    let run = |k: &mut Box<dyn Kernel>| {
        if let Err(e) = k.run() {
            eprintln!("dynamic matmul: {e}");
            std::process::exit(1);
        }
    };
    let mut copy = kernel_for(&dynamic_matmul(c, s, c));
    let mut shared = kernel_for(&dynamic_matmul(c, s, c));
    let packed = pseudo_random(c * (s + c), 1);
    let w = SharedMatrix::row_major(Arc::new(pseudo_random(c * c, 8)), c, c);
    let written = copy.write_input(0, &packed).and_then(|_| {
        shared.write_input(0, &packed)?;
        let w = w?;
        shared.share_input_region(0, 0..c, s..s + c, &w.transposed())?;
        Ok(w)
    });
    let w = match written {
        Ok(w) => w,
        Err(e) => {
            eprintln!("dynamic matmul: {e}");
            std::process::exit(1);
        }
    };
    let flops = 2.0 * (c * s * c) as f64;
    let [a, b] = time_pair(40, || run(&mut copy), || run(&mut shared));
    report(&format!("{c}x{c} staged copy"), a, flops);
    report(&format!("{c}x{c} shared, transposed"), b, flops);
    if let Err(e) = shared.share_input_region(0, 0..c, s..s + c, &w) {
        eprintln!("dynamic matmul: {e}");
        std::process::exit(1);
    }
    let [a, b] = time_pair(40, || run(&mut copy), || run(&mut shared));
    report(&format!("{c}x{c} staged copy"), a, flops);
    report(&format!("{c}x{c} shared, as is"), b, flops);
}

fn main() {
    let (c, s, o) = (768, 256, 768);
    let flops = 2.0 * (c * s * o) as f64;
    let mut k = kernel_for(&dynamic_matmul(c, s, o));
    let packed = pseudo_random(c * (s + o), 1);
    if let Err(e) = k.write_input(0, &packed) {
        eprintln!("dynamic matmul: {e}");
        std::process::exit(1);
    }
    let a = pseudo_random(s * c, 7);
    let w = pseudo_random(c * o, 8);
    let mut dst = vec![0.0f32; s * o];
    let [kernel, bare] = time_pair(
        40,
        || {
            if let Err(e) = k.run() {
                eprintln!("dynamic matmul: {e}");
                std::process::exit(1);
            }
        },
        || {
            // SAFETY: all three buffers are packed row-major with exactly the sizes used here.
            unsafe {
                gemm::gemm(
                    s,
                    o,
                    c,
                    dst.as_mut_ptr(),
                    1,
                    o as isize,
                    false,
                    a.as_ptr(),
                    1,
                    c as isize,
                    w.as_ptr(),
                    1,
                    o as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                )
            }
        },
    );
    report("dynamic matmul run() 256x768 · 768x768", kernel, flops);
    report("bare gemm::gemm same shape", bare, flops);
    println!(
        "ratio kernel/gemm throughput: best {:.2}, median {:.2} (target ≥ 0.70)",
        bare.0.as_secs_f64() / kernel.0.as_secs_f64(),
        bare.1.as_secs_f64() / kernel.1.as_secs_f64()
    );

    bench_shared(288, 256);
    bench_shared(768, 256);

    bench_kernel(
        "softmax [1,12,256,256] axis -1",
        &softmax_program(&[1, 12, 256, 256]),
    );
    bench_kernel("add [1,768,1,256]", &add_program(&[1, 768, 1, 256]));
    bench_kernel(
        "rms-norm-ish over channels [1,768,1,256]",
        &rms_norm_program(768, 256),
    );
}
