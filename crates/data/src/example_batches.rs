//! Batches of fine-tuning examples: one example per row, padded to `seq + 1` tokens, with the
//! per-target weights of [`Batch::target_weights`].

use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::finetune::{check_fits, MaskedTokens};
use crate::rng::SplitMix64;
use crate::sampler::{Batch, SamplerState, Sampling};

/// Draws training batches of examples in a reproducible order, wrapping into the next epoch
/// (and its order) when one ends; its [`SamplerState`] goes into checkpoints.
pub struct ExampleSampler {
    examples: Arc<Vec<MaskedTokens>>,
    seq: usize,
    batch: usize,
    sampling: Sampling,
    state: SamplerState,
    order: Vec<usize>,
}

impl ExampleSampler {
    /// A sampler at the start of epoch 0; every example must already fit `seq + 1` tokens.
    pub fn new(
        examples: Arc<Vec<MaskedTokens>>,
        seq: usize,
        batch: usize,
        sampling: Sampling,
    ) -> Result<Self> {
        check_examples(&examples, seq, batch)?;
        let mut sampler = ExampleSampler {
            examples,
            seq,
            batch,
            sampling,
            state: SamplerState::default(),
            order: Vec::new(),
        };
        sampler.build_order();
        Ok(sampler)
    }

    /// Examples per epoch.
    pub fn num_examples(&self) -> usize {
        self.examples.len()
    }

    /// The position to save in a checkpoint.
    pub fn state(&self) -> SamplerState {
        self.state
    }

    /// Continues from a saved position; one past this data's examples is an error.
    pub fn restore(&mut self, state: SamplerState) -> Result<()> {
        if state.cursor >= self.examples.len() {
            return Err(DataError::Config(format!(
                "saved data position (epoch {}, example {}) is past this data's {} examples; \
                 resume with the data of the original run",
                state.epoch,
                state.cursor,
                self.examples.len()
            )));
        }
        self.state = state;
        self.build_order();
        Ok(())
    }

    /// Fills `out` (from `Batch::new(batch, seq)`) with the next `batch` examples.
    pub fn next_batch(&mut self, out: &mut Batch) -> Result<()> {
        out.check(self.batch, self.seq)?;
        for r in 0..self.batch {
            let index = match self.sampling {
                Sampling::Sequential => self.state.cursor,
                Sampling::Shuffle { .. } => self.order[self.state.cursor],
            };
            out.fill_example_row(r, &self.examples[index])?;
            self.state.cursor += 1;
            if self.state.cursor == self.examples.len() {
                self.state.cursor = 0;
                self.state.epoch += 1;
                self.build_order();
            }
        }
        out.set_rows(self.batch);
        Ok(())
    }

    fn build_order(&mut self) {
        if let Sampling::Shuffle { seed } = self.sampling {
            self.order.clear();
            self.order.extend(0..self.examples.len());
            SplitMix64::derive(seed, self.state.epoch).shuffle(&mut self.order);
        }
    }
}

/// Every example of a (validation) set once, in order; the last batch may be partial.
pub struct ExampleEvalBatches {
    examples: Arc<Vec<MaskedTokens>>,
    seq: usize,
    batch: usize,
    next: usize,
}

impl ExampleEvalBatches {
    /// Batches of up to `batch` examples in rows of `seq + 1` tokens.
    pub fn new(examples: Arc<Vec<MaskedTokens>>, seq: usize, batch: usize) -> Result<Self> {
        check_examples(&examples, seq, batch)?;
        Ok(ExampleEvalBatches {
            examples,
            seq,
            batch,
            next: 0,
        })
    }

    /// Fills `out` with the next examples; `false` (and `out` empty) after the last one.
    pub fn next_batch(&mut self, out: &mut Batch) -> Result<bool> {
        out.check(self.batch, self.seq)?;
        let rows = self.batch.min(self.examples.len() - self.next);
        for r in 0..rows {
            out.fill_example_row(r, &self.examples[self.next + r])?;
        }
        self.next += rows;
        out.set_rows(rows);
        Ok(rows > 0)
    }

    /// Starts the pass over from the first example.
    pub fn rewind(&mut self) {
        self.next = 0;
    }

    /// `(batch, seq)`: the [`Batch::new`] shape [`ExampleEvalBatches::next_batch`] fills.
    pub fn shape(&self) -> (usize, usize) {
        (self.batch, self.seq)
    }
}

fn check_examples(examples: &[MaskedTokens], seq: usize, batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(DataError::Config(
            "batch size is 0; pass --batch of at least 1".into(),
        ));
    }
    if examples.is_empty() {
        return Err(DataError::Config(
            "there are no fine-tuning examples; add lines to the .jsonl file".into(),
        ));
    }
    examples.iter().try_for_each(|e| check_fits(e, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(tokens: &[u32], counts: &[bool]) -> MaskedTokens {
        MaskedTokens {
            tokens: tokens.to_vec(),
            counts: counts.to_vec(),
        }
    }

    #[test]
    fn rows_are_padded_and_padding_weighs_nothing() {
        let examples = Arc::new(vec![
            example(&[1, 5, 6, 2], &[false, false, true, true]),
            example(&[1, 7], &[false, true]),
        ]);
        let mut batches = ExampleEvalBatches::new(examples, 4, 2).unwrap();
        let mut b = Batch::new(2, 4);
        assert!(batches.next_batch(&mut b).unwrap());
        assert_eq!(b.row(0), [1, 5, 6, 2, 0]);
        assert_eq!(b.target_weights(0).unwrap(), [0.0, 1.0, 1.0, 0.0]);
        assert_eq!(b.row(1), [1, 7, 0, 0, 0]);
        assert_eq!(b.target_weights(1).unwrap(), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(b.counted_targets(), 3);
        assert!(!batches.next_batch(&mut b).unwrap());
    }

    #[test]
    fn training_order_is_seeded_and_resumable() {
        let examples: Vec<MaskedTokens> = (0..5)
            .map(|i| example(&[i, i + 10], &[false, true]))
            .collect();
        let examples = Arc::new(examples);
        let sampling = Sampling::Shuffle { seed: 3 };
        let mut a = ExampleSampler::new(examples.clone(), 2, 2, sampling).unwrap();
        let mut b = Batch::new(2, 2);
        let mut firsts = Vec::new();
        for _ in 0..3 {
            a.next_batch(&mut b).unwrap();
            firsts.extend([b.row(0)[0], b.row(1)[0]]);
        }
        let mut seen = firsts[..5].to_vec();
        seen.sort();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        let mut resumed = ExampleSampler::new(examples.clone(), 2, 2, sampling).unwrap();
        let mut c = ExampleSampler::new(examples, 2, 2, sampling).unwrap();
        c.next_batch(&mut b).unwrap();
        resumed.restore(c.state()).unwrap();
        resumed.next_batch(&mut b).unwrap();
        assert_eq!([b.row(0)[0], b.row(1)[0]], firsts[2..4]);
    }

    #[test]
    fn an_example_longer_than_a_row_is_refused() {
        let err = ExampleSampler::new(
            Arc::new(vec![example(&[1, 2, 3, 4], &[false; 4])]),
            2,
            1,
            Sampling::Sequential,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("--seq 2") && err.contains("truncate"), "{err}");
    }
}
