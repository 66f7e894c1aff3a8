//! One adapted projection: `y = x Wᵀ + s·(x Aᵀ) Bᵀ`, its adapter gradients and its fusion.
//!
//! Shapes: `x [n, in]`, `W [out, in]`, `A [r, in]`, `B [out, r]`, `u = x Aᵀ [n, r]`,
//! `y [n, out]`, `s = alpha / r`. Activations may be token-major (`[n, C]`, as the reference
//! model holds them) or channel-major (`[C, n]`, the device layout), see [`Layout`]; the
//! adapter never forms the full-size `B·A` except in [`LoraLinear::fuse_into`].
//!
//! Backward, from the `x` and `dy` the base backward already has:
//! `dB = s·dyᵀ u`, `dA = s·(dy B)ᵀ x`, and the extra input gradient `dx += s·(dy B) A`.

use anetrain_data::rng::SplitMix64;

use crate::cpu_ops::gemm::{matmul, MatRef};
use crate::error::{ModelError, Result};
use crate::params::Tensor;

/// How an activation matrix of `n` tokens by `C` channels is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[n, C]` row-major: one token's channels are contiguous.
    TokenMajor,
    /// `[C, n]` row-major (the `[1, C, 1, S]` device layout): one channel's tokens are contiguous.
    ChannelMajor,
}

impl Layout {
    /// `data` viewed as the `[n, c]` matrix it holds.
    fn view(self, data: &[f32], n: usize, c: usize) -> Result<MatRef<'_>> {
        check_len("activation", data.len(), n * c)?;
        match self {
            Layout::TokenMajor => MatRef::rows(data, n, c),
            Layout::ChannelMajor => Ok(MatRef::rows(data, c, n)?.t()),
        }
    }

    /// `dst (+)= lhs [n, k] · rhs [k, c]`, with `dst` holding an `[n, c]` matrix in this layout.
    fn matmul_into(
        self,
        dst: &mut [f32],
        accumulate: bool,
        lhs: MatRef,
        rhs: MatRef,
    ) -> Result<()> {
        match self {
            Layout::TokenMajor => matmul(dst, accumulate, lhs, rhs),
            // (lhs · rhs)ᵀ = rhsᵀ · lhsᵀ, written row-major as [c, n].
            Layout::ChannelMajor => matmul(dst, accumulate, rhs.t(), lhs.t()),
        }
    }
}

/// The low-rank pair of one projection, with its scale.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraLinear {
    /// `A [r, in]`: random at initialisation.
    pub a: Tensor,
    /// `B [out, r]`: zero at initialisation, so a fresh adapter leaves the model unchanged.
    pub b: Tensor,
    /// `s = alpha / r`.
    pub scale: f32,
}

impl LoraLinear {
    /// PEFT's initialisation: `A` uniform in `±1/√in` (Kaiming-uniform with `a = √5`), `B = 0`,
    /// drawn from `rng` so one seed fixes every adapter.
    pub fn init(rank: usize, d_in: usize, d_out: usize, scale: f32, rng: &mut SplitMix64) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let mut a = Tensor::zeros(&[rank, d_in]);
        for v in a.data_mut() {
            *v = ((2.0 * rng.unit() - 1.0) * bound) as f32;
        }
        LoraLinear {
            a,
            b: Tensor::zeros(&[d_out, rank]),
            scale,
        }
    }

    /// A pair from loaded matrices, checking `A [r, in]` and `B [out, r]` agree.
    pub fn new(a: Tensor, b: Tensor, scale: f32) -> Result<Self> {
        let (&[r, _], &[_, rb]) = (a.shape(), b.shape()) else {
            return Err(ModelError::Input(format!(
                "LoRA A {:?} and B {:?} must both be matrices",
                a.shape(),
                b.shape()
            )));
        };
        if r != rb {
            return Err(ModelError::Input(format!(
                "LoRA A has rank {r} but B has rank {rb}; they must come from the same adapter"
            )));
        }
        Ok(LoraLinear { a, b, scale })
    }

    /// Rank `r`.
    pub fn rank(&self) -> usize {
        self.a.shape()[0]
    }

    /// Input width of the adapted projection.
    pub fn d_in(&self) -> usize {
        self.a.shape()[1]
    }

    /// Output width of the adapted projection.
    pub fn d_out(&self) -> usize {
        self.b.shape()[0]
    }

    /// A pair of zeros shaped like this one: the gradient accumulator of [`LoraLinear::backward`]
    /// (its `a` holds `dA`, its `b` holds `dB`), as [`Params`](crate::params::Params) doubles as
    /// gradients of a model.
    pub fn zeros_like(&self) -> LoraLinear {
        LoraLinear {
            a: Tensor::zeros(self.a.shape()),
            b: Tensor::zeros(self.b.shape()),
            scale: self.scale,
        }
    }

    /// `y += s·(x Aᵀ) Bᵀ`: adds the adapter's output to the base output `y = x Wᵀ` of `n`
    /// tokens; `x` and `y` are in `layout`. Leaves `su = s·x Aᵀ [n, r]` (token-major) in the
    /// caller's buffer for [`LoraLinear::backward`], so nothing is allocated and the backward
    /// need not recompute it. Cost `n·r·(in + out)` multiply-adds.
    pub fn forward(
        &self,
        y: &mut [f32],
        x: &[f32],
        layout: Layout,
        n: usize,
        su: &mut [f32],
    ) -> Result<()> {
        let (r, d_in, d_out) = (self.rank(), self.d_in(), self.d_out());
        check_len("LoRA output", y.len(), n * d_out)?;
        check_len("LoRA down projection", su.len(), n * r)?;
        let a = MatRef::rows(self.a.data(), r, d_in)?;
        matmul(su, false, layout.view(x, n, d_in)?, a.t())?;
        su.iter_mut().for_each(|v| *v *= self.scale);
        let b = MatRef::rows(self.b.data(), d_out, r)?;
        layout.matmul_into(y, true, MatRef::rows(su, n, r)?, b.t())
    }

    /// Accumulates `dA` into `grad.a` and `dB` into `grad.b` from the projection's input `x`,
    /// output gradient `dy` (both in `layout`) and the `su` its forward left, and adds the
    /// adapter's share `s·(dy B) A` to the input gradient `dx` when given. `g [n, r]` is
    /// scratch. Cost `n·r·(in + 2 out)` multiply-adds, plus `n·r·in` with `dx`; no `[out, in]`
    /// matrix.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        grad: &mut LoraLinear,
        dx: Option<&mut [f32]>,
        x: &[f32],
        dy: &[f32],
        layout: Layout,
        n: usize,
        su: &[f32],
        g: &mut [f32],
    ) -> Result<()> {
        let (r, d_in, d_out) = (self.rank(), self.d_in(), self.d_out());
        check_len("LoRA down projection", su.len(), n * r)?;
        check_len("LoRA scratch", g.len(), n * r)?;
        let x_view = layout.view(x, n, d_in)?;
        let dy_view = layout.view(dy, n, d_out)?;
        let a = MatRef::rows(self.a.data(), r, d_in)?;
        let b = MatRef::rows(self.b.data(), d_out, r)?;

        // dB [out, r] += dyᵀ · (s·u)
        matmul(
            grad.b.data_mut(),
            true,
            dy_view.t(),
            MatRef::rows(su, n, r)?,
        )?;

        // g = s·dy B [n, r];  dA [r, in] += gᵀ · x
        matmul(g, false, dy_view, b)?;
        g.iter_mut().for_each(|v| *v *= self.scale);
        let g_view = MatRef::rows(g, n, r)?;
        matmul(grad.a.data_mut(), true, g_view.t(), x_view)?;

        // dx [n, in] += g · A
        if let Some(dx) = dx {
            check_len("LoRA input gradient", dx.len(), n * d_in)?;
            layout.matmul_into(dx, true, g_view, a)?;
        }
        Ok(())
    }

    /// `W += s·B·A`: folds the adapter into the base weight `W [out, in]`, after which the
    /// plain projection computes what base plus adapter did.
    pub fn fuse_into(&self, w: &mut Tensor) -> Result<()> {
        let (r, d_in, d_out) = (self.rank(), self.d_in(), self.d_out());
        if w.shape() != [d_out, d_in] {
            return Err(ModelError::ShapeMismatch {
                name: "fused projection".into(),
                expected: vec![d_out, d_in],
                found: w.shape().to_vec(),
            });
        }
        let sb: Vec<f32> = self.b.data().iter().map(|v| v * self.scale).collect();
        matmul(
            w.data_mut(),
            true,
            MatRef::rows(&sb, d_out, r)?,
            MatRef::rows(self.a.data(), r, d_in)?,
        )
    }
}

fn check_len(what: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(ModelError::Input(format!(
            "{what} buffer has {got} values but the adapter's shape needs {expected}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain loops: `y = x Wᵀ + s·x Aᵀ Bᵀ` for token-major `x [n, in]`, in f64.
    fn naive_forward(w: &Tensor, l: &LoraLinear, x: &[f32], n: usize) -> Vec<f64> {
        let (r, d_in, d_out) = (l.rank(), l.d_in(), l.d_out());
        let mut y = vec![0.0f64; n * d_out];
        for t in 0..n {
            for o in 0..d_out {
                let mut acc = 0.0f64;
                for i in 0..d_in {
                    let mut ba = 0.0f64;
                    for k in 0..r {
                        ba += l.b.data()[o * r + k] as f64 * l.a.data()[k * d_in + i] as f64;
                    }
                    let wi = w.data()[o * d_in + i] as f64 + l.scale as f64 * ba;
                    acc += x[t * d_in + i] as f64 * wi;
                }
                y[t * d_out + o] = acc;
            }
        }
        y
    }

    fn random(len: usize, rng: &mut SplitMix64) -> Vec<f32> {
        (0..len).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
    }

    fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols)
            .flat_map(|c| (0..rows).map(move |r| m[r * cols + c]))
            .collect()
    }

    /// A small adapted linear with a non-zero B, plus x and a fixed output weighting G.
    fn setup() -> (Tensor, LoraLinear, Vec<f32>, Vec<f32>, usize) {
        let (n, d_in, d_out, r) = (5, 6, 4, 3);
        let mut rng = SplitMix64::new(11);
        let w = Tensor::from_vec(&[d_out, d_in], random(d_out * d_in, &mut rng)).unwrap();
        let mut l = LoraLinear::init(r, d_in, d_out, 16.0 / r as f32, &mut rng);
        l.b = Tensor::from_vec(&[d_out, r], random(d_out * r, &mut rng)).unwrap();
        let x = random(n * d_in, &mut rng);
        let g = random(n * d_out, &mut rng);
        (w, l, x, g, n)
    }

    /// `L = Σ G ⊙ y`, whose gradient with respect to y is G.
    fn loss(w: &Tensor, l: &LoraLinear, x: &[f32], g: &[f32], n: usize) -> f64 {
        naive_forward(w, l, x, n)
            .iter()
            .zip(g)
            .map(|(y, g)| y * *g as f64)
            .sum()
    }

    fn base_output(w: &Tensor, x: &[f32], n: usize, d_in: usize, d_out: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * d_out];
        crate::reference::linear::linear_forward(&mut y, x, w.data(), n, d_in, d_out);
        y
    }

    #[test]
    fn forward_matches_the_naive_product_in_both_layouts() {
        let (w, l, x, _, n) = setup();
        let (d_in, d_out) = (l.d_in(), l.d_out());
        let expected = naive_forward(&w, &l, &x, n);
        let mut su = vec![0.0; n * l.rank()];
        let mut y = base_output(&w, &x, n, d_in, d_out);
        l.forward(&mut y, &x, Layout::TokenMajor, n, &mut su)
            .unwrap();
        let mut y_cm = transpose(&base_output(&w, &x, n, d_in, d_out), n, d_out);
        let x_cm = transpose(&x, n, d_in);
        l.forward(&mut y_cm, &x_cm, Layout::ChannelMajor, n, &mut su)
            .unwrap();
        for (i, e) in expected.iter().enumerate() {
            assert!((y[i] as f64 - e).abs() < 1e-5, "token-major {i}");
            let (t, o) = (i / d_out, i % d_out);
            assert!(
                (y_cm[o * n + t] as f64 - e).abs() < 1e-5,
                "channel-major {i}"
            );
        }
    }

    #[test]
    fn zero_b_gives_exactly_the_base_output() {
        let (w, mut l, x, _, n) = setup();
        l.b = Tensor::zeros(l.b.shape());
        let base = base_output(&w, &x, n, l.d_in(), l.d_out());
        let mut y = base.clone();
        let mut su = vec![0.0; n * l.rank()];
        l.forward(&mut y, &x, Layout::TokenMajor, n, &mut su)
            .unwrap();
        assert_eq!(y, base);
    }

    #[test]
    fn adapter_gradients_match_finite_differences() {
        let (w, l, x, g, n) = setup();
        for layout in [Layout::TokenMajor, Layout::ChannelMajor] {
            let (xl, gl) = match layout {
                Layout::TokenMajor => (x.clone(), g.clone()),
                Layout::ChannelMajor => (transpose(&x, n, l.d_in()), transpose(&g, n, l.d_out())),
            };
            // The forward leaves su; its output here is not needed.
            let (mut su, mut scratch) = (vec![0.0; n * l.rank()], vec![0.0; n * l.rank()]);
            let mut y = vec![0.0; n * l.d_out()];
            l.forward(&mut y, &xl, layout, n, &mut su).unwrap();
            let mut grad = l.zeros_like();
            let mut dx = vec![0.0; x.len()];
            l.backward(
                &mut grad,
                Some(&mut dx),
                &xl,
                &gl,
                layout,
                n,
                &su,
                &mut scratch,
            )
            .unwrap();
            let h = 1e-3f32;
            let fd = |perturb: &dyn Fn(&mut LoraLinear, &mut Vec<f32>, f32)| {
                let (mut lp, mut xp) = (l.clone(), x.clone());
                perturb(&mut lp, &mut xp, h);
                let (mut lm, mut xm) = (l.clone(), x.clone());
                perturb(&mut lm, &mut xm, -h);
                (loss(&w, &lp, &xp, &g, n) - loss(&w, &lm, &xm, &g, n)) / (2.0 * h as f64)
            };
            for i in 0..l.a.len() {
                let num = fd(&|p, _, d| p.a.data_mut()[i] += d);
                assert!(
                    (grad.a.data()[i] as f64 - num).abs() < 1e-3,
                    "dA[{i}] {layout:?}"
                );
            }
            for i in 0..l.b.len() {
                let num = fd(&|p, _, d| p.b.data_mut()[i] += d);
                assert!(
                    (grad.b.data()[i] as f64 - num).abs() < 1e-3,
                    "dB[{i}] {layout:?}"
                );
            }
            // dx here holds only the adapter's share; the base share is dy W.
            let mut base_dx = vec![0.0; x.len()];
            crate::reference::linear::linear_backward_input(
                &mut base_dx,
                &g,
                w.data(),
                n,
                l.d_in(),
                l.d_out(),
            );
            let dx_tm = match layout {
                Layout::TokenMajor => dx.clone(),
                Layout::ChannelMajor => transpose(&dx, l.d_in(), n),
            };
            for i in 0..x.len() {
                let num = fd(&|_, xp, d| xp[i] += d);
                let analytic = dx_tm[i] as f64 + base_dx[i] as f64;
                assert!((analytic - num).abs() < 1e-3, "dx[{i}] {layout:?}");
            }
        }
    }

    #[test]
    fn fused_weight_computes_base_plus_adapter() {
        let (w, l, x, _, n) = setup();
        let mut fused = w.clone();
        l.fuse_into(&mut fused).unwrap();
        let zero = LoraLinear {
            b: Tensor::zeros(l.b.shape()),
            ..l.clone()
        };
        let via_fused = naive_forward(&fused, &zero, &x, n);
        for (a, e) in via_fused.iter().zip(naive_forward(&w, &l, &x, n)) {
            assert!((a - e).abs() < 1e-5);
        }
    }
}
