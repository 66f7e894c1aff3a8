//! The compiled decode kernels of every layer and the KV cache they read: one matmul kernel
//! set per chunk width with the weights staged once, attention kernels per chunk width and
//! cache bucket, and where the cache lives.
//!
//! On a device that reads host memory in place (the fp32 CPU) every kernel of a layer reads
//! the same weight matrices, and every attention kernel of a layer reads one host buffer
//! `[Q+2KV+R][T]` (see [`super::kernels`]): the KV cache exists once per layer whatever the
//! widths. A device that needs its own copy (the ANE, the fp16 CPU) gets the one-width plan of
//! port rules, so it has one attention kernel per layer and the cache lives in its input.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use anetrain_device::{Device, DeviceError, Kernel, SharedMatrix};

use super::kernels::{decode_attention, decode_matmuls, DecodePlan};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::kernels::{share_weights, stage_weights, KernelForms, Role};
use crate::params::{LayerParams, Params};

/// The weight-bearing kernels of one layer at one chunk width.
pub(super) struct MatmulKernels {
    pub qkv: Box<dyn Kernel>,
    pub wo: Box<dyn Kernel>,
    pub ffn: Box<dyn Kernel>,
}

/// Where each layer's KV cache lives.
enum CacheStore {
    /// A host buffer per layer, the whole attention input `[channels][T]`, lent to an
    /// attention kernel only while it runs, so the generator writes it in place in between.
    Host(Vec<Arc<Vec<f32>>>),
    /// In the input of the layer's only attention kernel.
    InKernel,
}

/// Every layer's decode kernels and KV cache on one device.
pub(super) struct LayerKernels {
    device: Box<dyn Device>,
    config: ModelConfig,
    forms: KernelForms,
    /// Whether the kernels read the weights and the cache from host memory in place.
    in_place: bool,
    plan: DecodePlan,
    /// `(width, per-layer kernels)` for the plan's fixed widths and the last exact-fit one.
    matmuls: Vec<(usize, Vec<MatmulKernels>)>,
    /// Per-layer attention kernels by `(width, bucket)`, compiled on first use.
    attention: HashMap<(usize, usize), Vec<Box<dyn Kernel>>>,
    cache: CacheStore,
}

pub(super) fn kernel_error(name: &str, e: DeviceError) -> ModelError {
    ModelError::Device {
        kernel: format!("decode {name}"),
        source: e,
    }
}

/// Every layer's own buffer set for `bundle` ([`Device::compile_copies`]).
fn per_layer(
    device: &dyn Device,
    name: &str,
    bundle: &anetrain_mil::Bundle,
    layers: usize,
) -> Result<Vec<Box<dyn Kernel>>> {
    device
        .compile_copies(&bundle.program, &bundle.weights, layers)
        .map_err(|e| kernel_error(name, e))
}

impl LayerKernels {
    /// Compiles the kernels of the plan `device` calls for and stages `params` into them.
    pub fn new(
        config: &ModelConfig,
        params: &Params,
        device: Box<dyn Device>,
        max_seq: usize,
    ) -> Result<LayerKernels> {
        let forms = KernelForms::for_device(device.as_ref())?;
        let mut policy = device.surface_policy();
        let flexible = DecodePlan::new(config, max_seq, None)?;
        let [(_, first), ..] = decode_matmuls(config, &flexible, flexible.decode_width, forms)?;
        let in_place = policy.is_none() && reads_in_place(device.as_ref(), &first)?;
        if !in_place {
            // A device that copies every input gets one width, so the weights and the cache
            // are held once, in the kernels.
            policy = Some(policy.unwrap_or_default());
        }
        let plan = DecodePlan::new(config, max_seq, policy)?;
        let n = config.n_layers;
        let cache = if in_place {
            let len = plan.layout.channels * plan.cache_len();
            CacheStore::Host((0..n).map(|_| Arc::new(vec![0.0; len])).collect())
        } else {
            CacheStore::InKernel
        };
        let mut kernels = LayerKernels {
            device,
            config: config.clone(),
            forms,
            in_place,
            plan,
            matmuls: Vec::new(),
            attention: HashMap::new(),
            cache,
        };
        for w in kernels.plan.fixed_widths() {
            kernels.compile_matmuls(w, params)?;
        }
        // The one attention kernel of a copying device holds the cache: compile it now.
        let (w, t) = (kernels.plan.decode_width, kernels.plan.cache_len());
        kernels.attention_kernels(w, t)?;
        Ok(kernels)
    }

    /// The plan the kernels were compiled for.
    pub fn plan(&self) -> &DecodePlan {
        &self.plan
    }

    /// The device's name, e.g. `cpu (f32)`.
    pub fn device_name(&self) -> String {
        self.device.name()
    }

    /// Layer `layer`'s matmul kernels at chunk width `width` (a width
    /// [`DecodePlan::chunk_width`] gives), reading `params`. A width outside the fixed ones is
    /// compiled on first use and replaces the previous such width, with its attention
    /// kernels, so a run of prompts of many lengths holds two widths' kernels, not all.
    pub fn matmuls(
        &mut self,
        width: usize,
        layer: usize,
        params: &Params,
    ) -> Result<&mut MatmulKernels> {
        if !self.matmuls.iter().any(|(w, _)| *w == width) {
            let fixed = self.plan.fixed_widths();
            self.matmuls.retain(|(w, _)| fixed.contains(w));
            self.attention.retain(|(w, _), _| fixed.contains(w));
            self.compile_matmuls(width, params)?;
        }
        self.matmuls
            .iter_mut()
            .find(|(w, _)| *w == width)
            .and_then(|(_, k)| k.get_mut(layer))
            .ok_or_else(|| {
                ModelError::Input(format!(
                    "the decode plan has no width-{width} kernels for layer {layer}"
                ))
            })
    }

    /// Compiles every layer's matmul kernels at width `w` and gives them `params`' weights:
    /// shared in place, or staged into the kernels on a copying device.
    fn compile_matmuls(&mut self, w: usize, params: &Params) -> Result<()> {
        let (h, n) = (self.config.hidden_dim, self.config.n_layers);
        let device = self.device.as_ref();
        let [qkv, wo, ffn] = decode_matmuls(&self.config, &self.plan, w, self.forms)?
            .map(|(name, bundle)| per_layer(device, name, &bundle, n));
        let mut kernels: Vec<MatmulKernels> = (qkv?.into_iter().zip(wo?).zip(ffn?))
            .map(|((qkv, wo), ffn)| MatmulKernels { qkv, wo, ffn })
            .collect();
        if self.in_place {
            for (k, p) in kernels.iter_mut().zip(&params.layers) {
                share_layer(k, p, w, h)?;
            }
        } else {
            let mut scratch = Vec::new();
            for (k, p) in kernels.iter_mut().zip(&params.layers) {
                stage_layer(k, p, w, h, &mut scratch)?;
            }
        }
        self.matmuls.push((w, kernels));
        Ok(())
    }

    /// Writes `data` `[channels][columns]` into layer `layer`'s attention input: q, cache
    /// columns or mask rows. Cost: one copy of `data`.
    pub fn write_attention(
        &mut self,
        layer: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        data: &[f32],
    ) -> Result<()> {
        let t = self.plan.cache_len();
        let key = (self.plan.decode_width, t);
        match &mut self.cache {
            CacheStore::Host(buffers) => {
                let buf = Arc::get_mut(&mut buffers[layer]).ok_or_else(|| {
                    ModelError::Input("internal error: a kernel still reads the KV cache".into())
                })?;
                let width = columns.len();
                for (ch, src) in channels.zip(data.chunks_exact(width)) {
                    buf[ch * t + columns.start..][..width].copy_from_slice(src);
                }
                Ok(())
            }
            CacheStore::InKernel => {
                let kernel = &mut self.attention.get_mut(&key).ok_or_else(|| {
                    ModelError::Input("internal error: the attention kernel is missing".into())
                })?[layer];
                kernel
                    .write_input_region(0, channels, columns, data)
                    .map_err(|e| kernel_error("decode_attention", e))
            }
        }
    }

    /// Runs layer `layer`'s attention for a chunk of `width` columns over the first `bucket`
    /// cache positions and reads its `[Q][width]` output into `out`.
    pub fn run_attention(
        &mut self,
        layer: usize,
        width: usize,
        bucket: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let (channels, t) = (self.plan.layout.channels, self.plan.cache_len());
        let err = |e| kernel_error("decode_attention", e);
        let shared = match &self.cache {
            CacheStore::Host(buffers) => Some(
                SharedMatrix::row_major(Arc::clone(&buffers[layer]), channels, t).map_err(err)?,
            ),
            CacheStore::InKernel => None,
        };
        let kernel = &mut self.attention_kernels(width, bucket)?[layer];
        if let Some(m) = &shared {
            kernel
                .share_input_region(0, 0..channels, 0..t, m)
                .map_err(err)?;
        }
        let ran = kernel.run().map_err(err);
        // Hand the cache back before anything else, so the next write finds it unshared.
        kernel.unshare_inputs();
        ran?;
        kernel
            .read_output_channels(0, 0..out.len() / width, out)
            .map_err(err)
    }

    /// Layer attention kernels for `(width, bucket)`, compiled for every layer on first use.
    fn attention_kernels(
        &mut self,
        width: usize,
        bucket: usize,
    ) -> Result<&mut Vec<Box<dyn Kernel>>> {
        let key = (width, bucket);
        if !self.attention.contains_key(&key) {
            let bundle = decode_attention(&self.config, &self.plan, width, bucket)?;
            let kernels = per_layer(
                self.device.as_ref(),
                "decode_attention",
                &bundle,
                self.config.n_layers,
            )?;
            self.attention.insert(key, kernels);
        }
        self.attention.get_mut(&key).ok_or_else(|| {
            ModelError::Input("internal error: the attention kernel is missing".into())
        })
    }
}

/// Whether `device` runs `probe` (a width-1 dynamic matmul) reading its weight columns from
/// host memory in place.
fn reads_in_place(device: &dyn Device, probe: &anetrain_mil::Bundle) -> Result<bool> {
    let mut kernel = device
        .compile(&probe.program, &probe.weights)
        .map_err(|e| kernel_error("decode_qkv", e))?;
    let shape = &kernel.inputs()[0].ty.shape;
    let (ic, cols) = (shape[1], shape[3]);
    let zeros = SharedMatrix::row_major(Arc::new(vec![0.0; ic * (cols - 1)]), ic, cols - 1)
        .map_err(|e| kernel_error("decode_qkv", e))?;
    match kernel.share_input_region(0, 0..ic, 1..cols, &zeros) {
        Ok(()) => Ok(true),
        Err(DeviceError::Unavailable(_)) => Ok(false),
        Err(e) => Err(kernel_error("decode_qkv", e)),
    }
}

/// Makes width-`w` kernels `k` read layer `p`'s stacked weights in place: the generator's
/// parameters are never updated, so the kernels keep sharing them and the weights are held
/// once. `W2` is read as it is, like the backward down-projection.
fn share_layer(k: &mut MatmulKernels, p: &LayerParams, w: usize, h: usize) -> Result<()> {
    let shared = [
        (Role::QkvFwd, w, k.qkv.as_mut(), "decode_qkv"),
        (Role::WoFwd, w, k.wo.as_mut(), "decode_wo"),
        (Role::FfnUpFwd, w, k.ffn.as_mut(), "decode_ffn"),
    ];
    for (role, seq, kernel, name) in shared {
        share_weights(role, p, seq, kernel)?.map_err(|e| kernel_error(name, e))?;
    }
    share_weights(Role::FfnDownBwd, p, w + 2 * h, k.ffn.as_mut())?
        .map_err(|e| kernel_error("decode_ffn", e))
}

/// Writes layer `p`'s weights into the matrix columns of width-`w` kernels `k`.
fn stage_layer(
    k: &mut MatmulKernels,
    p: &LayerParams,
    w: usize,
    h: usize,
    scratch: &mut Vec<f32>,
) -> Result<()> {
    stage_weights(Role::QkvFwd, p, w, k.qkv.as_mut(), scratch)?;
    stage_weights(Role::WoFwd, p, w, k.wo.as_mut(), scratch)?;
    stage_weights(Role::FfnUpFwd, p, w, k.ffn.as_mut(), scratch)?;
    stage_weights(Role::FfnDownBwd, p, w + 2 * h, k.ffn.as_mut(), scratch)
}
