//! The probe catalog: one small kernel per disputed rule, baselines that break none, and one
//! per kernel form ([`KernelForms`]), so the capability file says which forms work.

use anetrain_mil::{Builder, Bundle, ConvOptions, DType, Var};

use crate::error::{ModelError, Result};
use crate::kernels::KernelForms;

/// The id of the probe every other result depends on: the plain anchored kernel.
pub const BASELINE: &str = "baseline";

type Build = Box<dyn Fn() -> anetrain_mil::Result<Bundle>>;

/// One probe kernel.
pub struct ProbeSpec {
    /// Stable id: the `--probe-one` argument and the `op` of its capability-file record.
    pub id: &'static str,
    /// The catalog rule this kernel breaks; `None` for baselines and forms, which break none.
    pub rule: Option<&'static str>,
    build: Box<dyn Fn() -> Result<Bundle>>,
}

impl ProbeSpec {
    /// The kernel and its weight files.
    pub fn bundle(&self) -> Result<Bundle> {
        (self.build)()
    }
}

fn spec(id: &'static str, rule: Option<&'static str>, build: Build) -> ProbeSpec {
    let build = Box::new(move || build().map_err(ModelError::from));
    ProbeSpec { id, rule, build }
}

/// The probe of kernel form `id`, built by the generator that emits the form.
fn form(id: &'static str) -> ProbeSpec {
    let build = Box::new(move || match KernelForms::probe_kernel(id) {
        Some(bundle) => bundle,
        None => Err(ModelError::Internal(format!(
            "there is no kernel form probe `{id}`"
        ))),
    });
    ProbeSpec {
        id,
        rule: None,
        build,
    }
}

/// Every probe, baselines first. Widths and channel counts keep each port at ≥ 48 KiB
/// (`C·W ≥ 24576` in fp16) unless the probe is about buffer size.
pub fn matrix() -> Vec<ProbeSpec> {
    let width = Some("io-width-multiple-of-32");
    let min_bytes = Some("io-min-bytes");
    let trans = Some("transcendentals");
    let rules = vec![
        spec(BASELINE, None, Box::new(|| mixed(384, 64))),
        spec("width-32", None, Box::new(|| mixed(768, 32))),
        spec("tanh", None, unary(|b, h| b.tanh(h))),
        spec("reduce_sum", None, unary(|b, h| reduce(b, h, false))),
        spec("fp32-io", None, Box::new(fp32_io)),
        spec("int8-weight", None, Box::new(|| int8_weight(None))),
        spec("width-16", width, Box::new(|| mixed(1536, 16))),
        spec("width-48", width, Box::new(|| mixed(512, 48))),
        spec("width-100", width, Box::new(|| mixed(246, 100))),
        spec("width-4082", width, Box::new(|| mixed(100, 4082))),
        spec("min-bytes-3k", min_bytes, Box::new(|| mixed(48, 32))),
        spec("min-bytes-16k", min_bytes, Box::new(|| mixed(256, 32))),
        spec("gelu", Some("gelu"), unary(|b, h| b.gelu(h, "EXACT"))),
        spec(
            "gelu-tanh",
            Some("gelu"),
            unary(|b, h| b.gelu(h, "TANH_APPROXIMATION")),
        ),
        spec("exp", trans, unary(|b, h| b.exp(h))),
        // log and sqrt of h² + 1 keep the argument ≥ 1, where both are well conditioned.
        spec(
            "log",
            trans,
            unary(|b, h| square_plus_one(b, h, Builder::log)),
        ),
        spec(
            "sqrt",
            trans,
            unary(|b, h| square_plus_one(b, h, Builder::sqrt)),
        ),
        spec(
            "reduce_mean",
            Some("reduce-mean-m5"),
            unary(|b, h| reduce(b, h, true)),
        ),
        spec("concat", Some("concat"), unary(concat_channels)),
        spec(
            "slice-concat-width-offset",
            Some("width-offset-slice-concat"),
            unary(concat_width_offset_slices),
        ),
        spec(
            "slice-width-offset-range",
            Some("width-offset-slice-range"),
            Box::new(slice_width_offset_range),
        ),
        spec(
            "int8-weight-range",
            Some("int8-weight-activation-range"),
            Box::new(|| int8_weight(Some(LARGE))),
        ),
        spec("fp32-compute", Some("fp16-compute"), Box::new(fp32_compute)),
        spec(
            "conv-kernel-width-14",
            Some("conv-kernel-width-14"),
            Box::new(|| wide_kernel(14)),
        ),
        spec(
            "conv-kernel-width-16",
            Some("conv-kernel-width-16"),
            Box::new(|| wide_kernel(16)),
        ),
        spec(
            "conv-input-channels-8256",
            Some("conv-input-channels-8192"),
            Box::new(many_input_channels),
        ),
        spec("rank2-io", Some("io-rank"), Box::new(rank2_io)),
        spec(
            "two-inputs-unequal",
            Some("equal-input-sizes"),
            Box::new(two_inputs),
        ),
        spec(
            "two-outputs-unequal",
            Some("equal-output-sizes"),
            Box::new(two_outputs),
        ),
        spec(
            "sdpa-mask",
            Some("sdpa-mask-ignored"),
            Box::new(|| sdpa(true)),
        ),
    ];
    let forms = KernelForms::probe_ids().into_iter().map(form);
    rules.into_iter().chain(forms).collect()
}

/// The probe with id `id`, or an error listing the ids.
pub fn find(id: &str) -> Result<ProbeSpec> {
    let all = matrix();
    let ids: Vec<&str> = all.iter().map(|p| p.id).collect();
    let list = ids.join(", ");
    all.into_iter().find(|p| p.id == id).ok_or_else(|| {
        ModelError::Options(format!("there is no probe `{id}`; the probes are: {list}"))
    })
}

// ------------------------------------------------------------------------------ kernels

/// A magnitude past the 4094 where the ×16 activation encoding of §5 rows 24–25 saturates.
const LARGE: f32 = 6000.0;

/// `w[o][i] = 1/4 if i == o, 1/2 if i == (o + 1) mod C`: every output mixes two channels, so
/// a buffer read at the wrong stride or in the wrong order gives visibly wrong elements (an
/// identity would map a uniformly mis-strided input straight back to the same positions).
fn mix_weight(c: usize) -> Vec<f32> {
    let mut w = vec![0.0; c * c];
    for o in 0..c {
        w[o * c + o] = 0.25;
        w[o * c + (o + 1) % c] = 0.5;
    }
    w
}

/// The anchor: `conv(x, mix_weight)` on a `[1, C, 1, W]` fp16 value.
fn mix(b: &mut Builder, x: Var) -> anetrain_mil::Result<Var> {
    let c = b.shape(x)[1];
    let w = b.weight("mix", DType::Fp16, [c, c, 1, 1], &mix_weight(c))?;
    b.conv(x, w, &ConvOptions::default())
}

/// `y = mix(x)` on `x: [1, c, 1, w]` fp16: the baselines, widths and buffer sizes.
fn mixed(c: usize, w: usize) -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, w])?;
    let y = mix(&mut b, x)?;
    b.output(y, "y")?;
    b.finish()
}

/// `y = f(mix(x))` on `x: [1, 384, 1, 64]` fp16: one op (or a small group) under test.
fn unary(f: fn(&mut Builder, Var) -> anetrain_mil::Result<Var>) -> Build {
    Box::new(move || {
        let mut b = Builder::new();
        let x = b.input("x", DType::Fp16, [1, 384, 1, 64])?;
        let h = mix(&mut b, x)?;
        let y = f(&mut b, h)?;
        b.output(y, "y")?;
        b.finish()
    })
}

fn square_plus_one(
    b: &mut Builder,
    h: Var,
    f: fn(&mut Builder, Var) -> anetrain_mil::Result<Var>,
) -> anetrain_mil::Result<Var> {
    let sq = b.mul(h, h)?;
    let arg = b.add_scalar(sq, 1.0)?;
    f(b, arg)
}

/// `h − mean_c(h)` or `h + sum_c(h) / C`: a channel reduction broadcast back, so the output
/// keeps the 48 KiB shape instead of shrinking to one channel.
fn reduce(b: &mut Builder, h: Var, mean: bool) -> anetrain_mil::Result<Var> {
    if mean {
        let m = b.reduce_mean(h, &[1], true)?;
        b.sub(h, m)
    } else {
        let s = b.reduce_sum(h, &[1], true)?;
        let s = b.scale(s, 1.0 / 384.0)?;
        b.add(h, s)
    }
}

fn concat_channels(b: &mut Builder, h: Var) -> anetrain_mil::Result<Var> {
    let r = b.relu(h)?;
    b.concat(&[h, r], 1)
}

/// Two slices beginning past 0 on the last axis, joined there: `h[..., 16..48] ++ h[..., 32..64]`.
/// It needs `concat`, so a failure means something only where the `concat` probe passed.
fn concat_width_offset_slices(b: &mut Builder, h: Var) -> anetrain_mil::Result<Var> {
    let first = b.slice(h, &[0, 0, 0, 16], &[1, 384, 1, 32])?;
    let second = b.slice(h, &[0, 0, 0, 32], &[1, 384, 1, 32])?;
    b.concat(&[first, second], 3)
}

/// `mix(x · LARGE)[..., 32..64]`: a width-offset slice of values up to 0.75 · LARGE.
fn slice_width_offset_range() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 768, 1, 64])?;
    let big = b.scale(x, LARGE)?;
    let h = mix(&mut b, big)?;
    let y = b.slice(h, &[0, 0, 0, 32], &[1, 768, 1, 32])?;
    b.output(y, "y")?;
    b.finish()
}

/// `conv(x · gain, W)` with `W = mix_weight` stored as int8 (`q = 32, 64`, scale 1/128, exact)
/// and dequantized at compile time; no gain keeps the activations in [-1, 1].
fn int8_weight(gain: Option<f32>) -> anetrain_mil::Result<Bundle> {
    let c = 384;
    let q: Vec<i8> = mix_weight(c).iter().map(|&w| (w * 128.0) as i8).collect();
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, 64])?;
    let x = match gain {
        Some(g) => b.scale(x, g)?,
        None => x,
    };
    let w = b.int8_weight("mix_q", [c, c, 1, 1], &q, &[1.0 / 128.0], 0, DType::Fp16)?;
    let y = b.conv(x, w, &ConvOptions::default())?;
    b.output(y, "y")?;
    b.finish()
}

/// fp32 at the boundary only: cast in, mix in fp16, cast out.
fn fp32_io() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, 384, 1, 64])?;
    let h = b.cast(x, DType::Fp16)?;
    let h = mix(&mut b, h)?;
    let y = b.cast(h, DType::Fp32)?;
    b.output(y, "y")?;
    b.finish()
}

/// The mix conv computed in fp32 throughout.
fn fp32_compute() -> anetrain_mil::Result<Bundle> {
    let c = 384;
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp32, [1, c, 1, 64])?;
    let w = b.weight("mix", DType::Fp32, [c, c, 1, 1], &mix_weight(c))?;
    let y = b.conv(x, w, &ConvOptions::default())?;
    b.output(y, "y")?;
    b.finish()
}

/// A conv `kw` wide, padded to keep the width: `[1, 48, 1, 512] → [1, 48, 1, 512]`.
fn wide_kernel(kw: usize) -> anetrain_mil::Result<Bundle> {
    let c = 48;
    // Small multiples of 1/16 in [-1/8, 1/8], varying along every weight axis.
    let w: Vec<f32> = (0..c * c * kw)
        .map(|i| ((i * 7 + i / kw) % 5) as f32 / 16.0 - 0.125)
        .collect();
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, 512])?;
    let weight = b.weight("wide", DType::Fp16, [c, c, 1, kw], &w)?;
    let options = ConvOptions {
        pad: [0, 0, (kw - 1) / 2, kw / 2],
        ..ConvOptions::default()
    };
    let y = b.conv(x, weight, &options)?;
    b.output(y, "y")?;
    b.finish()
}

/// A conv from 8256 input channels (past the reported 8192) to 384: output `o` is the mean of
/// input channels `o` and `8255 − o`, so the top channels matter.
fn many_input_channels() -> anetrain_mil::Result<Bundle> {
    let (cin, cout) = (8256, 384);
    let mut w = vec![0.0; cout * cin];
    for o in 0..cout {
        w[o * cin + o] = 0.5;
        w[o * cin + cin - 1 - o] = 0.5;
    }
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, cin, 1, 64])?;
    let weight = b.weight("wide_in", DType::Fp16, [cout, cin, 1, 1], &w)?;
    let y = b.conv(x, weight, &ConvOptions::default())?;
    b.output(y, "y")?;
    b.finish()
}

/// Rank-2 ports `[384, 64]`, reshaped to `[1, 384, 1, 64]` around the mix.
fn rank2_io() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [384, 64])?;
    let h = b.reshape(x, &[1, 384, 1, 64])?;
    let h = mix(&mut b, h)?;
    let y = b.reshape(h, &[384, 64])?;
    b.output(y, "y")?;
    b.finish()
}

/// Inputs of 96 KiB and 48 KiB: `y = mix(a)[:, :384] + b`. The device allocates both at the
/// larger size (§2.5), so this asks whether unequal *declared* sizes work through it.
fn two_inputs() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let a = b.input("a", DType::Fp16, [1, 768, 1, 64])?;
    let small = b.input("b", DType::Fp16, [1, 384, 1, 64])?;
    let h = mix(&mut b, a)?;
    let top = b.slice(h, &[0, 0, 0, 0], &[1, 384, 1, 64])?;
    let y = b.add(top, small)?;
    b.output(y, "y")?;
    b.finish()
}

/// Outputs of 96 KiB and 48 KiB: `y = mix(x)`, `z = 2 · y[:, :384]` (allocated alike, as the
/// inputs of [`two_inputs`]).
fn two_outputs() -> anetrain_mil::Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, 768, 1, 64])?;
    let h = mix(&mut b, x)?;
    let top = b.slice(h, &[0, 0, 0, 0], &[1, 384, 1, 64])?;
    let z = b.scale(top, 2.0)?;
    b.output(h, "y")?;
    b.output(z, "z")?;
    b.finish()
}

/// Self-attention through `scaled_dot_product_attention`, causal when `masked`: 6 heads of 64
/// over 64 positions. If the mask is ignored, every row but the last attends to the future.
pub(super) fn sdpa(masked: bool) -> anetrain_mil::Result<Bundle> {
    let (heads, dim, seq) = (6, 64, 64);
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, heads * dim, 1, seq])?;
    let h = mix(&mut b, x)?;
    let h = b.reshape(h, &[1, heads, dim, seq])?;
    let t = b.transpose(h, &[0, 1, 3, 2])?;
    let mask: Vec<f32> = (0..seq * seq)
        .map(|i| if i % seq > i / seq { -1e4 } else { 0.0 })
        .collect();
    let mask = b.tensor_constant(DType::Fp16, [1, 1, seq, seq], &mask)?;
    let a = b.scaled_dot_product_attention(t, t, t, masked.then_some(mask))?;
    let a = b.transpose(a, &[0, 1, 3, 2])?;
    let y = b.reshape(a, &[1, heads * dim, 1, seq])?;
    b.output(y, "y")?;
    b.finish()
}

// ------------------------------------------------------------------------------ child
