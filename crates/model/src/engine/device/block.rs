//! One transformer block on the device engine: the forward and backward of a layer, with
//! its kernels and the CPU steps between them.

use std::sync::mpsc;

use anetrain_device::Kernel;

use super::buffers::{Dims, LayerActs, LayerBack};
use crate::config::ModelConfig;
use crate::cpu_ops::dw::DwJob;
use crate::cpu_ops::elementwise::{add, scale, swiglu_backward, swiglu_forward};
use crate::cpu_ops::norm::{rmsnorm_backward, rmsnorm_forward};
use crate::cpu_ops::Rope;
use crate::error::{ModelError, Result};
use crate::kernels::{device_error, Role};
use crate::lora::{Adapter, Layout, LoraLinear};
use crate::params::{LayerParams, Linear};

/// The kernels that carry weights, in the order of a layer's kernel list.
pub(super) const WEIGHT_ROLES: [Role; 8] = [
    Role::QkvFwd,
    Role::WoFwd,
    Role::FfnUpFwd,
    Role::FfnDownFwd,
    Role::FfnDownBwd,
    Role::FfnUpBwd,
    Role::WoBwd,
    Role::QkvBwd,
];

/// Gradients of one layer's norm weights, updated on the main thread during backward.
pub(super) struct NormGrads<'g> {
    pub(super) input: &'g mut [f32],
    pub(super) post: &'g mut [f32],
    pub(super) q_norm: Option<&'g mut [f32]>,
    pub(super) k_norm: Option<&'g mut [f32]>,
}

impl<'g> NormGrads<'g> {
    /// Floats [`NormGrads::throwaway`] takes per layer.
    pub(super) fn throwaway_len(d: usize, head_dim: usize) -> usize {
        2 * d + 2 * head_dim
    }

    /// Gradients of frozen norm gains, written into `buf` (of [`NormGrads::throwaway_len`])
    /// and never read: the backward computes them on its way to `dx`.
    pub(super) fn throwaway(buf: &'g mut [f32], d: usize, qk_norm: bool) -> Self {
        let (input, rest) = buf.split_at_mut(d);
        let (post, rest) = rest.split_at_mut(d);
        let (q_norm, k_norm) = rest.split_at_mut(rest.len() / 2);
        NormGrads {
            input,
            post,
            q_norm: qk_norm.then_some(q_norm),
            k_norm: qk_norm.then_some(k_norm),
        }
    }
}

/// Shared backward buffers, borrowed field by field so the classifier buffers can be lent
/// to the dW worker at the same time.
pub(super) struct BackScratch<'b> {
    pub(super) d_act: &'b mut [f32],
    pub(super) dhn: &'b mut [f32],
    pub(super) d_attn: &'b mut [f32],
    pub(super) dxn: &'b mut [f32],
    pub(super) dqk_pre: &'b mut [f32],
    pub(super) norm: &'b mut [f32],
    /// The adapter's `g = s·dy B [S, r]` scratch (empty without an adapter).
    pub(super) lora_g: &'b mut [f32],
    /// In: nothing. Out: the gradient of the layer's input.
    pub(super) dx: &'b mut [f32],
}

/// Where a layer's matrix gradients go.
pub(super) enum MatrixGrads<'g, 'a> {
    /// Full training: each `dW` is a job for the weight-gradient worker.
    Base(&'g mpsc::Sender<DwJob<'a>>),
    /// Adapter training on a frozen base: the adapted pairs' `dA`, `dB`, indexed by
    /// `Linear as usize`, accumulated right away from the `x` and `dy` at hand.
    Adapter([Option<&'g mut LoraLinear>; 7]),
}

/// One layer's kernels and the constants its CPU steps need.
pub(super) struct LayerIo<'a> {
    pub(super) dims: Dims,
    pub(super) head_dim: usize,
    pub(super) eps: f32,
    pub(super) rope: &'a Rope,
    pub(super) kernels: &'a mut [Box<dyn Kernel>],
    /// The adapter's pairs on this layer, indexed by `Linear as usize`: their low-rank path
    /// runs on the CPU beside the base kernels, `y += s·B(A x)`, so the base stays staged.
    pub(super) lora: [Option<&'a LoraLinear>; 7],
}

/// Writes the activation `a [ic][S]` into a dynamic-matmul kernel, runs it, reads `out`.
fn run_matmul(
    kernel: &mut dyn Kernel,
    role: Role,
    s: usize,
    a: &[f32],
    out: &mut [f32],
) -> Result<()> {
    let err = |e| device_error(role.name(), e);
    kernel
        .write_input_region(0, 0..a.len() / s, 0..s, a)
        .map_err(err)?;
    kernel.run().map_err(err)?;
    kernel.read_output(0, out).map_err(err)
}

impl<'a> LayerIo<'a> {
    /// Layer `layer`'s view for one pass, with `adapter`'s pairs on it when there is one.
    pub(super) fn new(
        config: &ModelConfig,
        dims: Dims,
        rope: &'a Rope,
        kernels: &'a mut [Box<dyn Kernel>],
        adapter: Option<&'a Adapter>,
        layer: usize,
    ) -> Self {
        LayerIo {
            dims,
            head_dim: config.head_dim,
            eps: config.norm_eps as f32,
            rope,
            kernels,
            lora: adapter.map_or([None; 7], |a| a.layer(layer)),
        }
    }
}

impl LayerIo<'_> {
    /// `head_dim^-½`, the attention score scale.
    fn attn_scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }

    fn run(&mut self, role: Role, a: &[f32], out: &mut [f32]) -> Result<()> {
        let index = WEIGHT_ROLES.iter().position(|&r| r == role);
        let kernel = index.and_then(|i| self.kernels.get_mut(i)).ok_or_else(|| {
            ModelError::Config(format!(
                "no per-layer kernel `{}` was compiled",
                role.name()
            ))
        })?;
        run_matmul(kernel.as_mut(), role, self.dims.s, a, out)
    }

    /// Adds the adapter's output `s·B(A x)` of `linear` (if adapted) to the base output `y`,
    /// keeping `s·A x` in `su` for the backward.
    fn lora_forward(&self, linear: Linear, y: &mut [f32], x: &[f32], su: &mut [f32]) -> Result<()> {
        match self.lora[linear as usize] {
            Some(pair) => pair.forward(y, x, Layout::ChannelMajor, self.dims.s, su),
            None => Ok(()),
        }
    }

    /// Whether an adapter backward that needs no input gradient from this layer is done once
    /// the projections before `rest` have their gradients: none of `rest` is adapted, so
    /// nothing further down the layer is wanted.
    fn done_before(&self, needs_dx: bool, rest: &[Linear]) -> bool {
        !needs_dx && rest.iter().all(|&l| self.lora[l as usize].is_none())
    }

    /// The gradient of `linear` from its input `x` and output gradient `dy`: a `dW` job, or
    /// the adapter's `dA`, `dB` (from the `su` its forward kept in `a`) plus its share
    /// `s·(dy B) A` of the input gradient `dx` when that is wanted.
    #[allow(clippy::too_many_arguments)]
    fn linear_grad<'x>(
        &self,
        layer: usize,
        grads: &mut MatrixGrads<'_, 'x>,
        linear: Linear,
        dy: &'x [f32],
        x: &'x [f32],
        a: &LayerActs,
        g: &mut [f32],
        dx: Option<&mut [f32]>,
    ) -> Result<()> {
        match grads {
            MatrixGrads::Base(jobs) => jobs
                .send(DwJob::Layer {
                    layer,
                    weight: linear,
                    dy,
                    x,
                })
                .map_err(|_| {
                    ModelError::Internal("the weight-gradient worker stopped early".into())
                }),
            MatrixGrads::Adapter(pairs) => {
                match (
                    self.lora[linear as usize],
                    pairs[linear as usize].as_deref_mut(),
                ) {
                    (Some(pair), Some(grad)) => pair.backward(
                        grad,
                        dx,
                        x,
                        dy,
                        Layout::ChannelMajor,
                        self.dims.s,
                        &a.lora_su[linear as usize],
                        g,
                    ),
                    _ => Ok(()),
                }
            }
        }
    }

    /// The block forward: `next = h + W2 act(W1, W3; norm(h))`, `h = x + Wo attn(norm(x))`.
    pub(super) fn forward(
        mut self,
        attention: &mut dyn Kernel,
        p: &LayerParams,
        a: &mut LayerActs,
        next: &mut [f32],
        tmp: &mut [f32],
    ) -> Result<()> {
        let Dims { q, kv, h, s, .. } = self.dims;
        let eps = self.eps;
        rmsnorm_forward(
            &mut a.xn,
            &mut a.inv_attn,
            &a.x,
            p.input_layernorm.data(),
            s,
            eps,
        );
        self.run(Role::QkvFwd, &a.xn, &mut a.qkv)?;
        let (q_rows, rest) = a.qkv.split_at_mut(q * s);
        let (k_rows, v_rows) = rest.split_at_mut(kv * s);
        let [su_q, su_k, su_v, su_o, su_gate, su_up, su_down] = &mut a.lora_su;
        self.lora_forward(Linear::QProj, q_rows, &a.xn, su_q)?;
        self.lora_forward(Linear::KProj, k_rows, &a.xn, su_k)?;
        self.lora_forward(Linear::VProj, v_rows, &a.xn, su_v)?;
        if let (Some(qn), Some(kn)) = (&p.q_norm, &p.k_norm) {
            a.q_pre.copy_from_slice(q_rows);
            a.k_pre.copy_from_slice(k_rows);
            rmsnorm_forward(q_rows, &mut a.q_inv, &a.q_pre, qn.data(), s, eps);
            rmsnorm_forward(k_rows, &mut a.k_inv, &a.k_pre, kn.data(), s, eps);
        }
        self.rope.forward(q_rows);
        self.rope.forward(k_rows);
        // The attention kernels take q pre-scaled (see `kernels::attention` for why).
        scale(q_rows, self.attn_scale());
        let err = |e| device_error(Role::AttentionFwd.name(), e);
        attention.write_input(0, &a.qkv).map_err(err)?;
        attention.run().map_err(err)?;
        attention.read_output(0, &mut a.attn).map_err(err)?;
        self.run(Role::WoFwd, &a.attn, tmp)?;
        self.lora_forward(Linear::OProj, tmp, &a.attn, su_o)?;
        add(&mut a.h, &a.x, tmp);
        rmsnorm_forward(
            &mut a.hn,
            &mut a.inv_ffn,
            &a.h,
            p.post_attention_layernorm.data(),
            s,
            eps,
        );
        self.run(Role::FfnUpFwd, &a.hn, &mut a.up)?;
        let (h1, rest) = a.up.split_at_mut(h * s);
        let (h3, act) = rest.split_at_mut(h * s);
        self.lora_forward(Linear::GateProj, h1, &a.hn, su_gate)?;
        self.lora_forward(Linear::UpProj, h3, &a.hn, su_up)?;
        if self.lora[Linear::GateProj as usize].is_some()
            || self.lora[Linear::UpProj as usize].is_some()
        {
            swiglu_forward(act, h1, h3);
        }
        self.run(Role::FfnDownFwd, act, tmp)?;
        self.lora_forward(Linear::DownProj, tmp, act, su_down)?;
        add(next, &a.h, tmp);
        Ok(())
    }

    /// The block backward from the output gradient in `scr.dx` (kept in `back.d_out` for the
    /// gradient jobs) to the input gradient in `scr.dx`; norm-weight
    /// gradients are added to `g`, matrix gradients go to `mats` as soon as their inputs are
    /// final. Without `needs_dx` (an adapter's lowest adapted layer: nothing below wants a
    /// gradient) it stops once the last adapted projection of the layer has its gradient, so
    /// neither the kernels below that point nor the input gradient run, and `scr.dx` is left
    /// stale.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward<'a>(
        mut self,
        layer: usize,
        attention: &mut dyn Kernel,
        p: &LayerParams,
        g: &mut NormGrads<'_>,
        a: &'a LayerActs,
        back: &'a mut LayerBack,
        scr: &mut BackScratch<'_>,
        mats: &mut MatrixGrads<'_, 'a>,
        needs_dx: bool,
    ) -> Result<()> {
        use Linear::{DownProj, GateProj, KProj, OProj, QProj, UpProj, VProj};
        let Dims { q, kv, h, s, .. } = self.dims;
        let LayerBack {
            d_out,
            dh13,
            dh,
            dqkv,
        } = back;
        d_out.copy_from_slice(scr.dx);
        let d_out: &'a [f32] = d_out;
        let (h1, h3, act) = (&a.up[..h * s], &a.up[h * s..2 * h * s], &a.up[2 * h * s..]);
        let lg = &mut *scr.lora_g;

        if self.done_before(needs_dx, &[GateProj, UpProj, OProj, QProj, KProj, VProj]) {
            return self.linear_grad(layer, mats, DownProj, d_out, act, a, lg, None);
        }
        self.run(Role::FfnDownBwd, d_out, scr.d_act)?;
        self.linear_grad(layer, mats, DownProj, d_out, act, a, lg, Some(scr.d_act))?;
        let (dh1, dh3) = dh13.split_at_mut(h * s);
        swiglu_backward(dh1, dh3, scr.d_act, h1, h3);
        let dh13: &'a [f32] = dh13;
        let (dh1, dh3) = dh13.split_at(h * s);
        if self.done_before(needs_dx, &[OProj, QProj, KProj, VProj]) {
            self.linear_grad(layer, mats, GateProj, dh1, &a.hn, a, lg, None)?;
            return self.linear_grad(layer, mats, UpProj, dh3, &a.hn, a, lg, None);
        }
        self.run(Role::FfnUpBwd, dh13, scr.dhn)?;
        self.linear_grad(layer, mats, GateProj, dh1, &a.hn, a, lg, Some(scr.dhn))?;
        self.linear_grad(layer, mats, UpProj, dh3, &a.hn, a, lg, Some(scr.dhn))?;
        dh.copy_from_slice(d_out);
        let post = p.post_attention_layernorm.data();
        rmsnorm_backward(
            dh,
            g.post,
            scr.dhn,
            &a.h,
            post,
            &a.inv_ffn,
            s,
            &mut scr.norm[..s],
        );
        let dh: &'a [f32] = dh;

        if self.done_before(needs_dx, &[QProj, KProj, VProj]) {
            return self.linear_grad(layer, mats, OProj, dh, &a.attn, a, lg, None);
        }
        self.run(Role::WoBwd, dh, scr.d_attn)?;
        self.linear_grad(layer, mats, OProj, dh, &a.attn, a, lg, Some(scr.d_attn))?;
        let err = |e| device_error(Role::AttentionBwd.name(), e);
        let qkv_c = q + 2 * kv;
        attention
            .write_input_region(0, 0..qkv_c, 0..s, &a.qkv)
            .map_err(err)?;
        attention
            .write_input_region(0, qkv_c..qkv_c + q, 0..s, scr.d_attn)
            .map_err(err)?;
        attention.run().map_err(err)?;
        attention.read_output(0, dqkv).map_err(err)?;
        let (dq, rest) = dqkv.split_at_mut(q * s);
        let dk = &mut rest[..kv * s];
        scale(dq, self.attn_scale());
        self.rope.backward(dq);
        self.rope.backward(dk);
        if let (Some(qn), Some(kn), Some(gq), Some(gk)) = (
            &p.q_norm,
            &p.k_norm,
            g.q_norm.as_deref_mut(),
            g.k_norm.as_deref_mut(),
        ) {
            scr.dqk_pre.fill(0.0);
            let (pq, pk) = scr.dqk_pre.split_at_mut(q * s);
            rmsnorm_backward(pq, gq, dq, &a.q_pre, qn.data(), &a.q_inv, s, scr.norm);
            rmsnorm_backward(pk, gk, dk, &a.k_pre, kn.data(), &a.k_inv, s, scr.norm);
            dq.copy_from_slice(pq);
            dk.copy_from_slice(pk);
        }
        let dqkv: &'a [f32] = dqkv;
        let (dq, rest) = dqkv.split_at(q * s);
        let (dk, dv) = rest.split_at(kv * s);
        if !needs_dx {
            self.linear_grad(layer, mats, QProj, dq, &a.xn, a, lg, None)?;
            self.linear_grad(layer, mats, KProj, dk, &a.xn, a, lg, None)?;
            return self.linear_grad(layer, mats, VProj, dv, &a.xn, a, lg, None);
        }
        self.run(Role::QkvBwd, dqkv, scr.dxn)?;
        self.linear_grad(layer, mats, QProj, dq, &a.xn, a, lg, Some(scr.dxn))?;
        self.linear_grad(layer, mats, KProj, dk, &a.xn, a, lg, Some(scr.dxn))?;
        self.linear_grad(layer, mats, VProj, dv, &a.xn, a, lg, Some(scr.dxn))?;
        scr.dx.copy_from_slice(dh);
        let input = p.input_layernorm.data();
        rmsnorm_backward(
            scr.dx,
            g.input,
            scr.dxn,
            &a.x,
            input,
            &a.inv_attn,
            s,
            &mut scr.norm[..s],
        );
        Ok(())
    }
}
