//! Deterministic batching: which `seq + 1`-token windows of a stream go into each batch.
//!
//! A stream of `len` tokens holds `n = (len - 1) / seq` samples; sample `i` is
//! `tokens[i*seq .. i*seq + seq + 1)`, whose first `seq` tokens are the inputs and last `seq`
//! the targets (the inputs shifted by one). Samples do not overlap except for that one shared
//! token, and the trailing `(len - 1) % seq` tokens are never used.

use crate::error::{DataError, Result};
use crate::finetune::{check_fits, MaskedTokens};
use crate::rng::SplitMix64;
use crate::stream::TokenStream;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The order in which samples are visited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Sampling {
    /// Samples `0, 1, 2, ...` in stream order; after the last full sample the next epoch starts
    /// again at sample 0 (the leftover tail shorter than a sample is skipped).
    Sequential,
    /// Each epoch visits every sample once in a permutation derived from `(seed, epoch)` alone,
    /// so any epoch's order can be rebuilt without replaying the ones before it.
    Shuffle {
        /// The run's data seed.
        seed: u64,
    },
}

/// Where a [`Sampler`] stands: saved into checkpoints as JSON so a resumed run draws exactly
/// the batches the uninterrupted run would have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerState {
    /// Completed passes over the samples.
    pub epoch: u64,
    /// Position within the current epoch's order of the next sample to take.
    pub cursor: usize,
}

/// A reusable `[rows][seq + 1]` buffer of token windows, allocated once, with optional
/// `[rows][seq]` per-target loss weights for fine-tuning examples.
#[derive(Clone, Debug)]
pub struct Batch {
    seq: usize,
    capacity: usize,
    rows: usize,
    tokens: Vec<u32>,
    /// `None` for language-model windows, where every target counts.
    weights: Option<Vec<f32>>,
}

impl Batch {
    /// A buffer for up to `batch` windows of `seq + 1` tokens.
    pub fn new(batch: usize, seq: usize) -> Self {
        Batch {
            seq,
            capacity: batch,
            rows: 0,
            tokens: vec![0; batch * (seq + 1)],
            weights: None,
        }
    }

    /// A batch holding `rows` (each `seq + 1` tokens) and, when given, `[rows][seq]` target
    /// weights, each 0 (ignored) or 1 (counts): for callers that have their rows already.
    pub fn from_rows(rows: &[Vec<u32>], weights: Option<&[Vec<f32>]>) -> Result<Self> {
        let width = rows.first().map_or(0, Vec::len);
        if width < 2 {
            return Err(DataError::Config(
                "a batch needs at least one row of at least 2 tokens (inputs row[..seq], \
                 targets row[1..])"
                    .into(),
            ));
        }
        let seq = width - 1;
        let mut batch = Batch::new(rows.len(), seq);
        for (r, row) in rows.iter().enumerate() {
            if row.len() != width {
                return Err(DataError::Config(format!(
                    "row {r} has {} tokens but row 0 has {width}; every row of a batch needs the \
                     same length",
                    row.len()
                )));
            }
            batch.tokens[r * width..(r + 1) * width].copy_from_slice(row);
        }
        if let Some(weights) = weights {
            if weights.len() != rows.len() {
                return Err(DataError::Config(format!(
                    "{} rows of weights for {} rows of tokens; give one weight row per token row",
                    weights.len(),
                    rows.len()
                )));
            }
            let mut flat = Vec::with_capacity(rows.len() * seq);
            for (r, w) in weights.iter().enumerate() {
                if w.len() != seq {
                    return Err(DataError::Config(format!(
                        "weight row {r} has {} entries but the rows have {seq} targets; give \
                         one weight per target",
                        w.len()
                    )));
                }
                if let Some(bad) = w.iter().find(|&&x| x != 0.0 && x != 1.0) {
                    return Err(DataError::Config(format!(
                        "weight row {r} holds {bad}; a target weight is 0 (ignored) or 1 \
                         (counts)"
                    )));
                }
                flat.extend_from_slice(w);
            }
            batch.weights = Some(flat);
        }
        batch.rows = rows.len();
        Ok(batch)
    }

    /// Loss weights of row `r`'s targets (1 counts, 0 is prompt or padding), or `None` when
    /// every target counts. The batch loss is `Σ w·CE / Σ w` over all rows, so each counted
    /// token weighs the same however the examples are padded.
    pub fn target_weights(&self, r: usize) -> Option<&[f32]> {
        self.weights
            .as_ref()
            .map(|w| &w[r * self.seq..(r + 1) * self.seq])
    }

    /// Targets that count in the loss over the filled rows (the loss's denominator).
    pub fn counted_targets(&self) -> usize {
        match &self.weights {
            None => self.rows * self.seq,
            Some(w) => w[..self.rows * self.seq]
                .iter()
                .filter(|&&x| x > 0.0)
                .count(),
        }
    }

    /// Rows filled by the last call (fewer than the capacity only for a final evaluation batch).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Sequence length (tokens of input per row).
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// Window `r` (`r < rows()`): `seq + 1` tokens.
    pub fn row(&self, r: usize) -> &[u32] {
        let width = self.seq + 1;
        &self.tokens[r * width..(r + 1) * width]
    }

    /// Inputs of row `r`: its first `seq` tokens.
    pub fn inputs(&self, r: usize) -> &[u32] {
        &self.row(r)[..self.seq]
    }

    /// Targets of row `r`: its last `seq` tokens (the inputs shifted by one).
    pub fn targets(&self, r: usize) -> &[u32] {
        &self.row(r)[1..]
    }

    fn check_shape(&self, batch: usize, seq: usize) -> Result<()> {
        if self.seq != seq || self.capacity < batch {
            return Err(DataError::Config(format!(
                "batch buffer is {}x{} but the sampler fills {batch}x{seq}; create it with \
                 Batch::new({batch}, {seq})",
                self.capacity, self.seq
            )));
        }
        Ok(())
    }

    /// Reads sample `index` of `stream` into row `r`.
    fn fill_row(&mut self, r: usize, stream: &dyn TokenStream, index: usize) -> Result<()> {
        self.weights = None;
        let width = self.seq + 1;
        let row = &mut self.tokens[r * width..(r + 1) * width];
        stream.read(index * self.seq, row)
    }
}

impl Batch {
    /// Writes `example` into row `r`, padded with token 0 at weight 0 to `seq + 1` tokens.
    pub(crate) fn fill_example_row(&mut self, r: usize, example: &MaskedTokens) -> Result<()> {
        check_fits(example, self.seq)?;
        let (seq, capacity) = (self.seq, self.capacity);
        let width = seq + 1;
        let row = &mut self.tokens[r * width..(r + 1) * width];
        row.fill(0);
        row[..example.tokens.len()].copy_from_slice(&example.tokens);
        let weights = self
            .weights
            .get_or_insert_with(|| vec![0.0; capacity * seq]);
        for (t, w) in weights[r * seq..(r + 1) * seq].iter_mut().enumerate() {
            *w = if example.counts.get(t + 1) == Some(&true) {
                1.0
            } else {
                0.0
            };
        }
        Ok(())
    }

    /// Sets how many rows the last fill wrote.
    pub(crate) fn set_rows(&mut self, rows: usize) {
        self.rows = rows;
    }

    /// Checks this buffer is `batch × seq`.
    pub(crate) fn check(&self, batch: usize, seq: usize) -> Result<()> {
        self.check_shape(batch, seq)
    }
}

/// Number of samples of `seq + 1` tokens in `len` tokens, or an error saying what is too small.
pub fn num_samples(len: usize, seq: usize) -> Result<usize> {
    if seq == 0 {
        return Err(DataError::Config(
            "sequence length is 0; pass --seq of at least 1".into(),
        ));
    }
    let n = len.saturating_sub(1) / seq;
    if n == 0 {
        return Err(DataError::Config(format!(
            "the data has {len} tokens, fewer than one sample of --seq {seq} + 1; use more data \
             or a shorter --seq"
        )));
    }
    Ok(n)
}

/// Draws training batches from a token stream in a reproducible order.
pub struct Sampler {
    stream: Arc<dyn TokenStream>,
    seq: usize,
    batch: usize,
    sampling: Sampling,
    n_samples: usize,
    state: SamplerState,
    /// The current epoch's sample order (shuffle only; empty for sequential).
    order: Vec<usize>,
}

impl Sampler {
    /// A sampler at the start of epoch 0 over `stream`, filling `batch` rows of `seq + 1`.
    pub fn new(
        stream: Arc<dyn TokenStream>,
        seq: usize,
        batch: usize,
        sampling: Sampling,
    ) -> Result<Self> {
        if batch == 0 {
            return Err(DataError::Config(
                "batch size is 0; pass --batch of at least 1".into(),
            ));
        }
        let n_samples = num_samples(stream.len(), seq)?;
        let mut sampler = Sampler {
            stream,
            seq,
            batch,
            sampling,
            n_samples,
            state: SamplerState::default(),
            order: Vec::new(),
        };
        sampler.build_order();
        Ok(sampler)
    }

    /// Number of samples per epoch.
    pub fn num_samples(&self) -> usize {
        self.n_samples
    }

    /// The position to save in a checkpoint.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Continues from a saved position. A cursor past this data's sample count means the
    /// checkpoint belongs to other data or another `--seq`, which is an error.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.cursor >= self.n_samples {
            return Err(DataError::Config(format!(
                "saved data position (epoch {}, sample {}) is past this data's {} samples of \
                 --seq {}; resume with the dataset and --seq of the original run",
                state.epoch, state.cursor, self.n_samples, self.seq
            )));
        }
        self.state = state;
        self.build_order();
        Ok(())
    }

    /// Fills `out` with the next `batch` samples, moving to the next epoch (and its order) when
    /// one ends, even in the middle of a batch. `out` must come from `Batch::new(batch, seq)`.
    pub fn next_batch(&mut self, out: &mut Batch) -> Result<()> {
        out.check_shape(self.batch, self.seq)?;
        for r in 0..self.batch {
            let index = match self.sampling {
                Sampling::Sequential => self.state.cursor,
                Sampling::Shuffle { .. } => self.order[self.state.cursor],
            };
            out.fill_row(r, self.stream.as_ref(), index)?;
            self.state.cursor += 1;
            if self.state.cursor == self.n_samples {
                self.state.cursor = 0;
                self.state.epoch += 1;
                self.build_order();
            }
        }
        out.rows = self.batch;
        Ok(())
    }

    /// Rebuilds `order` for the current epoch: O(n_samples), once per epoch.
    fn build_order(&mut self) {
        if let Sampling::Shuffle { seed } = self.sampling {
            self.order.clear();
            self.order.extend(0..self.n_samples);
            SplitMix64::derive(seed, self.state.epoch).shuffle(&mut self.order);
        }
    }
}

/// Every sample of a (validation) stream exactly once, in order, in batches; the last batch may
/// be partial ([`Batch::rows`] says how full).
pub struct EvalBatches {
    stream: Arc<dyn TokenStream>,
    seq: usize,
    batch: usize,
    n_samples: usize,
    next: usize,
}

impl EvalBatches {
    /// Batches of up to `batch` samples of `seq + 1` tokens over `stream`.
    pub fn new(stream: Arc<dyn TokenStream>, seq: usize, batch: usize) -> Result<Self> {
        if batch == 0 {
            return Err(DataError::Config(
                "batch size is 0; pass --batch of at least 1".into(),
            ));
        }
        let n_samples = num_samples(stream.len(), seq)?;
        Ok(EvalBatches {
            stream,
            seq,
            batch,
            n_samples,
            next: 0,
        })
    }

    /// Number of samples one pass covers.
    pub fn num_samples(&self) -> usize {
        self.n_samples
    }

    /// Fills `out` with the next samples; returns `false` (and leaves `out` empty) after the
    /// last one. Call [`EvalBatches::rewind`] to evaluate again.
    pub fn next_batch(&mut self, out: &mut Batch) -> Result<bool> {
        out.check_shape(self.batch, self.seq)?;
        let rows = self.batch.min(self.n_samples - self.next);
        for r in 0..rows {
            out.fill_row(r, self.stream.as_ref(), self.next + r)?;
        }
        self.next += rows;
        out.rows = rows;
        Ok(rows > 0)
    }

    /// Starts the pass over from the first sample.
    pub fn rewind(&mut self) {
        self.next = 0;
    }

    /// `(batch, seq)`: the [`Batch::new`] shape [`EvalBatches::next_batch`] fills.
    pub fn shape(&self) -> (usize, usize) {
        (self.batch, self.seq)
    }
}
