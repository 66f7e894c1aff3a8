//! Hugging Face model directories: `config.json` plus safetensors weights (one
//! `model.safetensors`, or shards listed in `model.safetensors.index.json`), read memory-mapped
//! in F32, F16 or BF16 and written back in F32 so `transformers` loads them unchanged.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anetrain_data::TokenizerSource;
use half::bf16;
use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::params::{check_tensor_shapes, Params, Tensor, TensorView, TensorViewMut};

/// Name of the single-file weights in a Hugging Face directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// Name of the shard index in a sharded Hugging Face directory.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// The generation defaults (BOS/EOS ids) `transformers` reads beside `config.json`.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// A memory-mapped safetensors file whose tensors are read as f32.
pub struct SafetensorsFile {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section (after the 8-byte length and the JSON header).
    data_start: usize,
    metadata: Metadata,
}

impl SafetensorsFile {
    /// Maps `path` and parses its header (the safetensors crate checks that the offsets cover
    /// the file exactly, so truncated files are rejected here).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on nobody
        // truncating or rewriting the checkpoint while it is open.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let (header_len, metadata) = SafeTensors::read_metadata(&mmap).map_err(|e| {
            ModelError::format(
                path,
                format!("not a valid safetensors file ({e}); re-export it"),
            )
        })?;
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            mmap,
            data_start: 8 + header_len,
            metadata,
        })
    }

    /// Names of all tensors in the file, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.metadata.tensors().into_keys().collect();
        names.sort();
        names
    }

    /// Reads tensor `name` as f32, whatever its stored float type.
    pub fn read(&self, name: &str) -> Result<Tensor> {
        let info = self.info(name)?;
        let mut tensor = Tensor::zeros(&info.shape);
        self.convert(name, info, tensor.data_mut())?;
        Ok(tensor)
    }

    /// Reads tensor `name` into `dst`, which fixes the expected shape.
    pub fn read_into(&self, name: &str, dst: &mut TensorViewMut<'_>) -> Result<()> {
        let info = self.info(name)?;
        if info.shape != dst.shape() {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: dst.shape().to_vec(),
                found: info.shape.clone(),
            });
        }
        self.convert(name, info, dst.data_mut())
    }

    /// Fails unless this file holds exactly the tensors `config` implies (names and shapes,
    /// no extra layers, no `lm_head.weight` in a tied model): the check of a checkpoint against
    /// its own config, made from the header before anything is allocated.
    pub fn check_tensors(&self, config: &ModelConfig) -> Result<()> {
        let location = self.path.display().to_string();
        check_tensor_shapes(config, &self.shapes(), &location)?;
        if config.tied_embeddings && self.metadata.info(LM_HEAD).is_some() {
            return Err(tied_with_lm_head(&location));
        }
        Ok(())
    }

    /// Every tensor's name and shape, from the header.
    fn shapes(&self) -> HashMap<String, Vec<usize>> {
        self.metadata
            .tensors()
            .into_iter()
            .map(|(n, info)| (n, info.shape.clone()))
            .collect()
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.metadata
            .info(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.to_string(),
                location: self.path.display().to_string(),
            })
    }

    /// Reads BF16 tensor `name` of `shape` into `dst` bit for bit (optimizer moments kept in
    /// bf16 must resume unchanged, so another stored type is an error, not a conversion).
    pub fn read_bf16_into(&self, name: &str, shape: &[usize], dst: &mut [bf16]) -> Result<()> {
        let info = self.info(name)?;
        if info.shape != shape {
            return Err(ModelError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: info.shape.clone(),
            });
        }
        if info.dtype != Dtype::BF16 {
            return Err(ModelError::format(
                &self.path,
                format!(
                    "tensor `{name}` is stored as {} but the run keeps it in BF16; the file does not belong to this checkpoint: restore the checkpoint's own optimizer.safetensors or resume from another checkpoint",
                    info.dtype
                ),
            ));
        }
        let (start, end) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + start..self.data_start + end];
        for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
            *d = bf16::from_le_bytes([b[0], b[1]]);
        }
        Ok(())
    }

    /// Decodes little-endian F32/F16/BF16 bytes into `dst`. Cost: one pass over the tensor.
    fn convert(&self, name: &str, info: &TensorInfo, dst: &mut [f32]) -> Result<()> {
        let (start, end) = info.data_offsets;
        let bytes = &self.mmap[self.data_start + start..self.data_start + end];
        match info.dtype {
            Dtype::F32 => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(4)) {
                    *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Dtype::F16 => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            Dtype::BF16 => {
                for (d, b) in dst.iter_mut().zip(bytes.chunks_exact(2)) {
                    *d = bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            other => {
                return Err(ModelError::format(
                    &self.path,
                    format!("tensor `{name}` is stored as {other}; anetrain reads F32, F16 and BF16 weights"),
                ))
            }
        }
        Ok(())
    }
}

/// Loads a Hugging Face model directory: `config.json` and its weights, converted to f32.
/// Like `transformers`, a single `model.safetensors` wins over a shard index. Tensors the config
/// does not use are ignored, except extra layers and a tied model's `lm_head.weight` that
/// differs from its embedding, which mean the config is wrong.
pub fn load_hf_dir(dir: &Path) -> Result<(ModelConfig, Params)> {
    let config = ModelConfig::from_hf_dir(dir)?;
    let (files, weight_map) = open_weights(dir)?;
    let shapes: HashMap<String, Vec<usize>> = files.iter().flat_map(|f| f.shapes()).collect();
    check_tensor_shapes(&config, &shapes, &dir.display().to_string())?;
    let mut params = Params::try_zeros(&config)?;
    params
        .iter_mut()
        .into_par_iter()
        .try_for_each(|(name, mut tensor)| {
            let file = match &weight_map {
                None => &files[0],
                Some((index_path, map)) => {
                    let shard = map.get(&name).ok_or_else(|| ModelError::MissingTensor {
                        name: name.clone(),
                        location: index_path.display().to_string(),
                    })?;
                    files
                        .iter()
                        .find(|f| f.path.file_name().is_some_and(|n| n == shard.as_str()))
                        .ok_or_else(|| {
                            ModelError::format(
                                index_path,
                                format!("tensor `{name}` maps to unknown shard `{shard}`"),
                            )
                        })?
                }
            };
            file.read_into(&name, &mut tensor)
        })?;
    // A tied config beside a separate classifier would silently train a different model,
    // unless the classifier is only a redundant copy of the embedding.
    if config.tied_embeddings && shapes.contains_key(LM_HEAD) {
        let file = files
            .iter()
            .find(|f| f.metadata.info(LM_HEAD).is_some())
            .unwrap_or(&files[0]);
        if file.read(LM_HEAD)?.data() != params.embed_tokens.data() {
            return Err(tied_with_lm_head(&dir.display().to_string()));
        }
    }
    params.check_finite(&dir.display().to_string())?;
    Ok((config, params))
}

const LM_HEAD: &str = "lm_head.weight";

fn tied_with_lm_head(location: &str) -> ModelError {
    ModelError::Config(format!(
        "{location} holds its own `lm_head.weight` but the config ties it to the embedding (tie_word_embeddings true); set tie_word_embeddings to false"
    ))
}

/// The weight files of a directory, plus the shard index (its path and name → file map) when
/// the weights are sharded.
#[allow(clippy::type_complexity)]
fn open_weights(
    dir: &Path,
) -> Result<(
    Vec<SafetensorsFile>,
    Option<(PathBuf, HashMap<String, String>)>,
)> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok((vec![SafetensorsFile::open(&single)?], None));
    }
    let index_path = dir.join(INDEX_FILE);
    if !index_path.is_file() {
        return Err(ModelError::format(
            dir,
            format!("neither {WEIGHTS_FILE} nor {INDEX_FILE} is here; point at a Hugging Face model directory"),
        ));
    }
    let text = std::fs::read_to_string(&index_path).map_err(|e| ModelError::io(&index_path, e))?;
    let index: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::format(&index_path, format!("invalid JSON: {e}")))?;
    let map: HashMap<String, String> = index
        .get("weight_map")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .ok_or_else(|| {
            ModelError::format(
                &index_path,
                "no `weight_map` object of tensor name → shard file",
            )
        })?;
    let shards: BTreeSet<&String> = map.values().collect();
    let files = shards
        .into_iter()
        .map(|shard| SafetensorsFile::open(&dir.join(shard)))
        .collect::<Result<Vec<_>>>()?;
    Ok((files, Some((index_path, map))))
}

/// Writes a complete Hugging Face directory that `transformers` loads as the same model:
/// `config.json`, `generation_config.json`, an F32 `model.safetensors` (tied models get no
/// `lm_head.weight`) and, when known, the tokenizer files. The weights are written to a
/// temporary name and renamed, so an interrupted export never leaves a truncated
/// `model.safetensors`.
pub fn save_hf_dir(
    dir: &Path,
    config: &ModelConfig,
    params: &Params,
    tokenizer: Option<&TokenizerSource>,
) -> Result<()> {
    config.validate()?;
    params.check_matches(config)?;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    let mut config = config.clone();
    if let Some(tokenizer) = tokenizer {
        // A model that never saw a config.json (a preset, a llama2.c file) takes its special
        // ids from its tokenizer, so transformers' generate stops at EOS.
        config.adopt_special_tokens(tokenizer.open()?.as_ref());
        tokenizer.copy_into(dir)?;
    }
    let write = |name: &str, text: String| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))
    };
    write("config.json", config.to_hf_json())?;
    let (bos, eos) = config.special_tokens.to_hf_values();
    let generation = serde_json::json!({ "bos_token_id": bos, "eos_token_id": eos });
    write(
        GENERATION_CONFIG_FILE,
        serde_json::to_string_pretty(&generation).unwrap_or_else(|_| generation.to_string()),
    )?;

    write_safetensors(&dir.join(WEIGHTS_FILE), params.iter())?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ModelError::io(dir, e))
}

/// A tensor's values in the type a safetensors file stores them as.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StoredValues<'a> {
    /// F32 (weights, fp32 optimizer state).
    F32(&'a [f32]),
    /// BF16, written bit for bit (optimizer moments kept in bf16).
    Bf16(&'a [bf16]),
}

impl StoredValues<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            StoredValues::F32(v) => v.len(),
            StoredValues::Bf16(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn dtype(&self) -> Dtype {
        match self {
            StoredValues::F32(_) => Dtype::F32,
            StoredValues::Bf16(_) => Dtype::BF16,
        }
    }

    fn bytes(&self) -> usize {
        self.len() * self.dtype().bitsize() / 8
    }

    /// Appends the little-endian bytes to `out`.
    fn extend_bytes(&self, out: &mut Vec<u8>) {
        match self {
            StoredValues::F32(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            StoredValues::Bf16(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        }
    }
}

/// A named tensor as it is written: shape and values in their stored type.
pub type StoredTensor<'a> = (String, &'a [usize], StoredValues<'a>);

/// Writes `tensors` as an F32 safetensors file ([`write_stored`]).
pub(crate) fn write_safetensors(path: &Path, tensors: Vec<(String, TensorView<'_>)>) -> Result<()> {
    let stored = tensors
        .into_iter()
        .map(|(name, t)| (name, t.shape(), StoredValues::F32(t.data())))
        .collect();
    write_stored(path, stored)
}

/// Writes `tensors` as a safetensors file, each in its stored type, and makes it durable
/// (fsync) before returning.
///
/// The bytes go to `NAME.tmp-PID` beside `path`, created like any file (mode 0666 less the
/// umask, as `meta.json` and `config.json` are) and renamed onto `path` when complete, so
/// `path` is never seen half-written. The temporary file is removed on error, and leftovers of
/// writers that were killed (their pid is gone) are removed before writing.
pub(crate) fn write_stored(path: &Path, tensors: Vec<StoredTensor<'_>>) -> Result<()> {
    let mut infos = Vec::with_capacity(tensors.len());
    let mut offset = 0usize;
    for (name, shape, values) in &tensors {
        let end = offset + values.bytes();
        infos.push((
            name.clone(),
            TensorInfo {
                dtype: values.dtype(),
                shape: shape.to_vec(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let bad = |e: &dyn std::fmt::Display| {
        ModelError::format(path, format!("could not write safetensors: {e}"))
    };
    // transformers refuses safetensors files whose metadata lacks a known `format`.
    let format = HashMap::from([("format".to_string(), "pt".to_string())]);
    let metadata = Metadata::new(Some(format), infos).map_err(|e| bad(&e))?;
    let mut header = serde_json::to_vec(&metadata).map_err(|e| bad(&e))?;
    // The data section starts 8-byte aligned, padded with spaces as the format specifies.
    header.resize(header.len().next_multiple_of(8), b' ');

    remove_dead_writers_leftovers(path);
    let tmp = temp_name(path, std::process::id());
    let written = (|| -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        let mut buf = Vec::new();
        for (_, _, values) in &tensors {
            buf.clear();
            values.extend_bytes(&mut buf);
            out.write_all(&buf)?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::io(path, e));
    }
    Ok(())
}

/// The temporary name of `path` while process `pid` writes it.
fn temp_name(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".tmp-{pid}"));
    PathBuf::from(name)
}

/// Deletes `path`'s temporary files left by writers that no longer run (killed mid-write).
fn remove_dead_writers_leftovers(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{name}.tmp-");
    for entry in entries.flatten() {
        let pid = entry
            .file_name()
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix)?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !anetrain_device::host::process_alive(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
