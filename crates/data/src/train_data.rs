//! What a run trains and validates on, as one type: token streams ([`Split`]) for
//! pretraining or fine-tuning examples ([`ExampleSplit`]). Both give a [`BatchSampler`] for
//! training and an [`EvalSource`] for validation, so the trainer never asks which it has.

use std::path::Path;
use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::example_batches::{ExampleEvalBatches, ExampleSampler};
use crate::finetune::{EncodeSummary, ExampleEncoder, MaskedTokens};
use crate::jsonl::{Example, ExampleFile, ExampleKind, ExampleSplits};
use crate::sampler::{Batch, EvalBatches, Sampler, SamplerState, Sampling};
use crate::split::Split;
use crate::stream::validate_vocab;

/// Draws training batches in a reproducible order; its [`SamplerState`] goes into checkpoints.
pub trait BatchSampler: Send {
    /// Fills `out` (from `Batch::new(batch, seq)`) with the next batch.
    fn next_batch(&mut self, out: &mut Batch) -> Result<()>;
    /// The position to save in a checkpoint.
    fn state(&self) -> SamplerState;
    /// Continues from a saved position.
    fn restore(&mut self, state: SamplerState) -> Result<()>;
    /// Samples (windows or examples) per epoch, recorded to refuse resuming on other data.
    fn num_samples(&self) -> usize;
}

/// One pass over validation data, in order; the last batch may be partial.
pub trait EvalSource: Send {
    /// Fills `out` with the next batch; `false` after the last one.
    fn next_batch(&mut self, out: &mut Batch) -> Result<bool>;
    /// Starts the pass over.
    fn rewind(&mut self);
    /// `(batch, seq)`: the [`Batch::new`] shape `next_batch` fills.
    fn shape(&self) -> (usize, usize);
}

impl BatchSampler for Sampler {
    fn next_batch(&mut self, out: &mut Batch) -> Result<()> {
        Sampler::next_batch(self, out)
    }
    fn state(&self) -> SamplerState {
        Sampler::state(self)
    }
    fn restore(&mut self, state: SamplerState) -> Result<()> {
        Sampler::restore(self, state)
    }
    fn num_samples(&self) -> usize {
        Sampler::num_samples(self)
    }
}

impl BatchSampler for ExampleSampler {
    fn next_batch(&mut self, out: &mut Batch) -> Result<()> {
        ExampleSampler::next_batch(self, out)
    }
    fn state(&self) -> SamplerState {
        ExampleSampler::state(self)
    }
    fn restore(&mut self, state: SamplerState) -> Result<()> {
        ExampleSampler::restore(self, state)
    }
    fn num_samples(&self) -> usize {
        ExampleSampler::num_examples(self)
    }
}

impl EvalSource for EvalBatches {
    fn next_batch(&mut self, out: &mut Batch) -> Result<bool> {
        EvalBatches::next_batch(self, out)
    }
    fn rewind(&mut self) {
        EvalBatches::rewind(self)
    }
    fn shape(&self) -> (usize, usize) {
        EvalBatches::shape(self)
    }
}

impl EvalSource for ExampleEvalBatches {
    fn next_batch(&mut self, out: &mut Batch) -> Result<bool> {
        ExampleEvalBatches::next_batch(self, out)
    }
    fn rewind(&mut self) {
        ExampleEvalBatches::rewind(self)
    }
    fn shape(&self) -> (usize, usize) {
        ExampleEvalBatches::shape(self)
    }
}

/// Encoded fine-tuning examples for training and, optionally, validation.
#[derive(Clone, Debug)]
pub struct ExampleSplit {
    /// What training batches are drawn from.
    pub train: Arc<Vec<MaskedTokens>>,
    /// What evaluation runs over, if anything.
    pub val: Option<Arc<Vec<MaskedTokens>>>,
}

impl ExampleSplit {
    /// Reads and encodes the examples at `data` — a `.jsonl` file, or an mlx-lm directory whose
    /// `train.jsonl` is trained on and whose `valid.jsonl` validates (`test.jsonl` is left
    /// alone) — with validation from `val_data` when given, else `valid.jsonl`, else the last
    /// `val_fraction` of the training examples. Examples are cut to `seq + 1` tokens; those left
    /// with no target that counts are dropped, since they would add nothing. The summary says
    /// how many were cut.
    pub fn open(
        data: &Path,
        val_data: Option<&Path>,
        val_fraction: f64,
        encoder: &ExampleEncoder<'_>,
        seq: usize,
    ) -> Result<(Self, EncodeSummary)> {
        let (train, valid) = if data.is_dir() {
            let splits = ExampleSplits::read_dir(data)?;
            (splits.train, splits.valid)
        } else {
            (ExampleFile::read(data)?, None)
        };
        let valid = match val_data {
            Some(path) => Some(ExampleFile::read(path)?),
            None => valid,
        };
        for file in std::iter::once(&train).chain(&valid) {
            check_maskable(file, encoder)?;
        }
        let (train_examples, val_examples): (&[Example], Option<&[Example]>) = match &valid {
            Some(v) => (&train.examples, Some(&v.examples)),
            None => hold_out(&train, val_fraction)?,
        };
        let mut summary = EncodeSummary::default();
        let mut encode =
            |examples: &[Example]| encode_counted(examples, encoder, seq, &mut summary);
        let train_encoded = encode(train_examples)?;
        if train_encoded.is_empty() {
            return Err(nothing_counts(&train.path, seq));
        }
        let val_encoded = val_examples.map(&mut encode).transpose()?;
        let split = ExampleSplit {
            train: Arc::new(train_encoded),
            val: val_encoded.filter(|v| !v.is_empty()).map(Arc::new),
        };
        Ok((split, summary))
    }
}

/// Refuses `--mask-prompt` on `{"text"}` examples, which have no prompt to mask (as mlx-lm).
pub(crate) fn check_maskable(file: &ExampleFile, encoder: &ExampleEncoder<'_>) -> Result<()> {
    if encoder.masks_prompt() && file.kind == ExampleKind::Text {
        return Err(DataError::Config(format!(
            "--mask-prompt needs prompts, but {} holds {{\"text\"}} examples; use \
             {{\"prompt\", \"completion\"}} or {{\"messages\"}} examples, or drop --mask-prompt",
            file.path.display()
        )));
    }
    Ok(())
}

/// `examples` encoded and cut to `seq + 1` tokens, without those left with no counted target
/// (they would add nothing); the cuts are added to `summary`.
pub(crate) fn encode_counted(
    examples: &[Example],
    encoder: &ExampleEncoder<'_>,
    seq: usize,
    summary: &mut EncodeSummary,
) -> Result<Vec<MaskedTokens>> {
    let (mut encoded, s) = encoder.encode_all(examples, seq + 1)?;
    summary.truncated += s.truncated;
    summary.without_targets += s.without_targets;
    encoded.retain(|e| e.counted() > 0);
    Ok(encoded)
}

/// The error for a file none of whose examples has a counted target within `seq`.
pub(crate) fn nothing_counts(path: &Path, seq: usize) -> DataError {
    DataError::Config(format!(
        "no example of {} has a token that counts in the loss within --seq {seq}; raise --seq, \
         or check the examples have completions",
        path.display()
    ))
}

/// The training examples and the last `val_fraction` of them (at least one when positive).
fn hold_out(file: &ExampleFile, val_fraction: f64) -> Result<(&[Example], Option<&[Example]>)> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(DataError::Config(format!(
            "--val-fraction {val_fraction} is not in [0, 1); pass e.g. 0.05, or 0 for no \
             validation"
        )));
    }
    let n = file.examples.len();
    if val_fraction == 0.0 {
        return Ok((&file.examples, None));
    }
    let n_val = ((n as f64 * val_fraction).ceil() as usize).max(1);
    if n_val >= n {
        return Err(DataError::Config(format!(
            "{} has only {n} examples, too few to hold out {val_fraction} of them for \
             validation; add examples, give --val-data (or a valid.jsonl), or pass \
             --val-fraction 0",
            file.path.display()
        )));
    }
    let (train, val) = file.examples.split_at(n - n_val);
    Ok((train, Some(val)))
}

/// A run's data: token streams or fine-tuning examples.
#[derive(Clone)]
pub enum TrainData {
    /// Windows of `seq + 1` tokens of streams, every target counting.
    Tokens(Split),
    /// One padded example per row, only its counted targets weighing.
    Examples(ExampleSplit),
}

impl From<Split> for TrainData {
    fn from(split: Split) -> Self {
        TrainData::Tokens(split)
    }
}

impl From<ExampleSplit> for TrainData {
    fn from(split: ExampleSplit) -> Self {
        TrainData::Examples(split)
    }
}

impl TrainData {
    /// Checks every token id of training and validation data against a vocabulary, naming the
    /// first one outside it.
    pub fn validate_vocab(&self, vocab_size: usize) -> Result<()> {
        match self {
            TrainData::Tokens(split) => {
                validate_vocab(split.train.as_ref(), vocab_size)?;
                split
                    .val
                    .as_ref()
                    .map_or(Ok(()), |v| validate_vocab(v.as_ref(), vocab_size))
            }
            TrainData::Examples(split) => {
                let sets = std::iter::once(("training", &split.train))
                    .chain(split.val.as_ref().map(|v| ("validation", v)));
                for (which, examples) in sets {
                    for (i, e) in examples.iter().enumerate() {
                        if let Some(p) = e.tokens.iter().position(|&t| t as usize >= vocab_size) {
                            return Err(DataError::TokenOutOfVocab {
                                id: e.tokens[p],
                                position: format!("token {p} of {which} example {i}"),
                                vocab_size,
                            });
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The training sampler over batches of `batch` rows of `seq + 1` tokens.
    pub fn sampler(
        &self,
        seq: usize,
        batch: usize,
        sampling: Sampling,
    ) -> Result<Box<dyn BatchSampler>> {
        Ok(match self {
            TrainData::Tokens(split) => {
                Box::new(Sampler::new(split.train.clone(), seq, batch, sampling)?)
            }
            TrainData::Examples(split) => Box::new(ExampleSampler::new(
                split.train.clone(),
                seq,
                batch,
                sampling,
            )?),
        })
    }

    /// The validation batches, `None` without validation data.
    pub fn validation(&self, seq: usize, batch: usize) -> Result<Option<Box<dyn EvalSource>>> {
        Ok(match self {
            TrainData::Tokens(Split { val: Some(v), .. }) => {
                Some(Box::new(EvalBatches::new(v.clone(), seq, batch)?))
            }
            TrainData::Examples(ExampleSplit { val: Some(v), .. }) => {
                Some(Box::new(ExampleEvalBatches::new(v.clone(), seq, batch)?))
            }
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::ByteTokenizer;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_data_dir_trains_on_train_and_validates_on_valid() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "train.jsonl",
            "{\"prompt\": \"a\", \"completion\": \"b\"}\n",
        );
        write(
            dir.path(),
            "valid.jsonl",
            "{\"prompt\": \"cc\", \"completion\": \"d\"}\n",
        );
        write(dir.path(), "test.jsonl", "not even json\n");
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, None, true).unwrap();
        let (split, summary) = ExampleSplit::open(dir.path(), None, 0.5, &enc, 8).unwrap();
        assert_eq!(summary, EncodeSummary::default());
        assert_eq!(
            split.train[0].tokens,
            [ByteTokenizer::BOS, 97, 98, ByteTokenizer::EOS]
        );
        let val = split.val.unwrap();
        assert_eq!(val[0].tokens[1..3], [99, 99]);
        assert_eq!(val[0].counted(), 2);
    }

    #[test]
    fn a_single_file_holds_out_its_last_examples_and_drops_target_less_ones() {
        let dir = tempfile::tempdir().unwrap();
        let lines: String = (0..4)
            .map(|i| {
                format!(
                    "{{\"prompt\": \"{}\", \"completion\": \"x\"}}\n",
                    "p".repeat(i * 4)
                )
            })
            .collect();
        let path = write(dir.path(), "all.jsonl", &lines);
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, None, true).unwrap();
        // seq 6: rows of 7 tokens; prompts of 8 and 12 bytes leave no completion.
        let (split, summary) = ExampleSplit::open(&path, None, 0.25, &enc, 6).unwrap();
        assert_eq!(summary.truncated, 2);
        assert_eq!(summary.without_targets, 2);
        assert_eq!(split.train.len(), 2);
        assert!(
            split.val.is_none(),
            "the held-out example had no targets left"
        );
        let long = write(
            dir.path(),
            "long.jsonl",
            &lines[lines.find('\n').unwrap() + 1..],
        );
        let err = ExampleSplit::open(&long, None, 0.0, &enc, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("raise --seq"), "{err}");
    }

    #[test]
    fn mask_prompt_on_text_examples_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.jsonl", "{\"text\": \"hello\"}\n");
        let tok = ByteTokenizer;
        let enc = ExampleEncoder::new(&tok, None, true).unwrap();
        let err = ExampleSplit::open(&path, None, 0.0, &enc, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--mask-prompt") && err.contains("t.jsonl"),
            "{err}"
        );
    }

    #[test]
    fn example_tokens_outside_the_vocabulary_are_named() {
        let split = ExampleSplit {
            train: Arc::new(vec![MaskedTokens {
                tokens: vec![1, 2, 300],
                counts: vec![false, true, true],
            }]),
            val: None,
        };
        let err = TrainData::from(split)
            .validate_vocab(258)
            .unwrap_err()
            .to_string();
        assert!(err.contains("token 2 of training example 0"), "{err}");
    }
}
