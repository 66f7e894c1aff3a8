//! The device engine: loss and gradients of a batch through the MIL training kernels on any
//! [`Device`], with the norms, RoPE, SwiGLU backward, classifier, loss and weight gradients
//! on the CPU ([`crate::cpu_ops`]).
//!
//! One sequence runs at a time; a batch loops over its sequences and accumulates gradients.
//! Every kernel is compiled once; each weight-bearing kernel has one copy per layer
//! ([`Device::compile_copies`]: forks of one compile where the device can fork) whose matrix
//! columns are staged once per [`Engine::stage`] (on the CPU, one kernel per role serves
//! every layer, lent each layer's stacked master weights as it runs: [`weights`]), so a step
//! only writes activation columns. All
//! activation and gradient buffers are allocated in [`DeviceEngine::new`]. During backward a
//! worker thread computes each layer's dW while the device runs the next layer down.

mod block;
mod buffers;
mod checks;
mod weights;

use std::sync::mpsc;

use anetrain_data::Batch;
use anetrain_device::{Device, Kernel};

use super::{adapter_for_grads, full_pass_with_adapter, Engine, PassStats};
use crate::config::ModelConfig;
use crate::cpu_ops::dw::{run_worker, DwJob};
use crate::cpu_ops::norm::{rmsnorm_backward, rmsnorm_forward};
use crate::cpu_ops::{cross_entropy, embedding, matmul, MatRef, Rope};
use crate::error::{ModelError, Result};
use crate::kernels::{device_error, KernelForms, Role};
use crate::lora::{Adapter, LoraLinear};
use crate::params::{Params, TensorViewMut};

use block::{BackScratch, LayerIo, MatrixGrads, NormGrads};
use buffers::{Dims, LayerActs, LayerBack, Scratch};
use checks::{check_adapter, check_params, check_tokens};
use weights::LayerKernels;

/// Computes losses and gradients with the MIL training kernels on a [`Device`].
pub struct DeviceEngine {
    config: ModelConfig,
    dims: Dims,
    device_name: String,
    /// The weight-bearing kernels of every layer, and how they get their weights.
    layer_kernels: LayerKernels,
    attention_fwd: Box<dyn Kernel>,
    attention_bwd: Box<dyn Kernel>,
    rope: Rope,
    acts: Vec<LayerActs>,
    back: Vec<LayerBack>,
    scratch: Scratch,
    /// The adapter on the staged base (see [`Engine::set_adapter`]).
    adapter: Option<Adapter>,
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
        let forms = KernelForms::for_device(device.as_ref())?;
        let layer_kernels = LayerKernels::new(c, device.as_ref(), seq, forms, params)?;
        let compile = |role: Role| -> Result<Box<dyn Kernel>> {
            let bundle = role.build(c, seq, forms)?;
            device
                .compile(&bundle.program, &bundle.weights)
                .map_err(|e| device_error(role.name(), e))
        };
        let attention_fwd = compile(Role::AttentionFwd)?;
        let attention_bwd = compile(Role::AttentionBwd)?;

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
            rope: Rope::new(c.head_dim, seq, c.rope_theta),
            acts,
            back,
            scratch,
            adapter: None,
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
        self.with_weights(|e| e.forward_sequence(params))?;
        // The step's logits are `[V][S]`; callers get one row of V per position.
        let logits = &self.scratch.logits;
        let mut out = Vec::with_capacity(tokens.len() * v);
        for p in 0..tokens.len() {
            out.extend(logits.iter().skip(p).step_by(s));
        }
        Ok(out)
    }

    /// Runs `pass` (whose layers borrow `params`' weights for the kernels that read them in
    /// place) and takes the weights back afterwards, also on failure, so between passes the
    /// trainer alone holds them and updates them without a copy.
    fn with_weights<T>(&mut self, pass: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let out = pass(self);
        self.layer_kernels.release();
        out
    }

    fn check_ready(&self, params: &Params) -> Result<()> {
        check_params(&self.config, params, "params")
    }

    /// Validates `batch` against the engine's seq and vocabulary.
    fn check_batch(&self, batch: &Batch) -> Result<()> {
        let s = self.dims.s;
        if batch.rows() == 0 {
            return Err(ModelError::Input("the batch has no rows".into()));
        }
        if batch.seq() != s {
            return Err(ModelError::Input(format!(
                "the batch has rows of {} tokens but this engine was built for seq {s}, so rows \
                 need {}",
                batch.seq() + 1,
                s + 1
            )));
        }
        for b in 0..batch.rows() {
            check_tokens(batch.row(b), self.dims.v, b)?;
        }
        Ok(())
    }

    /// Whether row `r` of `batch` has any target that counts; a row that has none is skipped,
    /// since it adds nothing to the loss or the gradient.
    fn row_counts(batch: &Batch, r: usize) -> bool {
        batch
            .target_weights(r)
            .is_none_or(|w| w.iter().any(|&x| x != 0.0))
    }

    /// Loads `row` into the token and target buffers.
    fn load_row(&mut self, row: &[u32]) {
        let s = self.dims.s;
        self.scratch.tokens.copy_from_slice(&row[..s]);
        self.scratch.targets.copy_from_slice(&row[1..]);
    }

    /// Embedding, every layer, final norm and classifier for the sequence in
    /// `scratch.tokens`; leaves the logits `[V][S]` in `scratch.logits`.
    fn forward_sequence(&mut self, params: &Params) -> Result<()> {
        let DeviceEngine {
            config,
            dims,
            layer_kernels,
            attention_fwd,
            rope,
            acts,
            scratch,
            adapter,
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
            let kernels = layer_kernels.layer(l, &params.layers[l])?;
            let io = LayerIo::new(config, *dims, rope, kernels, adapter.as_ref(), l);
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
        // logits [V][S] = E [V][D] · xf [D][S]
        let xf = MatRef::rows(&scratch.xf, d, s)?;
        let e = MatRef::rows(params.classifier().data(), v, d)?;
        matmul(&mut scratch.logits, false, e, xf)
    }
}

/// Where a backward pass puts its gradients.
enum Grads<'g> {
    /// Every base tensor (full training).
    Base(&'g mut Params),
    /// Only the adapter's pairs; the base is frozen and gets no gradient.
    Adapter(&'g mut Adapter),
}

impl DeviceEngine {
    /// Backward of the sequence whose forward just ran, from the scaled `dlogits` left in
    /// `scratch.logits`; adds every gradient into `grads`.
    fn backward_sequence(&mut self, params: &Params, grads: Grads<'_>) -> Result<()> {
        let DeviceEngine {
            config,
            dims,
            layer_kernels,
            attention_bwd,
            rope,
            acts,
            back,
            scratch,
            adapter,
            ..
        } = self;
        let Dims { d, s, v, .. } = *dims;
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
            frozen_norm_grads,
            lora_g,
            ..
        } = scratch;
        // dxf [D][S] = Eᵀ [D][V] · dlogits [V][S]
        let e = MatRef::rows(params.classifier().data(), v, d)?.t();
        matmul(dxf, false, e, MatRef::rows(logits, v, s)?)?;
        dx.fill(0.0);
        let mut scr = BackScratch {
            d_act,
            dhn,
            d_attn,
            dxn,
            dqk_pre,
            norm,
            lora_g,
            dx,
        };
        let final_norm_backward = |dx: &mut [f32], grad: &mut [f32], norm: &mut [f32]| {
            let x = (&*x_final, params.norm.data(), &*inv_final);
            rmsnorm_backward(dx, grad, dxf, x.0, x.1, x.2, s, &mut norm[..s]);
        };
        let acts: &[LayerActs] = acts;
        match grads {
            Grads::Base(grads) => {
                let Params {
                    embed_tokens,
                    layers,
                    norm: norm_grad,
                    lm_head,
                } = grads;
                final_norm_backward(scr.dx, norm_grad.data_mut(), scr.norm);
                let mut mats = Vec::with_capacity(layers.len());
                let mut norms = Vec::with_capacity(layers.len());
                for l in layers.iter_mut() {
                    let parts = l.parts_mut();
                    mats.push(parts.linears.map(TensorViewMut::into_data));
                    norms.push(NormGrads {
                        input: parts.input_layernorm.data_mut(),
                        post: parts.post_attention_layernorm.data_mut(),
                        q_norm: parts.q_norm.map(|t| t.data_mut()),
                        k_norm: parts.k_norm.map(|t| t.data_mut()),
                    });
                }
                let classifier_grad = match lm_head {
                    Some(t) => t.data_mut(),
                    None => embed_tokens.data_mut(),
                };
                let (logits, xf): (&[f32], &[f32]) = (logits, xf);
                let stopped =
                    || ModelError::Internal("the weight-gradient worker stopped early".into());
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
                        let kernels = match layer_kernels.layer(l, &params.layers[l]) {
                            Ok(k) => k,
                            Err(e) => {
                                main = Err(e);
                                break;
                            }
                        };
                        let io = LayerIo::new(config, *dims, rope, kernels, None, l);
                        main = io.backward(
                            l,
                            attention_bwd.as_mut(),
                            &params.layers[l],
                            &mut norms[l],
                            &acts[l],
                            lb,
                            &mut scr,
                            &mut MatrixGrads::Base(&tx),
                            true,
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
            }
            Grads::Adapter(grads) => {
                // The frozen norm gains' gradients fall out of the dx computation; they land in
                // throwaway buffers (a few floats per layer) and the embedding gets none.
                let (final_grad, per_layer) = frozen_norm_grads.split_at_mut(d);
                final_norm_backward(scr.dx, final_grad, scr.norm);
                // Nothing below the lowest adapted layer has a gradient, and that layer needs
                // none for its input.
                let lowest = grads.lowest_layer().unwrap_or(back.len());
                let mut pairs: Vec<[Option<&mut LoraLinear>; 7]> =
                    back.iter().map(|_| Default::default()).collect();
                for ((l, target), g) in grads.modules_mut() {
                    pairs[l][target as usize] = Some(g);
                }
                let frozen = per_layer.chunks_mut(NormGrads::throwaway_len(d, config.head_dim));
                let layers_down = back.iter_mut().zip(pairs).zip(frozen).enumerate().rev();
                for (l, ((lb, pairs), frozen)) in layers_down.take_while(|(l, _)| *l >= lowest) {
                    let mut norms = NormGrads::throwaway(frozen, d, config.qk_norm);
                    let kernels = layer_kernels.layer(l, &params.layers[l])?;
                    let io = LayerIo::new(config, *dims, rope, kernels, adapter.as_ref(), l);
                    io.backward(
                        l,
                        attention_bwd.as_mut(),
                        &params.layers[l],
                        &mut norms,
                        &acts[l],
                        lb,
                        &mut scr,
                        &mut MatrixGrads::Adapter(pairs),
                        l > lowest,
                    )?;
                }
            }
        }
        Ok(())
    }
}

impl Engine for DeviceEngine {
    fn describe(&self) -> String {
        format!("mil kernels on {}", self.device_name)
    }

    fn stage(&mut self, params: &Params) -> Result<()> {
        check_params(&self.config, params, "params")?;
        self.layer_kernels.stage(params)
    }

    fn holds_own_copy(&self) -> bool {
        self.layer_kernels.copies()
    }

    fn forward_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Params,
    ) -> Result<PassStats> {
        if self.adapter.is_some() {
            return Err(full_pass_with_adapter());
        }
        check_params(&self.config, grads, "grads")?;
        self.pass(params, batch, loss_scale, Grads::Base(grads))
    }

    fn loss(&mut self, params: &Params, batch: &Batch) -> Result<PassStats> {
        self.check_ready(params)?;
        self.check_batch(batch)?;
        self.with_weights(|e| e.loss_rows(params, batch))
    }

    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        if let Some(a) = adapter {
            check_adapter(&self.config, a)?;
        }
        match (&mut self.adapter, adapter) {
            // Every step after the first: the same shapes, new values; no allocation.
            (Some(held), Some(new)) if held.same_shape(new) => held.copy_values_from(new)?,
            (held, new) => *held = new.cloned(),
        }
        let s = self.dims.s;
        for (l, acts) in self.acts.iter_mut().enumerate() {
            acts.fit_adapter(self.adapter.as_ref().map_or([None; 7], |a| a.layer(l)), s);
        }
        let rank = self.adapter.as_ref().map_or(0, |a| a.config().rank);
        self.scratch.lora_g.resize(rank * s, 0.0);
        Ok(())
    }

    fn adapter_backward(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: &mut Adapter,
    ) -> Result<PassStats> {
        adapter_for_grads(&self.adapter, grads)?;
        self.pass(params, batch, loss_scale, Grads::Adapter(grads))
    }
}

impl DeviceEngine {
    /// The mean loss over the rows of `batch` that count, without gradients.
    fn loss_rows(&mut self, params: &Params, batch: &Batch) -> Result<PassStats> {
        let v = self.dims.v;
        let mut total = 0.0;
        for r in (0..batch.rows()).filter(|&r| Self::row_counts(batch, r)) {
            self.load_row(batch.row(r));
            self.forward_sequence(params)?;
            let sc = &mut self.scratch;
            total += cross_entropy::loss_sum(
                &sc.logits,
                &sc.targets,
                batch.target_weights(r),
                v,
                &mut sc.row_loss,
            );
        }
        let tokens = batch.counted_targets();
        Ok(PassStats {
            loss: (total / tokens.max(1) as f64) as f32,
            tokens,
        })
    }

    /// Forward, loss and backward of every row that counts, gradients into `grads`.
    fn pass(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        grads: Grads<'_>,
    ) -> Result<PassStats> {
        self.check_ready(params)?;
        self.check_batch(batch)?;
        self.with_weights(|e| e.pass_rows(params, batch, loss_scale, grads))
    }

    /// [`DeviceEngine::pass`] once the weights are lent.
    fn pass_rows(
        &mut self,
        params: &Params,
        batch: &Batch,
        loss_scale: f32,
        mut grads: Grads<'_>,
    ) -> Result<PassStats> {
        let v = self.dims.v;
        let tokens = batch.counted_targets();
        let scale = loss_scale / tokens.max(1) as f32;
        let mut total = 0.0;
        for r in (0..batch.rows()).filter(|&r| Self::row_counts(batch, r)) {
            self.load_row(batch.row(r));
            self.forward_sequence(params)?;
            let sc = &mut self.scratch;
            total += cross_entropy::loss_and_grad_in_place(
                &mut sc.logits,
                &sc.targets,
                batch.target_weights(r),
                v,
                scale,
                &mut sc.row_loss,
            );
            let grads = match &mut grads {
                Grads::Base(g) => Grads::Base(g),
                Grads::Adapter(g) => Grads::Adapter(g),
            };
            self.backward_sequence(params, grads)?;
        }
        Ok(PassStats {
            loss: (total / tokens.max(1) as f64) as f32,
            tokens,
        })
    }
}
