//! The device engine: loss and gradients of a batch through the MIL training kernels on any
//! [`Device`], with the norms, RoPE, SwiGLU backward, classifier, loss and weight gradients
//! on the CPU ([`crate::cpu_ops`]).
//!
//! One sequence runs at a time; a batch loops over its sequences and accumulates gradients.
//! Every kernel is compiled once; each weight-bearing kernel has one copy per layer (a
//! [`Kernel::fork`], or a second compile where the device cannot fork) whose matrix columns
//! are staged once per [`Engine::stage`] (on the CPU, read in place from one stacked copy
//! that the forward and backward kernels share: [`weights`]), so a step only writes
//! activation columns. All
//! activation and gradient buffers are allocated in [`DeviceEngine::new`]. During backward a
//! worker thread computes each layer's dW while the device runs the next layer down.

mod block;
mod buffers;
mod checks;
mod weights;

use std::sync::mpsc;

use anetrain_device::{Device, DeviceError, Kernel};
use rayon::prelude::*;

use super::{Engine, PassStats};
use crate::config::ModelConfig;
use crate::cpu_ops::dw::{run_worker, DwJob, MatrixGrads};
use crate::cpu_ops::norm::{rmsnorm_backward, rmsnorm_forward};
use crate::cpu_ops::{cross_entropy, embedding, matmul, MatRef, Rope};
use crate::error::{ModelError, Result};
use crate::kernels::{device_error, Role};
use crate::params::{LayerParams, Params};

use block::{BackScratch, LayerIo, NormGrads, WEIGHT_ROLES};
use buffers::{Dims, LayerActs, LayerBack, Scratch};
use checks::{check_params, check_tokens};
use weights::LayerWeights;

/// Computes losses and gradients with the MIL training kernels on a [`Device`].
pub struct DeviceEngine {
    config: ModelConfig,
    dims: Dims,
    device_name: String,
    /// Per layer, one kernel per [`WEIGHT_ROLES`] entry.
    layer_kernels: Vec<Vec<Box<dyn Kernel>>>,
    attention_fwd: Box<dyn Kernel>,
    attention_bwd: Box<dyn Kernel>,
    /// Per layer, how its weights reach its kernels.
    weights: Vec<LayerWeights>,
    rope: Rope,
    acts: Vec<LayerActs>,
    back: Vec<LayerBack>,
    scratch: Scratch,
}

/// Another buffer set for `first`'s program: a fork, or a fresh compile on devices that
/// cannot share a compiled program.
fn replicate(
    device: &dyn Device,
    role: Role,
    bundle: &anetrain_mil::Bundle,
    first: &dyn Kernel,
) -> Result<Box<dyn Kernel>> {
    match first.fork() {
        Ok(k) => Ok(k),
        Err(DeviceError::Unavailable(_)) => device
            .compile(&bundle.program, &bundle.weights)
            .map_err(|e| device_error(role.name(), e)),
        Err(e) => Err(device_error(role.name(), e)),
    }
}

impl DeviceEngine {
    /// Compiles every training kernel of `config` for sequences of `seq` tokens on `device`,
    /// allocates all step buffers and stages `params`, so an engine always holds weights.
    pub fn new(
        config: &ModelConfig,
        device: Box<dyn Device>,
        seq: usize,
        params: &Params,
    ) -> Result<DeviceEngine> {
        config.validate()?;
        if seq == 0 || seq > config.max_seq_len {
            return Err(ModelError::Options(format!(
                "sequence length {seq} is outside 1..={} (max_seq_len); pick a training seq the model supports",
                config.max_seq_len
            )));
        }
        let c = config;
        let dims = Dims {
            d: c.dim,
            q: c.q_dim(),
            kv: c.kv_dim(),
            h: c.hidden_dim,
            s: seq,
            v: c.vocab_size,
        };
        let compile = |role: Role| -> Result<(anetrain_mil::Bundle, Box<dyn Kernel>)> {
            let bundle = role.build(c, seq)?;
            let kernel = device
                .compile(&bundle.program, &bundle.weights)
                .map_err(|e| device_error(role.name(), e))?;
            Ok((bundle, kernel))
        };
        let mut layer_kernels: Vec<Vec<Box<dyn Kernel>>> =
            (0..c.n_layers).map(|_| Vec::new()).collect();
        for role in WEIGHT_ROLES {
            let (bundle, first) = compile(role)?;
            for kernels in layer_kernels.iter_mut().skip(1) {
                kernels.push(replicate(device.as_ref(), role, &bundle, first.as_ref())?);
            }
            layer_kernels[0].push(first);
        }
        let (_, attention_fwd) = compile(Role::AttentionFwd)?;
        let (_, attention_bwd) = compile(Role::AttentionBwd)?;

        let acts = (0..c.n_layers).map(|_| LayerActs::new(c, dims)).collect();
        let back = (0..c.n_layers).map(|_| LayerBack::new(dims)).collect();
        let scratch = Scratch::new(c, dims);
        let mut engine = DeviceEngine {
            config: c.clone(),
            dims,
            device_name: device.name(),
            layer_kernels,
            attention_fwd,
            attention_bwd,
            weights: (0..c.n_layers).map(|_| LayerWeights::new()).collect(),
            rope: Rope::new(c.head_dim, seq, c.rope_theta),
            acts,
            back,
            scratch,
        };
        engine.stage(params)?;
        Ok(engine)
    }

    /// The sequence length the kernels were compiled for.
    pub fn seq(&self) -> usize {
        self.dims.s
    }

    /// Next-token logits `[len][V]` for `tokens` (`1 ≤ len ≤ seq`), for evaluation and
    /// generation prefill. Shorter inputs are padded after the end; causal attention keeps the
    /// padding from affecting the returned positions.
    pub fn logits(&mut self, params: &Params, tokens: &[u32]) -> Result<Vec<f32>> {
        let (s, v) = (self.dims.s, self.dims.v);
        if tokens.is_empty() || tokens.len() > s {
            return Err(ModelError::Input(format!(
                "logits need 1..={s} tokens (the engine's seq), got {}",
                tokens.len()
            )));
        }
        self.check_ready(params)?;
        check_tokens(tokens, v, 0)?;
        self.scratch.tokens.fill(0);
        self.scratch.tokens[..tokens.len()].copy_from_slice(tokens);
        self.forward_sequence(params)?;
        Ok(self.scratch.logits[..tokens.len() * v].to_vec())
    }

    fn check_ready(&self, params: &Params) -> Result<()> {
        check_params(&self.config, params, "params")
    }

    /// Validates `rows` against the engine's seq and vocabulary.
    fn check_rows(&self, rows: &[Vec<u32>]) -> Result<()> {
        let s = self.dims.s;
        if rows.is_empty() {
            return Err(ModelError::Input("the batch has no rows".into()));
        }
        for (b, row) in rows.iter().enumerate() {
            if row.len() != s + 1 {
                return Err(ModelError::Input(format!(
                    "row {b} has {} tokens but this engine was built for seq {s}, so rows need {}",
                    row.len(),
                    s + 1
                )));
            }
            check_tokens(row, self.dims.v, b)?;
        }
        Ok(())
    }

    /// Loads `row` into the token and target buffers.
    fn load_row(&mut self, row: &[u32]) {
        let s = self.dims.s;
        self.scratch.tokens.copy_from_slice(&row[..s]);
        self.scratch.targets.copy_from_slice(&row[1..]);
    }

    /// Embedding, every layer, final norm and classifier for the sequence in
    /// `scratch.tokens`; leaves the logits `[S][V]` in `scratch.logits`.
    fn forward_sequence(&mut self, params: &Params) -> Result<()> {
        let DeviceEngine {
            config,
            dims,
            layer_kernels,
            attention_fwd,
            rope,
            acts,
            scratch,
            ..
        } = self;
        let eps = config.norm_eps as f32;
        embedding::lookup(&mut acts[0].x, params.embed_tokens.data(), &scratch.tokens);
        for l in 0..acts.len() {
            let (done, rest) = acts.split_at_mut(l + 1);
            let next = match rest.first_mut() {
                Some(a) => &mut a.x,
                None => &mut scratch.x_final,
            };
            let io = LayerIo {
                dims: *dims,
                head_dim: config.head_dim,
                eps,
                rope,
                kernels: &mut layer_kernels[l],
            };
            io.forward(
                attention_fwd.as_mut(),
                &params.layers[l],
                &mut done[l],
                next,
                &mut scratch.tmp,
            )?;
        }
        let (d, s, v) = (dims.d, dims.s, dims.v);
        rmsnorm_forward(
            &mut scratch.xf,
            &mut scratch.inv_final,
            &scratch.x_final,
            params.norm.data(),
            s,
            eps,
        );
        // logits [S][V] = xfᵀ [S][D] · Eᵀ [D][V]
        let xf = MatRef::rows(&scratch.xf, d, s)?.t();
        let e = MatRef::rows(params.classifier().data(), v, d)?.t();
        matmul(&mut scratch.logits, false, xf, e)
    }
}

impl DeviceEngine {
    /// Backward of the sequence whose forward just ran, from the scaled `dlogits` left in
    /// `scratch.logits`; adds every gradient into `grads`.
    fn backward_sequence(&mut self, params: &Params, grads: &mut Params) -> Result<()> {
        let DeviceEngine {
            config,
            dims,
            layer_kernels,
            attention_bwd,
            rope,
            acts,
            back,
            scratch,
            ..
        } = self;
        let Dims { d, s, v, .. } = *dims;
        let eps = config.norm_eps as f32;
        let Scratch {
            d_act,
            dhn,
            d_attn,
            dxn,
            dqk_pre,
            norm,
            x_final,
            inv_final,
            xf,
            logits,
            dxf,
            dx,
            tokens,
            ..
        } = scratch;
        // dxf [D][S] = Eᵀ [D][V] · dlogitsᵀ [V][S]
        let e = MatRef::rows(params.classifier().data(), v, d)?.t();
        matmul(dxf, false, e, MatRef::rows(logits, s, v)?.t())?;
        dx.fill(0.0);
        let Params {
            embed_tokens,
            layers,
            norm: norm_grad,
            lm_head,
        } = grads;
        rmsnorm_backward(
            dx,
            norm_grad.data_mut(),
            dxf,
            x_final,
            params.norm.data(),
            inv_final,
            s,
            &mut norm[..s],
        );

        let mut mats = Vec::with_capacity(layers.len());
        let mut norms = Vec::with_capacity(layers.len());
        for l in layers.iter_mut() {
            let LayerParams {
                input_layernorm,
                q_proj,
                k_proj,
                v_proj,
                o_proj,
                q_norm,
                k_norm,
                post_attention_layernorm,
                gate_proj,
                up_proj,
                down_proj,
            } = l;
            mats.push(MatrixGrads {
                q_proj: q_proj.data_mut(),
                k_proj: k_proj.data_mut(),
                v_proj: v_proj.data_mut(),
                o_proj: o_proj.data_mut(),
                gate_proj: gate_proj.data_mut(),
                up_proj: up_proj.data_mut(),
                down_proj: down_proj.data_mut(),
            });
            norms.push(NormGrads {
                input: input_layernorm.data_mut(),
                post: post_attention_layernorm.data_mut(),
                q_norm: q_norm.as_mut().map(|t| t.data_mut()),
                k_norm: k_norm.as_mut().map(|t| t.data_mut()),
            });
        }
        let classifier_grad = match lm_head {
            Some(t) => t.data_mut(),
            None => embed_tokens.data_mut(),
        };
        let (logits, xf): (&[f32], &[f32]) = (logits, xf);
        let mut scr = BackScratch {
            d_act,
            dhn,
            d_attn,
            dxn,
            dqk_pre,
            norm,
            dx,
        };
        let acts: &[LayerActs] = acts;
        let stopped = || ModelError::Internal("the weight-gradient worker stopped early".into());
        // Taken before the scope so the borrowed buffers outlive the worker's jobs.
        let layers_down = back.iter_mut().enumerate().rev();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = mpsc::channel();
            let worker = scope.spawn(move || run_worker(mats, classifier_grad, s, rx));
            let mut main = tx
                .send(DwJob::Classifier {
                    dlogits: logits,
                    xf,
                })
                .map_err(|_| stopped());
            for (l, lb) in layers_down {
                if main.is_err() {
                    break;
                }
                lb.d_out.copy_from_slice(scr.dx);
                let io = LayerIo {
                    dims: *dims,
                    head_dim: config.head_dim,
                    eps,
                    rope,
                    kernels: &mut layer_kernels[l],
                };
                main = io.backward(
                    l,
                    attention_bwd.as_mut(),
                    &params.layers[l],
                    &mut norms[l],
                    &acts[l],
                    lb,
                    &mut scr,
                    &tx,
                );
            }
            drop(tx);
            let worked = worker.join().unwrap_or_else(|_| {
                Err(ModelError::Internal(
                    "the weight-gradient worker panicked".into(),
                ))
            });
            // A worker failure explains a main-thread send failure, so report it first.
            worked.and(main)
        })?;
        embedding::scatter_add(embed_tokens.data_mut(), scr.dx, tokens);
        Ok(())
    }
}

impl Engine for DeviceEngine {
    fn describe(&self) -> String {
        format!("mil kernels on {}", self.device_name)
    }

    fn stage(&mut self, params: &Params) -> Result<()> {
        check_params(&self.config, params, "params")?;
        let s = self.dims.s;
        // Layers stage independently (own kernels, own buffers), so they run in parallel; the
        // pass is pure memory traffic over every weight, once per optimizer step.
        self.layer_kernels
            .par_iter_mut()
            .zip(&mut self.weights)
            .zip(&params.layers)
            .try_for_each(|((kernels, weights), layer)| weights.stage(layer, s, kernels))?;
        Ok(())
    }

    fn forward_backward(
        &mut self,
        params: &Params,
        rows: &[Vec<u32>],
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats> {
        self.check_ready(params)?;
        check_params(&self.config, grads, "grads")?;
        self.check_rows(rows)?;
        let (s, v) = (self.dims.s, self.dims.v);
        let tokens = rows.len() * s;
        let scale = loss_scale / tokens as f32;
        let mut total = 0.0;
        for row in rows {
            self.load_row(row);
            self.forward_sequence(params)?;
            let sc = &mut self.scratch;
            total += cross_entropy::loss_and_grad_in_place(
                &mut sc.logits,
                &sc.targets,
                v,
                scale,
                &mut sc.row_loss,
            );
            self.backward_sequence(params, grads)?;
        }
        Ok(PassStats {
            loss: (total / tokens as f64) as f32,
            tokens,
        })
    }

    fn loss(&mut self, params: &Params, rows: &[Vec<u32>]) -> Result<PassStats> {
        self.check_ready(params)?;
        self.check_rows(rows)?;
        let (s, v) = (self.dims.s, self.dims.v);
        let mut total = 0.0;
        for row in rows {
            self.load_row(row);
            self.forward_sequence(params)?;
            let sc = &mut self.scratch;
            total += cross_entropy::loss_sum(&sc.logits, &sc.targets, v, &mut sc.row_loss);
        }
        let tokens = rows.len() * s;
        Ok(PassStats {
            loss: (total / tokens as f64) as f32,
            tokens,
        })
    }
}
