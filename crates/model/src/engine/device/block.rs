//! One transformer block on the device engine: the forward and backward of a layer, with
//! its kernels and the CPU steps between them.

use std::sync::mpsc;

use anetrain_device::Kernel;

use super::buffers::{Dims, LayerActs, LayerBack};
use crate::cpu_ops::dw::DwJob;
use crate::cpu_ops::elementwise::{add, scale, swiglu_backward};
use crate::cpu_ops::norm::{rmsnorm_backward, rmsnorm_forward};
use crate::cpu_ops::Rope;
use crate::error::{ModelError, Result};
use crate::kernels::{device_error, Role};
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

/// Shared backward buffers, borrowed field by field so the classifier buffers can be lent
/// to the dW worker at the same time.
pub(super) struct BackScratch<'b> {
    pub(super) d_act: &'b mut [f32],
    pub(super) dhn: &'b mut [f32],
    pub(super) d_attn: &'b mut [f32],
    pub(super) dxn: &'b mut [f32],
    pub(super) dqk_pre: &'b mut [f32],
    pub(super) norm: &'b mut [f32],
    /// In: nothing. Out: the gradient of the layer's input.
    pub(super) dx: &'b mut [f32],
}

/// One layer's kernels and the constants its CPU steps need.
pub(super) struct LayerIo<'a> {
    pub(super) dims: Dims,
    pub(super) head_dim: usize,
    pub(super) eps: f32,
    pub(super) rope: &'a Rope,
    pub(super) kernels: &'a mut [Box<dyn Kernel>],
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
        let k_rows = &mut rest[..kv * s];
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
        self.run(Role::FfnDownFwd, &a.up[2 * h * s..], tmp)?;
        add(next, &a.h, tmp);
        Ok(())
    }

    /// The block backward from `back.d_out` (the output gradient) to `scr.dx`; norm-weight
    /// gradients are added to `g`, matrix gradients are sent to the dW worker as soon as
    /// their inputs are final.
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
        jobs: &mpsc::Sender<DwJob<'a>>,
    ) -> Result<()> {
        let Dims { q, kv, h, s, .. } = self.dims;
        let send = |weight, dy, x| {
            jobs.send(DwJob::Layer {
                layer,
                weight,
                dy,
                x,
            })
            .map_err(|_| ModelError::Internal("the weight-gradient worker stopped early".into()))
        };
        let LayerBack {
            d_out,
            dh13,
            dh,
            dqkv,
        } = back;
        let d_out: &'a [f32] = d_out;
        let (h1, h3, act) = (&a.up[..h * s], &a.up[h * s..2 * h * s], &a.up[2 * h * s..]);

        self.run(Role::FfnDownBwd, d_out, scr.d_act)?;
        send(Linear::DownProj, d_out, act)?;
        let (dh1, dh3) = dh13.split_at_mut(h * s);
        swiglu_backward(dh1, dh3, scr.d_act, h1, h3);
        let dh13: &'a [f32] = dh13;
        self.run(Role::FfnUpBwd, dh13, scr.dhn)?;
        send(Linear::GateProj, &dh13[..h * s], &a.hn)?;
        send(Linear::UpProj, &dh13[h * s..], &a.hn)?;
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

        self.run(Role::WoBwd, dh, scr.d_attn)?;
        send(Linear::OProj, dh, &a.attn)?;
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
        self.run(Role::QkvBwd, dqkv, scr.dxn)?;
        send(Linear::QProj, &dqkv[..q * s], &a.xn)?;
        send(Linear::KProj, &dqkv[q * s..(q + kv) * s], &a.xn)?;
        send(Linear::VProj, &dqkv[(q + kv) * s..], &a.xn)?;
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
