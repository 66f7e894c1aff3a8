//! Each training kernel, in every kernel form ([`KernelForms::every`]), run on the CPU device
//! against plain-Rust computations: naive loops for the matmuls, `reference::attention` for
//! attention. Then the same kernels in `cpu-f16` precision against the f32 results, and every
//! kernel of the big presets through the ANE constraint checker.

mod common;
use common::rel_err;

use anetrain_device::{CpuDevice, Device, Precision};
use anetrain_mil::{check, Bundle, Chip};
use anetrain_model::config::ModelConfig;
use anetrain_model::kernels::{
    self, attention_bwd, attention_fwd, dynamic_matmul, ffn_up_fwd, KernelForms,
};
use anetrain_model::reference::attention::{attention_backward, attention_forward};

/// Deterministic values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn run(bundle: &Bundle, precision: Precision, input: &[f32]) -> Vec<f32> {
    let mut k = CpuDevice::new(precision)
        .compile(&bundle.program, &bundle.weights)
        .unwrap();
    k.write_input(0, input).unwrap();
    k.run().unwrap();
    let mut out = vec![0.0; k.outputs()[0].numel()];
    k.read_output(0, &mut out).unwrap();
    out
}

/// `[rows][cols]` → `[cols][rows]`.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = x[r * cols + c];
        }
    }
    t
}

/// Packs `a [ic][s]` and `m [ic][oc]` into the `[ic][s + oc]` dynamic-matmul input.
fn pack(a: &[f32], m: &[f32], ic: usize, s: usize, oc: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(ic * (s + oc));
    for i in 0..ic {
        x.extend_from_slice(&a[i * s..(i + 1) * s]);
        x.extend_from_slice(&m[i * oc..(i + 1) * oc]);
    }
    x
}

fn tiny_configs() -> Vec<ModelConfig> {
    ["tiny", "tiny-gqa", "tiny-qwen3"]
        .iter()
        .map(|n| ModelConfig::preset(n).unwrap())
        .collect()
}

#[test]
fn dynamic_matmul_computes_m_transpose_times_a() {
    let (ic, oc, s) = (24, 40, 16);
    let (a, m) = (values(ic * s, 1, 1.0), values(ic * oc, 2, 0.5));
    let mut want = vec![0.0; oc * s];
    for o in 0..oc {
        for t in 0..s {
            want[o * s + t] = (0..ic).map(|i| m[i * oc + o] * a[i * s + t]).sum();
        }
    }
    for forms in KernelForms::every() {
        let bundle = dynamic_matmul(ic, oc, s, forms).unwrap();
        let got = run(&bundle, Precision::F32, &pack(&a, &m, ic, s, oc));
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "{forms:?}: f32 error {e}");
        let half = run(&bundle, Precision::F16, &pack(&a, &m, ic, s, oc));
        let e = rel_err(&half, &got);
        assert!(e < 5e-3, "{forms:?}: f16 error {e} exceeds 5e-3");
    }
}

#[test]
fn ffn_up_fwd_returns_h1_h3_and_the_swiglu_activation() {
    let (d, h, s) = (32, 48, 16);
    let a = values(d * s, 3, 1.0);
    let (w1, w3) = (values(h * d, 4, 0.3), values(h * d, 5, 0.3));
    // M = [W1; W3]ᵀ: [d][2h]
    let mut stacked = w1.clone();
    stacked.extend_from_slice(&w3);
    let m = transpose(&stacked, 2 * h, d);
    let mut want = vec![0.0; 3 * h * s];
    for j in 0..h {
        for t in 0..s {
            let h1: f32 = (0..d).map(|i| w1[j * d + i] * a[i * s + t]).sum();
            let h3: f32 = (0..d).map(|i| w3[j * d + i] * a[i * s + t]).sum();
            want[j * s + t] = h1;
            want[(h + j) * s + t] = h3;
            want[(2 * h + j) * s + t] = h1 / (1.0 + (-h1).exp()) * h3;
        }
    }
    let input = pack(&a, &m, d, s, 2 * h);
    for forms in KernelForms::every() {
        let bundle = ffn_up_fwd(d, h, s, forms).unwrap();
        let got = run(&bundle, Precision::F32, &input);
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "{forms:?}: f32 error {e}");
        let e = rel_err(&run(&bundle, Precision::F16, &input), &got);
        assert!(e < 5e-3, "{forms:?}: f16 error {e} exceeds 5e-3");
    }
}

/// Random q, k, v for `c` in the kernel layout `[Q+2KV][S]` and token-major copies.
struct AttnInputs {
    packed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

/// The kernels take q pre-scaled by `head_dim^-½`; the reference takes it unscaled.
fn attention_inputs(c: &ModelConfig, s: usize, seed: u64) -> AttnInputs {
    let (qd, kvd) = (c.q_dim(), c.kv_dim());
    let mut packed = values((qd + 2 * kvd) * s, seed, 2.0);
    let q = transpose(&packed[..qd * s], qd, s);
    for v in &mut packed[..qd * s] {
        *v *= scale(c);
    }
    let k = transpose(&packed[qd * s..(qd + kvd) * s], kvd, s);
    let v = transpose(&packed[(qd + kvd) * s..], kvd, s);
    AttnInputs { packed, q, k, v }
}

fn scale(c: &ModelConfig) -> f32 {
    1.0 / (c.head_dim as f32).sqrt()
}

#[test]
fn attention_fwd_matches_the_reference_for_mha_gqa_and_qwen3_heads() {
    let s = 16;
    for c in tiny_configs() {
        let x = attention_inputs(&c, s, 7);
        let mut want = vec![0.0; s * c.q_dim()];
        attention_forward(&c, s, &x.q, &x.k, &x.v, &mut want);
        let want = transpose(&want, s, c.q_dim());
        let bundle = attention_fwd(&c, s).unwrap();
        let got = run(&bundle, Precision::F32, &x.packed);
        let e = rel_err(&got, &want);
        assert!(e < 1e-5, "{c:?}: f32 error {e}");
        let e16 = rel_err(&run(&bundle, Precision::F16, &x.packed), &got);
        println!(
            "attention_fwd heads {}/{}: f16 error {e16:.2e}",
            c.n_heads, c.n_kv_heads
        );
        assert!(e16 < 1e-2, "f16 error {e16} exceeds 1e-2");
    }
}

#[test]
fn attention_bwd_matches_the_reference_gradients() {
    let s = 32;
    for c in tiny_configs() {
        let (qd, kvd) = (c.q_dim(), c.kv_dim());
        let x = attention_inputs(&c, s, 11);
        let d_out = values(qd * s, 12, 1.0);
        let mut out = vec![0.0; s * qd];
        let probs = attention_forward(&c, s, &x.q, &x.k, &x.v, &mut out);
        let (mut dq, mut dk, mut dv) = (vec![0.0; s * qd], vec![0.0; s * kvd], vec![0.0; s * kvd]);
        let d_out_t = transpose(&d_out, qd, s);
        attention_backward(
            &c, s, &x.q, &x.k, &x.v, &probs, &d_out_t, &mut dq, &mut dk, &mut dv,
        );
        let mut want = transpose(&dq, s, qd);
        want.extend(transpose(&dk, s, kvd));
        want.extend(transpose(&dv, s, kvd));

        let mut input = x.packed.clone();
        input.extend_from_slice(&d_out);
        for forms in KernelForms::every() {
            let bundle = attention_bwd(&c, s, forms).unwrap();
            let mut got = run(&bundle, Precision::F32, &input);
            // The kernel's dq is with respect to the scaled q: chain rule back to q.
            for v in &mut got[..qd * s] {
                *v *= scale(&c);
            }
            // Per block, so a wrong GQA reduction cannot hide behind a large dq.
            let blocks = [(0, qd), (qd, qd + kvd), (qd + kvd, qd + 2 * kvd)];
            for (name, (lo, hi)) in ["dq", "dk", "dv"].iter().zip(blocks) {
                let e = rel_err(&got[lo * s..hi * s], &want[lo * s..hi * s]);
                assert!(e < 1e-5, "{c:?} {forms:?}: {name} f32 error {e}");
            }
            let mut half = run(&bundle, Precision::F16, &input);
            for v in &mut half[..qd * s] {
                *v *= scale(&c);
            }
            let e16 = rel_err(&half, &got);
            println!(
                "attention_bwd heads {}/{} {forms:?}: f16 error {e16:.2e}",
                c.n_heads, c.n_kv_heads
            );
            assert!(e16 < 2e-2, "{forms:?}: f16 error {e16} exceeds 2e-2");
        }
    }
}

#[test]
fn every_kernel_has_the_documented_ports() {
    let c = ModelConfig::preset("tiny-qwen3").unwrap();
    let s = 32;
    let all = kernels::all(&c, s, KernelForms::default()).unwrap();
    assert_eq!(all.len(), 10);
    let (d, q, kv, h) = (c.dim, c.q_dim(), c.kv_dim(), c.hidden_dim);
    let expect = [
        ("qkv_fwd", [d, s + q + 2 * kv], q + 2 * kv),
        ("attention_fwd", [q + 2 * kv, s], q),
        ("wo_fwd", [q, s + d], d),
        ("ffn_up_fwd", [d, s + 2 * h], 3 * h),
        ("ffn_down_fwd", [h, s + d], d),
        ("ffn_down_bwd", [d, s + h], h),
        ("ffn_up_bwd", [2 * h, s + d], d),
        ("wo_bwd", [d, s + q], q),
        ("attention_bwd", [2 * q + 2 * kv, s], q + 2 * kv),
        ("qkv_bwd", [q + 2 * kv, s + d], d),
    ];
    for (k, (name, [ic, width], oc)) in all.iter().zip(expect) {
        assert_eq!(k.name, name);
        let f = k.bundle.program.main().unwrap();
        assert_eq!(f.inputs[0].1.shape, vec![1, ic, 1, width], "{name} input");
        let out = f.value_type(&f.outputs[0]).unwrap();
        assert_eq!(out.shape(), &[1, oc, 1, s], "{name} output");
    }
}

#[test]
fn every_kernel_of_the_big_presets_passes_the_m4_checker_in_every_form() {
    for name in ["stories15M", "stories42M", "stories110M", "qwen3-0.6b"] {
        let c = ModelConfig::preset(name).unwrap();
        for forms in KernelForms::every() {
            for k in kernels::all(&c, 256, forms).unwrap() {
                let report = check(&k.bundle.program, Chip::M4);
                assert!(
                    report.is_clean(),
                    "{name} {} {forms:?}: {} violations\n{report}",
                    k.name,
                    report.violations.len()
                );
            }
        }
    }
}

#[test]
fn zero_seq_is_refused_with_a_message() {
    let c = ModelConfig::preset("tiny").unwrap();
    let msg = kernels::all(&c, 0, KernelForms::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("sequence length"), "{msg}");
}
