//! The CPU device and `mil` agree on what every program means: for random valid programs the
//! shapes `mil` resolves are the shapes the CPU evaluator produces (its run checks every op's
//! result against the resolved shape), and for random invalid ones the CPU device rejects the
//! program with exactly the error `mil::validate` gives, before anything runs.

use anetrain_device::{CpuDevice, Device, DeviceError, Precision};
use anetrain_mil::infer::{resolve_op, ArgInfo, Bound};
use anetrain_mil::{
    validate, Argument, DType, Function, Literal, Op, Operation, Output, Program, TensorType, Type,
    WeightFiles,
};
use proptest::prelude::*;
use std::collections::HashMap;

/// A deterministic stream of small random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A function under construction, typing each op the way `mil` resolves it.
struct Gen {
    f: Function,
    values: HashMap<String, (Type, Option<Literal>)>,
    n: usize,
    /// Whether some op was given a parameter `mil` must reject.
    broken: bool,
}

impl Gen {
    fn new(shape: &[usize]) -> Gen {
        let ty = TensorType::new(DType::Fp16, shape);
        let mut values = HashMap::new();
        values.insert("x".to_string(), (Type::Tensor(ty.clone()), None));
        Gen {
            f: Function {
                name: "main".into(),
                target: "ios18".into(),
                inputs: vec![("x".into(), ty)],
                ops: vec![],
                outputs: vec![],
            },
            values,
            n: 0,
            broken: false,
        }
    }

    fn fresh(&mut self) -> String {
        self.n += 1;
        format!("v{}", self.n)
    }

    fn shape(&self, name: &str) -> Vec<usize> {
        self.values[name].0.shape().to_vec()
    }

    fn input(&mut self, shape: &[usize]) -> String {
        let name = format!("in{}", self.f.inputs.len());
        let ty = TensorType::new(DType::Fp16, shape);
        self.values
            .insert(name.clone(), (Type::Tensor(ty.clone()), None));
        self.f.inputs.push((name.clone(), ty));
        name
    }

    fn konst(&mut self, lit: Literal) -> String {
        let name = self.fresh();
        self.values
            .insert(name.clone(), (lit.ty(), Some(lit.clone())));
        self.f.ops.push(Operation::constant(&name, lit));
        name
    }

    fn ints(&mut self, v: &[i64]) -> String {
        let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
        self.konst(Literal::int32_tensor(&v))
    }

    fn int(&mut self, v: i64) -> String {
        self.konst(Literal::int32(v as i32))
    }

    fn flag(&mut self, v: bool) -> String {
        self.konst(Literal::bool(v))
    }

    /// Appends `op`; its outputs get the types `mil` resolves, or (when it rejects the op)
    /// `count` copies of `x`'s type. Returns the output names.
    fn op(&mut self, op: Op, args: Vec<(&str, Argument)>, count: usize) -> Vec<String> {
        let info = |n: &str| {
            let (ty, value) = &self.values[n];
            ArgInfo {
                ty,
                value: value.as_ref(),
            }
        };
        let bound: Vec<(&str, Bound<'_>)> = args
            .iter()
            .map(|(k, a)| {
                let b = match a {
                    Argument::Value(v) => Bound::One(info(v)),
                    Argument::Tuple(vs) => Bound::Tuple(vs.iter().map(|v| info(v)).collect()),
                };
                (*k, b)
            })
            .collect();
        let types = match resolve_op(op, &bound, &[]) {
            Ok(r) => r.outputs,
            Err(_) => {
                self.broken = true;
                vec![self.values["x"].0.clone(); count]
            }
        };
        let names: Vec<String> = types.iter().map(|_| self.fresh()).collect();
        for (n, t) in names.iter().zip(&types) {
            self.values.insert(n.clone(), (t.clone(), None));
        }
        self.f.ops.push(Operation {
            op,
            args: args.into_iter().map(|(k, a)| (k.to_string(), a)).collect(),
            attrs: vec![],
            label: names[0].clone(),
            outputs: names
                .iter()
                .zip(types)
                .map(|(n, ty)| Output {
                    name: n.clone(),
                    ty,
                })
                .collect(),
        });
        names
    }
}

fn v(name: &str) -> Argument {
    Argument::Value(name.to_string())
}

/// An axis of a rank-`rank` tensor, negative half the time; with `bad`, one out of range.
fn axis(r: &mut Rng, rank: usize, bad: bool) -> i64 {
    let rank = rank as i64;
    if bad {
        return if r.chance(50) { rank } else { -rank - 1 };
    }
    let a = r.range(0, rank - 1);
    if r.chance(50) {
        a - rank
    } else {
        a
    }
}

/// Appends one random op reading `cur`; with `bad`, one of its parameters is wrong.
fn step(g: &mut Gen, r: &mut Rng, cur: &str, bad: bool) -> String {
    let shape = g.shape(cur);
    let rank = shape.len();
    let numel: usize = shape.iter().product();
    match r.range(0, 10) {
        0 => g.op(Op::Relu, vec![("x", v(cur))], 1).remove(0),
        1 => {
            // A partner that broadcasts: trailing axes, some set to 1 (or, if bad, changed).
            let keep = r.range(0, rank as i64) as usize;
            let mut other: Vec<usize> = shape[rank - keep..].to_vec();
            for d in other.iter_mut() {
                if r.chance(40) {
                    *d = 1;
                }
            }
            if bad {
                other = shape.iter().map(|&d| d + 1).collect();
            }
            let y = g.input(&other);
            g.op(Op::Add, vec![("x", v(cur)), ("y", v(&y))], 1)
                .remove(0)
        }
        2 => {
            let mut target: Vec<i64> = match r.range(0, 2) {
                0 => vec![numel as i64],
                1 => vec![1, -1],
                _ => shape.iter().rev().map(|&d| d as i64).collect(),
            };
            if bad {
                match r.range(0, 2) {
                    0 => target[0] = 0,
                    1 => target.extend([-1, -1]),
                    _ => target = vec![numel as i64 + 1],
                }
            }
            let s = g.ints(&target);
            g.op(Op::Reshape, vec![("x", v(cur)), ("shape", v(&s))], 1)
                .remove(0)
        }
        3 => {
            let mut perm: Vec<i64> = (0..rank as i64).collect();
            for i in (1..rank).rev() {
                perm.swap(i, r.range(0, i as i64) as usize);
            }
            if bad {
                perm.push(0);
            }
            let p = g.ints(&perm);
            g.op(Op::Transpose, vec![("x", v(cur)), ("perm", v(&p))], 1)
                .remove(0)
        }
        4 => {
            let (mut begin, mut end, mut stride) = (vec![], vec![], vec![]);
            for &d in &shape {
                let n = d as i64;
                begin.push(r.range(-n, n - 1));
                end.push(r.range(-n - 1, n + 1));
                stride.push([1, 2, -1, -2][r.range(0, 3) as usize]);
            }
            if bad {
                stride[0] = 0;
            }
            let (b, e, s) = (g.ints(&begin), g.ints(&end), g.ints(&stride));
            let args = vec![
                ("x", v(cur)),
                ("begin", v(&b)),
                ("end", v(&e)),
                ("stride", v(&s)),
            ];
            g.op(Op::SliceByIndex, args, 1).remove(0)
        }
        5 => {
            let count = r.range(1, rank as i64) as usize;
            let axes: Vec<i64> = (0..count).map(|i| axis(r, rank, bad && i == 0)).collect();
            let (a, k) = (g.ints(&axes), g.flag(r.chance(50)));
            let args = vec![("x", v(cur)), ("axes", v(&a)), ("keep_dims", v(&k))];
            g.op(Op::ReduceSum, args, 1).remove(0)
        }
        6 => {
            let a = g.int(axis(r, rank, bad));
            g.op(Op::Softmax, vec![("x", v(cur)), ("axis", v(&a))], 1)
                .remove(0)
        }
        7 => {
            let a = g.int(axis(r, rank, bad));
            let values = Argument::Tuple(vec![cur.to_string(), cur.to_string()]);
            g.op(Op::Concat, vec![("values", values), ("axis", v(&a))], 1)
                .remove(0)
        }
        8 => {
            let ax = r.range(0, rank as i64 - 1) as usize;
            let n = if bad { shape[ax] as i64 + 1 } else { 1 };
            let (a, k) = (g.int(ax as i64), g.int(n));
            let args = vec![("x", v(cur)), ("axis", v(&a)), ("num_splits", v(&k))];
            let outs = g.op(Op::Split, args, n as usize);
            outs[0].clone()
        }
        _ => {
            // x · xᵀ over the last two axes (a vector when x has rank 1).
            let t = g.flag(!bad || rank == 1);
            let args = vec![("x", v(cur)), ("y", v(cur)), ("transpose_y", v(&t))];
            let out = g.op(Op::Matmul, args, 1).remove(0);
            if bad && rank == 1 {
                g.broken = true;
                g.f.ops.last_mut().unwrap().outputs[0].ty =
                    Type::Tensor(TensorType::new(DType::Fp16, [7, 7]));
            }
            out
        }
    }
}

/// A random program of a few ops; `bad_at` names the op that gets a wrong parameter.
fn program(seed: u64, ops: usize, bad_at: Option<usize>) -> (Program, bool) {
    let mut r = Rng(seed);
    let rank = r.range(1, 4) as usize;
    let shape: Vec<usize> = (0..rank).map(|_| r.range(1, 4) as usize).collect();
    let mut g = Gen::new(&shape);
    let mut cur = "x".to_string();
    for i in 0..ops {
        if g.shape(&cur).is_empty() || g.shape(&cur).contains(&0) {
            break;
        }
        cur = step(&mut g, &mut r, &cur, bad_at == Some(i));
        if g.broken {
            break;
        }
    }
    g.f.outputs = vec![cur];
    let broken = g.broken;
    (Program::new(g.f), broken)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn cpu_produces_the_shapes_mil_resolves(seed: u64, ops in 1usize..5) {
        let (program, broken) = program(seed, ops, None);
        prop_assert!(!broken, "the generator made an invalid op without being asked");
        validate(&program).map_err(|e| TestCaseError::fail(format!("mil rejects a valid program: {e}")))?;
        let mut k = CpuDevice::new(Precision::F32)
            .compile(&program, &WeightFiles::new())
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        for i in 0..k.inputs().len() {
            let n = k.inputs()[i].ty.numel();
            k.write_input(i, &vec![0.5; n]).unwrap();
        }
        k.run().map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let f = program.main().unwrap();
        let last = f.ops.last().map(|op| op.outputs[0].ty.clone());
        let declared = last.unwrap_or_else(|| Type::Tensor(f.inputs[0].1.clone()));
        prop_assert_eq!(&k.outputs()[0].ty.shape, &declared.shape().to_vec());
        let mut out = vec![0.0; declared.numel()];
        k.read_output(0, &mut out).unwrap();
    }

    #[test]
    fn cpu_rejects_invalid_programs_with_mils_error(seed: u64, ops in 1usize..5, bad in 0usize..5) {
        let (program, broken) = program(seed, ops, Some(bad % ops));
        prop_assume!(broken);
        let want = validate(&program).expect_err("a broken program must not validate");
        match CpuDevice::new(Precision::F32).compile(&program, &WeightFiles::new()) {
            Ok(_) => prop_assert!(false, "the CPU device compiled a program mil rejects: {want}"),
            Err(DeviceError::Mil(got)) => prop_assert_eq!(got, want),
            Err(other) => prop_assert!(false, "the CPU device gave {other}, mil gave {want}"),
        }
    }
}
