//! Every MIL op on the CPU device against a naive reference written here with explicit index
//! loops, on random shapes and values, in both precisions.

// The references index explicitly on purpose: they spell the math out independently.
#![allow(clippy::needless_range_loop)]

use anetrain_device::{CpuDevice, Device, Precision};
use anetrain_mil::{
    Argument, DType, Function, Literal, Op, Operation, Output, Program, Scalar, TensorData,
    TensorType, Type, WeightFiles,
};
use proptest::prelude::*;

// ---------- a tiny IR builder ----------

struct P {
    f: Function,
    n: usize,
}

impl P {
    fn new() -> P {
        P {
            f: Function {
                name: "main".into(),
                target: "ios18".into(),
                inputs: vec![],
                ops: vec![],
                outputs: vec![],
            },
            n: 0,
        }
    }
    fn fresh(&mut self) -> String {
        self.n += 1;
        format!("v{}", self.n)
    }
    fn input(&mut self, shape: &[usize]) -> String {
        let name = format!("in{}", self.f.inputs.len());
        self.f
            .inputs
            .push((name.clone(), TensorType::new(DType::Fp16, shape)));
        name
    }
    fn lit(&mut self, lit: Literal) -> String {
        let name = self.fresh();
        self.f.ops.push(Operation::constant(&name, lit));
        name
    }
    fn ints(&mut self, v: &[i64]) -> String {
        let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
        self.lit(Literal::int32_tensor(&v))
    }
    fn int(&mut self, v: i64) -> String {
        self.lit(Literal::int32(v as i32))
    }
    fn flag(&mut self, v: bool) -> String {
        self.lit(Literal::bool(v))
    }
    fn fp(&mut self, v: f32) -> String {
        self.lit(Literal::Scalar(Scalar::Fp32(v)))
    }
    fn string(&mut self, v: &str) -> String {
        self.lit(Literal::string(v))
    }
    fn op_n(
        &mut self,
        op: Op,
        args: Vec<(&str, Argument)>,
        outs: &[(DType, Vec<usize>)],
    ) -> Vec<String> {
        let names: Vec<String> = outs.iter().map(|_| self.fresh()).collect();
        self.f.ops.push(Operation {
            op,
            args: args.into_iter().map(|(k, a)| (k.to_string(), a)).collect(),
            attrs: vec![],
            label: names[0].clone(),
            outputs: names
                .iter()
                .zip(outs)
                .map(|(n, (d, s))| Output {
                    name: n.clone(),
                    ty: Type::Tensor(TensorType::new(*d, s.clone())),
                })
                .collect(),
        });
        names
    }
    fn op(&mut self, op: Op, args: &[(&str, &str)], dtype: DType, shape: &[usize]) -> String {
        let args = args
            .iter()
            .map(|(k, v)| (*k, Argument::Value(v.to_string())))
            .collect();
        self.op_n(op, args, &[(dtype, shape.to_vec())]).remove(0)
    }
    fn run(
        mut self,
        outs: &[&str],
        precision: Precision,
        inputs: &[&[f32]],
        weights: &WeightFiles,
    ) -> Vec<Vec<f32>> {
        self.f.outputs = outs.iter().map(|s| s.to_string()).collect();
        let mut k = CpuDevice::new(precision)
            .compile(&Program::new(self.f), weights)
            .expect("compile");
        // A first run on NaN inputs leaves NaN in every buffer the kernel pools, so an op that
        // fails to write an element of a reused output shows it in the checked run.
        for (i, d) in inputs.iter().enumerate() {
            k.write_input(i, &vec![f32::NAN; d.len()]).expect("write");
        }
        k.run().expect("run");
        for (i, d) in inputs.iter().enumerate() {
            k.write_input(i, d).expect("write");
        }
        k.run().expect("run");
        (0..outs.len())
            .map(|i| {
                let mut o = vec![0.0; k.outputs()[i].numel()];
                k.read_output(i, &mut o).expect("read");
                o
            })
            .collect()
    }
}

// ---------- naive helpers (independent of the implementation) ----------

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

/// Multi-index of flat row-major position `f`.
fn unflat(s: &[usize], mut f: usize) -> Vec<usize> {
    let mut idx = vec![0; s.len()];
    for d in (0..s.len()).rev() {
        idx[d] = f % s[d];
        f /= s[d];
    }
    idx
}

fn flat(s: &[usize], idx: &[usize]) -> usize {
    idx.iter().zip(s).fold(0, |acc, (&i, &n)| acc * n + i)
}

/// Element of `data` (shape `s`) at a broadcast index of a higher-rank output.
fn bcast(data: &[f32], s: &[usize], out_idx: &[usize]) -> f32 {
    let lead = out_idx.len() - s.len();
    let idx: Vec<usize> = (0..s.len())
        .map(|d| if s[d] == 1 { 0 } else { out_idx[lead + d] })
        .collect();
    data[flat(s, &idx)]
}

fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (hi - lo) * ((x >> 11) as f32 / (1u64 << 53) as f32)
        })
        .collect()
}

const BOTH: [Precision; 2] = [Precision::F32, Precision::F16];

/// Compares with tolerance `rel·(1 + |want|) + abs` (abs covers sums of `mag` magnitude).
fn close(got: &[f32], want: &[f32], p: Precision, mag: f32) {
    assert_eq!(got.len(), want.len());
    let rel = if p == Precision::F32 { 1e-4 } else { 4e-3 };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = rel * (1.0 + w.abs() + mag);
        assert!(
            (g - w).abs() <= tol || (g.is_nan() && w.is_nan()) || g == w,
            "{p:?} element {i}: got {g}, want {w} (tol {tol})"
        );
    }
}

fn shape_strategy(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, 1..=max_rank)
}

fn cfg() -> ProptestConfig {
    ProptestConfig::with_cases(32)
}

// ---------- shape ops ----------

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn slice_by_size_matches_index_loops(shape in shape_strategy(4, 6), seed: u64) {
        let r = values(shape.len() * 2, seed, 0.0, 1.0);
        let begin: Vec<i64> = (0..shape.len()).map(|d| (r[d] * shape[d] as f32) as i64).collect();
        let size: Vec<i64> = (0..shape.len()).map(|d| {
            let rest = shape[d] as i64 - begin[d];
            if r[shape.len() + d] < 0.2 { -1 } else { 1 + ((r[shape.len() + d] * rest as f32) as i64).min(rest - 1) }
        }).collect();
        let out: Vec<usize> = (0..shape.len()).map(|d| if size[d] == -1 { shape[d] - begin[d] as usize } else { size[d] as usize }).collect();
        let x = values(numel(&shape), seed ^ 1, -2.0, 2.0);
        let want: Vec<f32> = (0..numel(&out)).map(|f| {
            let i = unflat(&out, f);
            let src: Vec<usize> = (0..i.len()).map(|d| i[d] + begin[d] as usize).collect();
            x[flat(&shape, &src)]
        }).collect();
        for p in BOTH {
            let mut b = P::new();
            let xi = b.input(&shape);
            let (bb, ss) = (b.ints(&begin), b.ints(&size));
            let y = b.op(Op::SliceBySize, &[("x", &xi), ("begin", &bb), ("size", &ss)], DType::Fp16, &out);
            close(&b.run(&[&y], p, &[&x], &WeightFiles::new())[0], &want, p, 0.0);
        }
    }

    #[test]
    fn slice_by_index_follows_numpy(shape in shape_strategy(3, 7), seed: u64) {
        let rank = shape.len();
        let r = values(rank * 6, seed, 0.0, 1.0);
        let pick = |k: usize, d: usize, lo: i64, hi: i64| lo + (r[k * rank + d] * (hi - lo + 1) as f32) as i64;
        let mut begin = vec![0i64; rank];
        let mut end = vec![0i64; rank];
        let mut stride = vec![1i64; rank];
        let (mut bm, mut em, mut sq) = (vec![0i64; rank], vec![0i64; rank], vec![0i64; rank]);
        for d in 0..rank {
            let n = shape[d] as i64;
            begin[d] = pick(0, d, -n, n - 1);
            end[d] = pick(1, d, -n - 1, n + 1);
            stride[d] = [1, 2, 3, -1, -2][pick(2, d, 0, 4).min(4) as usize];
            bm[d] = (r[3 * rank + d] < 0.2) as i64;
            em[d] = (r[4 * rank + d] < 0.2) as i64;
            sq[d] = (r[5 * rank + d] < 0.15) as i64;
        }
        // Numpy's slice semantics, written out per axis.
        let mut picks: Vec<Vec<usize>> = Vec::new();
        for d in 0..rank {
            let n = shape[d] as i64;
            let norm = |i: i64| if i < 0 { i + n } else { i };
            if sq[d] == 1 {
                picks.push(vec![norm(begin[d]) as usize]);
                continue;
            }
            let s = stride[d];
            let (b0, e0) = if s > 0 {
                (if bm[d] == 1 { 0 } else { norm(begin[d]).clamp(0, n) }, if em[d] == 1 { n } else { norm(end[d]).clamp(0, n) })
            } else {
                (if bm[d] == 1 { n - 1 } else { norm(begin[d]).clamp(-1, n - 1) }, if em[d] == 1 { -1 } else { norm(end[d]).clamp(-1, n - 1) })
            };
            let mut v = Vec::new();
            let mut i = b0;
            while (s > 0 && i < e0) || (s < 0 && i > e0) {
                v.push(i as usize);
                i += s;
            }
            picks.push(v);
        }
        let full: Vec<usize> = picks.iter().map(|v| v.len()).collect();
        let out: Vec<usize> = (0..rank).filter(|&d| sq[d] == 0).map(|d| full[d]).collect();
        let x = values(numel(&shape), seed ^ 3, -2.0, 2.0);
        let want: Vec<f32> = (0..numel(&full)).map(|f| {
            let i = unflat(&full, f);
            let src: Vec<usize> = (0..rank).map(|d| picks[d][i[d]]).collect();
            x[flat(&shape, &src)]
        }).collect();
        let mut b = P::new();
        let xi = b.input(&shape);
        let names: Vec<String> = [&begin, &end, &stride, &bm, &em, &sq].iter().map(|v| b.ints(v)).collect();
        let args = [("x", xi.as_str()), ("begin", &names[0]), ("end", &names[1]), ("stride", &names[2]), ("begin_mask", &names[3]), ("end_mask", &names[4]), ("squeeze_mask", &names[5])];
        let y = b.op(Op::SliceByIndex, &args, DType::Fp16, &out);
        close(&b.run(&[&y], Precision::F32, &[&x], &WeightFiles::new())[0], &want, Precision::F32, 0.0);
    }

    #[test]
    fn transpose_then_reshape_reads_in_permuted_order(shape in shape_strategy(4, 5), seed: u64) {
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        let r = values(rank, seed, 0.0, 1.0);
        for d in (1..rank).rev() {
            perm.swap(d, (r[d] * (d + 1) as f32) as usize % (d + 1));
        }
        let tshape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let x = values(numel(&shape), seed ^ 5, -2.0, 2.0);
        let want: Vec<f32> = (0..numel(&tshape)).map(|f| {
            let i = unflat(&tshape, f);
            let mut src = vec![0; rank];
            for d in 0..rank { src[perm[d]] = i[d]; }
            x[flat(&shape, &src)]
        }).collect();
        let flat_shape = [numel(&shape) as i64];
        for p in BOTH {
            let mut b = P::new();
            let xi = b.input(&shape);
            let pi = b.ints(&perm.iter().map(|&v| v as i64).collect::<Vec<_>>());
            let t = b.op(Op::Transpose, &[("x", &xi), ("perm", &pi)], DType::Fp16, &tshape);
            let sh = b.ints(&[-1]);
            let y = b.op(Op::Reshape, &[("x", &t), ("shape", &sh)], DType::Fp16, &[flat_shape[0] as usize]);
            let outs = b.run(&[&t, &y], p, &[&x], &WeightFiles::new());
            close(&outs[0], &want, p, 0.0);
            close(&outs[1], &want, p, 0.0);
        }
    }

    #[test]
    fn concat_and_interleave(shape in shape_strategy(3, 4), n in 1usize..4, seed: u64, interleave: bool) {
        let rank = shape.len();
        let axis = (seed as usize) % rank;
        let shapes: Vec<Vec<usize>> = (0..n).map(|i| {
            let mut s = shape.clone();
            if !interleave { s[axis] = 1 + (seed as usize >> (4 * i)) % 3; }
            s
        }).collect();
        let xs: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(i, s)| values(numel(s), seed ^ (i as u64 + 9), -2.0, 2.0)).collect();
        let mut out = shape.clone();
        out[axis] = shapes.iter().map(|s| s[axis]).sum();
        let want: Vec<f32> = (0..numel(&out)).map(|f| {
            let mut i = unflat(&out, f);
            let (which, pos) = if interleave { (i[axis] % n, i[axis] / n) } else {
                let mut pos = i[axis];
                let mut which = 0;
                while pos >= shapes[which][axis] { pos -= shapes[which][axis]; which += 1; }
                (which, pos)
            };
            i[axis] = pos;
            xs[which][flat(&shapes[which], &i)]
        }).collect();
        let mut b = P::new();
        let ins: Vec<String> = shapes.iter().map(|s| b.input(s)).collect();
        let ax = b.int(axis as i64 - rank as i64);
        let il = b.flag(interleave);
        let y = b.op_n(Op::Concat, vec![("values", Argument::Tuple(ins.clone())), ("axis", Argument::Value(ax)), ("interleave", Argument::Value(il))], &[(DType::Fp16, out.clone())]).remove(0);
        let refs: Vec<&[f32]> = xs.iter().map(|v| v.as_slice()).collect();
        close(&b.run(&[&y], Precision::F32, &refs, &WeightFiles::new())[0], &want, Precision::F32, 0.0);
    }

    #[test]
    fn split_gives_consecutive_pieces(shape in shape_strategy(3, 6), seed: u64, by_count: bool) {
        let axis = seed as usize % shape.len();
        let dim = shape[axis];
        let sizes: Vec<usize> = if by_count { vec![1; dim] } else {
            let cut = (seed as usize >> 8) % (dim + 1);
            vec![cut, dim - cut]
        };
        let x = values(numel(&shape), seed ^ 11, -2.0, 2.0);
        let mut b = P::new();
        let xi = b.input(&shape);
        let ax = b.int(axis as i64);
        let mut args = vec![("x", Argument::Value(xi)), ("axis", Argument::Value(ax))];
        if by_count {
            args.push(("num_splits", Argument::Value(b.int(dim as i64))));
        } else {
            let s: Vec<i64> = sizes.iter().map(|&v| v as i64).collect();
            args.push(("split_sizes", Argument::Value(b.ints(&s))));
        }
        let outs: Vec<(DType, Vec<usize>)> = sizes.iter().map(|&n| { let mut s = shape.clone(); s[axis] = n; (DType::Fp16, s) }).collect();
        let names = b.op_n(Op::Split, args, &outs);
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let got = b.run(&refs, Precision::F32, &[&x], &WeightFiles::new());
        let mut start = 0;
        for (k, (_, s)) in outs.iter().enumerate() {
            let want: Vec<f32> = (0..numel(s)).map(|f| { let mut i = unflat(s, f); i[axis] += start; x[flat(&shape, &i)] }).collect();
            close(&got[k], &want, Precision::F32, 0.0);
            start += s[axis];
        }
    }
}

// ---------- linear algebra ----------

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn matmul_with_transposes_and_broadcast(m in 1usize..6, k in 1usize..7, n in 1usize..6, bx in 1usize..3, by in 1usize..3, tx: bool, ty: bool, seed: u64, rank1: u8) {
        let (b0, bx, by) = (2usize, bx, by);
        let (x_rank1, y_rank1) = (rank1 % 4 == 1, rank1 % 4 == 2);
        let xs: Vec<usize> = if x_rank1 { vec![k] } else if tx { vec![b0, bx, k, m] } else { vec![b0, bx, m, k] };
        let ys: Vec<usize> = if y_rank1 { vec![k] } else if ty { vec![by, n, k] } else { vec![by, k, n] };
        let (tx, ty) = (tx && !x_rank1, ty && !y_rank1);
        let batch = if x_rank1 && y_rank1 { vec![] } else if x_rank1 { vec![by] } else if y_rank1 { vec![b0, bx] } else { vec![b0, bx.max(by)] };
        let mut out = batch.clone();
        if !x_rank1 { out.push(m); }
        if !y_rank1 { out.push(n); }
        let x = values(numel(&xs), seed, -1.0, 1.0);
        let y = values(numel(&ys), seed ^ 13, -1.0, 1.0);
        let xat = |bi: &[usize], i: usize, kk: usize| -> f32 {
            if x_rank1 { return x[kk]; }
            let b = [bi[0], if bx == 1 { 0 } else { bi[1] }];
            let idx = if tx { [b[0], b[1], kk, i] } else { [b[0], b[1], i, kk] };
            x[flat(&xs, &idx)]
        };
        let yat = |bi: &[usize], kk: usize, j: usize| -> f32 {
            if y_rank1 { return y[kk]; }
            let b = if by == 1 { 0 } else { bi[bi.len() - 1] };
            let idx = if ty { [b, j, kk] } else { [b, kk, j] };
            y[flat(&ys, &idx)]
        };
        let want: Vec<f32> = (0..numel(&out)).map(|f| {
            let idx = unflat(&out, f);
            let bi: Vec<usize> = idx[..batch.len()].to_vec();
            let bi = if bi.len() == 1 { vec![0, bi[0]] } else if bi.is_empty() { vec![0, 0] } else { bi };
            let i = if x_rank1 { 0 } else { idx[batch.len()] };
            let j = if y_rank1 { 0 } else { idx[idx.len() - 1] };
            (0..k).map(|kk| xat(&bi, i, kk) * yat(&bi, kk, j)).sum()
        }).collect();
        for p in BOTH {
            let mut b = P::new();
            let (xi, yi) = (b.input(&xs), b.input(&ys));
            let (fx, fy) = (b.flag(tx), b.flag(ty));
            let z = b.op(Op::Matmul, &[("x", &xi), ("y", &yi), ("transpose_x", &fx), ("transpose_y", &fy)], DType::Fp16, &out);
            close(&b.run(&[&z], p, &[&x, &y], &WeightFiles::new())[0], &want, p, k as f32);
        }
    }

    #[test]
    fn linear_is_x_times_weight_transposed_plus_bias(lead in 1usize..4, inn in 1usize..9, outn in 1usize..7, with_bias: bool, seed: u64) {
        let xs = vec![2, lead, inn];
        let x = values(numel(&xs), seed, -1.0, 1.0);
        let w = values(outn * inn, seed ^ 17, -1.0, 1.0);
        let bias = values(outn, seed ^ 19, -1.0, 1.0);
        let out = vec![2, lead, outn];
        let want: Vec<f32> = (0..numel(&out)).map(|f| {
            let i = unflat(&out, f);
            let dot: f32 = (0..inn).map(|c| x[flat(&xs, &[i[0], i[1], c])] * w[i[2] * inn + c]).sum();
            dot + if with_bias { bias[i[2]] } else { 0.0 }
        }).collect();
        for p in BOTH {
            let mut b = P::new();
            let xi = b.input(&xs);
            let wi = b.input(&[outn, inn]);
            let mut args = vec![("x", xi.as_str()), ("weight", wi.as_str())];
            let bi;
            if with_bias { bi = b.input(&[outn]); args.push(("bias", bi.as_str())); }
            let y = b.op(Op::Linear, &args, DType::Fp16, &out);
            let got = if with_bias { b.run(&[&y], p, &[&x, &w, &bias], &WeightFiles::new()) } else { b.run(&[&y], p, &[&x, &w], &WeightFiles::new()) };
            close(&got[0], &want, p, inn as f32);
        }
    }

    #[test]
    fn conv_matches_direct_loops(cin_g in 1usize..4, cout_g in 1usize..4, groups in 1usize..3, h in 1usize..7, w in 1usize..7, kh in 1usize..4, kw in 1usize..4, stride in 1usize..3, dil in 1usize..3, mode in 0u8..3, seed: u64) {
        let (cin, cout) = (cin_g * groups, cout_g * groups);
        let pad_type = ["valid", "same", "custom"][mode as usize];
        let custom = [(seed % 3) as usize, (seed / 3 % 3) as usize, (seed / 9 % 3) as usize, (seed / 27 % 3) as usize];
        let span = |k: usize| (k - 1) * dil + 1;
        let (pads, ho, wo) = match pad_type {
            "valid" => ([0; 4], (h as i64 - span(kh) as i64) / stride as i64 + 1, (w as i64 - span(kw) as i64) / stride as i64 + 1),
            "same" => {
                let (oh, ow) = (h.div_ceil(stride), w.div_ceil(stride));
                let th = ((oh - 1) * stride + span(kh)).saturating_sub(h);
                let tw = ((ow - 1) * stride + span(kw)).saturating_sub(w);
                ([th / 2, th - th / 2, tw / 2, tw - tw / 2], oh as i64, ow as i64)
            }
            _ => (custom, (h + custom[0] + custom[1]) as i64 - span(kh) as i64, (w + custom[2] + custom[3]) as i64 - span(kw) as i64),
        };
        let (ho, wo) = if pad_type == "custom" { (ho / stride as i64 + 1, wo / stride as i64 + 1) } else { (ho, wo) };
        prop_assume!(ho >= 1 && wo >= 1 && (h + pads[0] + pads[1]) >= span(kh) && (w + pads[2] + pads[3]) >= span(kw));
        let (ho, wo) = (ho as usize, wo as usize);
        let xs = [2, cin, h, w];
        let ws = [cout, cin_g, kh, kw];
        let x = values(numel(&xs), seed, -1.0, 1.0);
        let wt = values(numel(&ws), seed ^ 23, -1.0, 1.0);
        let out = [2, cout, ho, wo];
        let want: Vec<f32> = (0..numel(&out)).map(|f| {
            let [n, co, oy, ox] = [unflat(&out, f)[0], unflat(&out, f)[1], unflat(&out, f)[2], unflat(&out, f)[3]];
            let g = co / cout_g;
            let mut acc = 0.0;
            for ci in 0..cin_g { for i in 0..kh { for j in 0..kw {
                let iy = (oy * stride + i * dil) as i64 - pads[0] as i64;
                let ix = (ox * stride + j * dil) as i64 - pads[2] as i64;
                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                    acc += x[flat(&xs, &[n, g * cin_g + ci, iy as usize, ix as usize])] * wt[flat(&ws, &[co, ci, i, j])];
                }
            }}}
            acc
        }).collect();
        for p in BOTH {
            let mut b = P::new();
            let xi = b.input(&xs);
            let wi = b.input(&ws);
            let st = b.ints(&[stride as i64, stride as i64]);
            let dl = b.ints(&[dil as i64, dil as i64]);
            let pt = b.string(pad_type);
            let pd = b.ints(&custom.map(|v| v as i64));
            let gr = b.int(groups as i64);
            let y = b.op(Op::Conv, &[("x", &xi), ("weight", &wi), ("strides", &st), ("dilations", &dl), ("pad_type", &pt), ("pad", &pd), ("groups", &gr)], DType::Fp16, &out);
            close(&b.run(&[&y], p, &[&x, &wt], &WeightFiles::new())[0], &want, p, (cin_g * kh * kw) as f32);
        }
    }
}

// ---------- elementwise ----------

/// erf by Simpson integration of 2/√π·exp(-t²), independent of the device's approximation.
fn erf_ref(x: f64) -> f64 {
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

fn unary_ref(name: &str, v: f32) -> f32 {
    let x = v as f64;
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    (match name {
        "sqrt" => x.abs().sqrt(),
        "rsqrt" => 1.0 / (x.abs() + 1e-3).sqrt(),
        "exp" => x.exp(),
        "log" => (x.abs() + 1e-3).ln(),
        "tanh" => x.tanh(),
        "sigmoid" => sig(x),
        "silu" => x * sig(x),
        "relu" => x.max(0.0),
        "gelu_exact" => 0.5 * x * (1.0 + erf_ref(x / 2f64.sqrt())),
        "gelu_tanh" => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
        "gelu_sigmoid" => x * sig(1.702 * x),
        _ => unreachable!(),
    }) as f32
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn unary_ops_match_f64_math(shape in shape_strategy(3, 6), seed: u64) {
        let x = values(numel(&shape), seed, -3.0, 3.0);
        let abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        for name in ["sqrt", "rsqrt", "exp", "log", "tanh", "sigmoid", "silu", "relu", "gelu_exact", "gelu_tanh", "gelu_sigmoid"] {
            let positive = matches!(name, "sqrt" | "rsqrt" | "log");
            let input = if positive { &abs } else { &x };
            let want: Vec<f32> = x.iter().map(|&v| unary_ref(name, v)).collect();
            for p in BOTH {
                let mut b = P::new();
                let xi = b.input(&shape);
                let (op, extra): (Op, Option<(&str, String)>) = match name {
                    "sqrt" => (Op::Sqrt, None),
                    "rsqrt" => (Op::Rsqrt, Some(("epsilon", b.fp(1e-3)))),
                    "exp" => (Op::Exp, None),
                    "log" => (Op::Log, Some(("epsilon", b.fp(1e-3)))),
                    "tanh" => (Op::Tanh, None),
                    "sigmoid" => (Op::Sigmoid, None),
                    "silu" => (Op::Silu, None),
                    "relu" => (Op::Relu, None),
                    "gelu_exact" => (Op::Gelu, Some(("mode", b.string("EXACT")))),
                    "gelu_tanh" => (Op::Gelu, Some(("mode", b.string("TANH_APPROXIMATION")))),
                    _ => (Op::Gelu, Some(("mode", b.string("SIGMOID_APPROXIMATION")))),
                };
                let mut args = vec![("x", xi.as_str())];
                if let Some((k, v)) = &extra { args.push((k, v.as_str())); }
                let y = b.op(op, &args, DType::Fp16, &shape);
                let got = b.run(&[&y], p, &[input], &WeightFiles::new());
                // log/rsqrt near eps amplify fp16 input rounding; give F16 extra room there.
                let mag = if p == Precision::F16 && positive { 4.0 } else { 0.0 };
                close(&got[0], &want, p, mag);
            }
        }
    }

    #[test]
    fn binary_ops_broadcast_like_numpy(a in shape_strategy(3, 4), seed: u64) {
        // y's shape: a suffix of a's with some axes set to 1.
        let r = values(a.len() + 1, seed, 0.0, 1.0);
        let drop = (r[0] * a.len() as f32) as usize;
        let bs: Vec<usize> = a[drop..].iter().enumerate().map(|(i, &n)| if r[i + 1] < 0.4 { 1 } else { n }).collect();
        let x = values(numel(&a), seed ^ 29, -2.0, 2.0);
        let y: Vec<f32> = values(numel(&bs), seed ^ 31, 0.5, 2.0).iter().zip(values(numel(&bs), seed ^ 37, 0.0, 1.0)).map(|(&v, s)| if s < 0.5 { -v } else { v }).collect();
        let xpos: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
        for (op, name) in [(Op::Add, "add"), (Op::Sub, "sub"), (Op::Mul, "mul"), (Op::RealDiv, "div"), (Op::Pow, "pow"), (Op::Greater, "gt"), (Op::Less, "lt")] {
            let xin = if name == "pow" { &xpos } else { &x };
            let want: Vec<f32> = (0..numel(&a)).map(|f| {
                let i = unflat(&a, f);
                let (u, v) = (xin[f] as f64, bcast(&y, &bs, &i) as f64);
                (match name { "add" => u + v, "sub" => u - v, "mul" => u * v, "div" => u / v, "pow" => u.powf(v), "gt" => (u > v) as u8 as f64, _ => (u < v) as u8 as f64 }) as f32
            }).collect();
            let dtype = if matches!(name, "gt" | "lt") { DType::Bool } else { DType::Fp16 };
            // Comparisons are exact in f32; in F16 the rounded inputs may flip near-ties, so check F32 only.
            let precisions: &[Precision] = if dtype == DType::Bool { &[Precision::F32] } else { &BOTH };
            for &p in precisions {
                let mut b = P::new();
                let (xi, yi) = (b.input(&a), b.input(&bs));
                let z = b.op(op, &[("x", &xi), ("y", &yi)], dtype, &a);
                let mag = if name == "pow" { 8.0 } else { 0.0 };
                close(&b.run(&[&z], p, &[xin, &y], &WeightFiles::new())[0], &want, p, mag);
            }
        }
    }

    #[test]
    fn select_clip_and_cast(shape in shape_strategy(3, 5), seed: u64) {
        let x = values(numel(&shape), seed, -300.0, 300.0);
        let c: Vec<f32> = values(numel(&shape), seed ^ 41, 0.0, 1.0).iter().map(|v| (*v < 0.5) as u8 as f32).collect();
        let other = values(shape[shape.len() - 1], seed ^ 43, -1.0, 1.0);
        let last = vec![shape[shape.len() - 1]];
        let sel: Vec<f32> = (0..x.len()).map(|f| if c[f] != 0.0 { x[f] } else { other[f % last[0]] }).collect();
        let clip: Vec<f32> = x.iter().map(|&v| v.clamp(-10.0, 20.0)).collect();
        let to_i32: Vec<f32> = x.iter().map(|&v| v.trunc()).collect();
        let to_i8: Vec<f32> = x.iter().map(|&v| v.trunc().clamp(-128.0, 127.0)).collect();
        let to_bool: Vec<f32> = c.iter().map(|&v| (v != 0.0) as u8 as f32).collect();
        let mut b = P::new();
        let (xi, ci, oi) = (b.input(&shape), b.input(&shape), b.input(&last));
        let (d32, d8, db) = (b.string("int32"), b.string("int8"), b.string("bool"));
        let cb = b.op(Op::Cast, &[("x", &ci), ("dtype", &db)], DType::Bool, &shape);
        let s = b.op(Op::Select, &[("cond", &cb), ("a", &xi), ("b", &oi)], DType::Fp16, &shape);
        let (lo, hi) = (b.fp(-10.0), b.fp(20.0));
        let cl = b.op(Op::Clip, &[("x", &xi), ("alpha", &lo), ("beta", &hi)], DType::Fp16, &shape);
        let c32 = b.op(Op::Cast, &[("x", &xi), ("dtype", &d32)], DType::Int32, &shape);
        let c8 = b.op(Op::Cast, &[("x", &xi), ("dtype", &d8)], DType::Int8, &shape);
        let got = b.run(&[&s, &cl, &c32, &c8, &cb], Precision::F32, &[&x, &c, &other], &WeightFiles::new());
        for (g, w) in got.iter().zip([&sel, &clip, &to_i32, &to_i8, &to_bool]) {
            close(g, w, Precision::F32, 0.0);
        }
    }
}

// ---------- reductions, softmax, attention ----------

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn reductions_over_random_axes(shape in shape_strategy(4, 5), mask in 0u32..16, keep: bool, seed: u64, all: bool) {
        let rank = shape.len();
        let axes: Vec<usize> = if all { (0..rank).collect() } else { (0..rank).filter(|d| mask >> d & 1 == 1).collect() };
        prop_assume!(!axes.is_empty());
        let x = values(numel(&shape), seed, -2.0, 2.0);
        let out_full: Vec<usize> = (0..rank).map(|d| if axes.contains(&d) { 1 } else { shape[d] }).collect();
        let out: Vec<usize> = (0..rank).filter(|d| keep || !axes.contains(d)).map(|d| out_full[d]).collect();
        let mut sum = vec![0.0f32; numel(&out_full)];
        let mut max = vec![f32::NEG_INFINITY; numel(&out_full)];
        for f in 0..x.len() {
            let mut i = unflat(&shape, f);
            for &a in &axes { i[a] = 0; }
            let o = flat(&out_full, &i);
            sum[o] += x[f];
            max[o] = max[o].max(x[f]);
        }
        let count: usize = axes.iter().map(|&a| shape[a]).product();
        let mean: Vec<f32> = sum.iter().map(|s| s / count as f32).collect();
        for p in BOTH {
            let mut b = P::new();
            let xi = b.input(&shape);
            let ax = b.ints(&axes.iter().map(|&a| a as i64 - if seed % 2 == 0 { rank as i64 } else { 0 }).collect::<Vec<_>>());
            let kd = b.flag(keep);
            let mut outs = vec![];
            for op in [Op::ReduceSum, Op::ReduceMean, Op::ReduceMax] {
                let args: Vec<(&str, &str)> = if all { vec![("x", &xi), ("keep_dims", &kd)] } else { vec![("x", &xi), ("axes", &ax), ("keep_dims", &kd)] };
                outs.push(b.op(op, &args, DType::Fp16, &out));
            }
            let refs: Vec<&str> = outs.iter().map(|s| s.as_str()).collect();
            let got = b.run(&refs, p, &[&x], &WeightFiles::new());
            close(&got[0], &sum, p, count as f32);
            close(&got[1], &mean, p, 1.0);
            close(&got[2], &max, p, 0.0);
        }
    }

    #[test]
    fn softmax_over_any_axis(shape in shape_strategy(4, 6), seed: u64) {
        let rank = shape.len();
        let axis = seed as usize % rank;
        let x = values(numel(&shape), seed, -5.0, 5.0);
        let want: Vec<f32> = (0..x.len()).map(|f| {
            let i = unflat(&shape, f);
            let along = |j: usize| { let mut k = i.clone(); k[axis] = j; x[flat(&shape, &k)] as f64 };
            let m = (0..shape[axis]).map(along).fold(f64::MIN, f64::max);
            let z: f64 = (0..shape[axis]).map(|j| (along(j) - m).exp()).sum();
            ((x[f] as f64 - m).exp() / z) as f32
        }).collect();
        for p in BOTH {
            let mut b = P::new();
            let xi = b.input(&shape);
            let ax = b.int(axis as i64);
            let y = b.op(Op::Softmax, &[("x", &xi), ("axis", &ax)], DType::Fp16, &shape);
            close(&b.run(&[&y], p, &[&x], &WeightFiles::new())[0], &want, p, 1.0);
        }
    }

    #[test]
    fn attention_with_float_bool_or_no_mask(l in 1usize..6, s in 1usize..6, e in 1usize..5, ev in 1usize..5, mask_kind in 0u8..3, seed: u64) {
        let (qs, ks, vs) = ([2, l, e], [2, s, e], [2, s, ev]);
        let q = values(numel(&qs), seed, -1.0, 1.0);
        let k = values(numel(&ks), seed ^ 3, -1.0, 1.0);
        let v = values(numel(&vs), seed ^ 5, -1.0, 1.0);
        let fmask = values(l * s, seed ^ 7, -2.0, 0.0);
        // Bool mask keeps column 0 always, so no row is fully masked.
        let bmask: Vec<f32> = values(l * s, seed ^ 9, 0.0, 1.0).iter().enumerate().map(|(i, &r)| (i % s == 0 || r < 0.6) as u8 as f32).collect();
        let mut want = vec![0.0f32; 2 * l * ev];
        for bi in 0..2 { for i in 0..l {
            let mut sc: Vec<f64> = (0..s).map(|j| {
                let dot: f64 = (0..e).map(|c| (q[flat(&qs, &[bi, i, c])] * k[flat(&ks, &[bi, j, c])]) as f64).sum();
                dot / (e as f64).sqrt()
            }).collect();
            for j in 0..s {
                match mask_kind { 1 => sc[j] += fmask[i * s + j] as f64, 2 if bmask[i * s + j] == 0.0 => sc[j] = f64::NEG_INFINITY, _ => {} }
            }
            let m = sc.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
            for c in 0..ev {
                want[flat(&[2, l, ev], &[bi, i, c])] = (0..s).map(|j| (sc[j] - m).exp() / z * v[flat(&vs, &[bi, j, c])] as f64).sum::<f64>() as f32;
            }
        }}
        for p in BOTH {
            let mut b = P::new();
            let (qi, ki, vi) = (b.input(&qs), b.input(&ks), b.input(&vs));
            let mut args = vec![("query", qi.as_str()), ("key", ki.as_str()), ("value", vi.as_str())];
            let mi;
            let mut inputs: Vec<&[f32]> = vec![&q, &k, &v];
            if mask_kind > 0 {
                mi = b.input(&[l, s]);
                if mask_kind == 2 {
                    b.f.inputs.last_mut().unwrap().1.dtype = DType::Bool;
                }
                args.push(("attn_mask", mi.as_str()));
                inputs.push(if mask_kind == 1 { &fmask } else { &bmask });
            }
            let y = b.op(Op::ScaledDotProductAttention, &args, DType::Fp16, &[2, l, ev]);
            close(&b.run(&[&y], p, &inputs, &WeightFiles::new())[0], &want, p, 1.0);
        }
    }
}

// ---------- quantization and constants ----------

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn quantize_dequantize_per_tensor_and_per_axis(c in 1usize..5, s in 1usize..9, per_axis: bool, unsigned: bool, seed: u64) {
        let shape = [1, c, 1, s];
        let x = values(numel(&shape), seed, -4.0, 4.0);
        let scale: Vec<f32> = if per_axis { values(c, seed ^ 1, 0.01, 0.1) } else { vec![0.05] };
        let zp: Vec<f32> = if unsigned { if per_axis { (0..c).map(|i| 100.0 + i as f32).collect() } else { vec![128.0] } } else if per_axis { vec![3.0; c] } else { vec![-2.0] };
        let (lo, hi) = if unsigned { (0.0, 255.0) } else { (-128.0, 127.0) };
        let q_want: Vec<f32> = (0..x.len()).map(|f| {
            let ch = if per_axis { unflat(&shape, f)[1] } else { 0 };
            let t = x[f] / scale[ch];
            // Round half to even, by hand.
            let fl = t.floor();
            let r = if t - fl > 0.5 || (t - fl == 0.5 && fl % 2.0 != 0.0) { fl + 1.0 } else { fl };
            (r + zp[ch]).clamp(lo, hi)
        }).collect();
        let dq_want: Vec<f32> = (0..x.len()).map(|f| { let ch = if per_axis { unflat(&shape, f)[1] } else { 0 }; (q_want[f] - zp[ch]) * scale[ch] }).collect();
        let mut b = P::new();
        let xi = b.input(&shape);
        b.f.inputs[0].1.dtype = DType::Fp32;
        let param = |b: &mut P, v: &[f32]| if per_axis { b.lit(Literal::Tensor { ty: TensorType::new(DType::Fp32, [v.len()]), data: TensorData::Fp32(v.to_vec()) }) } else { b.fp(v[0]) };
        let sc = param(&mut b, &scale);
        let zpn = param(&mut b, &zp);
        let ax = b.int(1);
        let od = b.string(if unsigned { "uint8" } else { "int8" });
        let qd = if unsigned { DType::Uint8 } else { DType::Int8 };
        let q = b.op(Op::Quantize, &[("input", &xi), ("scale", &sc), ("zero_point", &zpn), ("axis", &ax), ("output_dtype", &od)], qd, &shape);
        let dq = b.op(Op::Dequantize, &[("input", &q), ("scale", &sc), ("zero_point", &zpn), ("axis", &ax)], DType::Fp32, &shape);
        let got = b.run(&[&q, &dq], Precision::F32, &[&x], &WeightFiles::new());
        close(&got[0], &q_want, Precision::F32, 0.0);
        close(&got[1], &dq_want, Precision::F32, 0.0);
    }
}

#[test]
fn f16_mode_overflows_to_infinity_and_f32_mode_does_not() {
    for p in BOTH {
        let mut b = P::new();
        let xi = b.input(&[1, 4]);
        let y = b.op(Op::Mul, &[("x", &xi), ("y", &xi)], DType::Fp16, &[1, 4]);
        let got = b.run(
            &[&y],
            p,
            &[&[300.0, -300.0, 1.0, 255.0]],
            &WeightFiles::new(),
        );
        if p == Precision::F16 {
            assert_eq!(got[0][..2], [f32::INFINITY, f32::INFINITY]);
            assert_eq!(got[0][3], 65024.0, "255² = 65025 rounds to the fp16 grid");
        } else {
            assert_eq!(got[0], [90000.0, 90000.0, 1.0, 65025.0]);
        }
    }
}

#[test]
fn f16_mode_rounds_fp16_inputs_but_not_fp32_values() {
    let mut b = P::new();
    let xi = b.input(&[3]);
    let zero16 = b.lit(Literal::Scalar(Scalar::Fp16(half::f16::ZERO)));
    let zero32 = b.fp(0.0);
    let fp32 = b.string("fp32");
    let x32 = b.op(Op::Cast, &[("x", &xi), ("dtype", &fp32)], DType::Fp32, &[3]);
    let y16 = b.op(Op::Add, &[("x", &xi), ("y", &zero16)], DType::Fp16, &[3]);
    let y32 = b.op(Op::Add, &[("x", &x32), ("y", &zero32)], DType::Fp32, &[3]);
    let x = [1.0001f32, 2049.0, 0.1];
    let got = b.run(&[&y16, &y32], Precision::F16, &[&x], &WeightFiles::new());
    let rounded: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    assert_eq!(got[0], rounded);
    assert_eq!(got[1], rounded, "the fp16 input itself is rounded on write");
    assert_eq!(rounded[1], 2048.0, "ties round to even");
}
