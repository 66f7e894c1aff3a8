//! A run's data from the `--data`, `--val-data`, `--val-fraction` and `--mask-prompt`
//! spellings, so `train`, `eval` and the other front ends read them alike: JSON Lines become
//! fine-tuning examples rendered with the tokenizer's chat template, everything else token
//! streams.

use std::sync::Arc;

use crate::error::{DataError, Result};
use crate::example_batches::ExampleEvalBatches;
use crate::finetune::{EncodeSummary, ExampleEncoder, MaskedTokens};
use crate::jsonl::ExampleFile;
use crate::sampler::EvalBatches;
use crate::source::{DataSource, TokenizerSource};
use crate::split::Split;
use crate::stream::validate_vocab;
use crate::text_cache::TextOptions;
use crate::tokenizer::Tokenizer;
use crate::train_data::{
    check_maskable, encode_counted, nothing_counts, EvalSource, ExampleSplit, TrainData,
};

/// What a run reads its data with.
pub struct DataRequest<'a> {
    /// `--data`.
    pub data: &'a str,
    /// `--val-data`, if validation is separate.
    pub val_data: Option<&'a str>,
    /// Share held out for validation without `--val-data` (and, for examples, without a
    /// `valid.jsonl`).
    pub val_fraction: f64,
    /// `--mask-prompt`: only completion / assistant tokens count (examples only).
    pub mask_prompt: bool,
    /// Tokens per training row.
    pub seq: usize,
    /// Seed of synthetic data.
    pub seed: u64,
    /// The tokenizer and where it came from (the files beside it hold the chat template).
    pub tokenizer: Option<(&'a dyn Tokenizer, &'a TokenizerSource)>,
    /// Text caching and progress.
    pub text: &'a TextOptions<'a>,
}

/// The data opened, with the one-line truncation report for the user when examples were cut.
pub struct OpenedData {
    /// Training and validation data.
    pub data: TrainData,
    /// E.g. `3 examples were longer than 65 tokens and were truncated`.
    pub truncation: Option<String>,
}

impl DataRequest<'_> {
    /// Opens (and for examples reads, renders and tokenizes) the data; refuses `--mask-prompt`
    /// on token streams and examples without a tokenizer before any work.
    pub fn open(&self) -> Result<OpenedData> {
        let train = DataSource::parse(self.data)?;
        let val = self.val_data.map(DataSource::parse).transpose()?;
        let DataSource::Examples(path) = &train else {
            self.check_no_mask()?;
            if let Some(DataSource::Examples(p)) = &val {
                return Err(mixed(p));
            }
            return self.open_streams(&train, val.as_ref());
        };
        let val_path = match &val {
            None => None,
            Some(DataSource::Examples(p)) => Some(p.as_path()),
            Some(_) => return Err(mixed(path)),
        };
        let encoder = self.encoder()?;
        let (split, summary) =
            ExampleSplit::open(path, val_path, self.val_fraction, &encoder, self.seq)?;
        Ok(OpenedData {
            data: split.into(),
            truncation: summary.message(self.seq + 1),
        })
    }

    /// `--data` as one evaluation pass in batches of `batch` (`val_data` and `val_fraction`
    /// are not used): every example of a `.jsonl` file, or every window of a token stream, its
    /// tokens checked against `vocab_size`; with the truncation line when examples were cut.
    pub fn open_eval(
        &self,
        batch: usize,
        vocab_size: usize,
    ) -> Result<(Box<dyn EvalSource>, Option<String>)> {
        let source = DataSource::parse(self.data)?;
        if !matches!(source, DataSource::Examples(_)) {
            self.check_no_mask()?;
            let tokenizer = self.tokenizer.map(|(t, _)| t);
            let stream = source.open_with(tokenizer, self.seed, self.text)?;
            validate_vocab(stream.as_ref(), vocab_size)?;
            return Ok((Box::new(EvalBatches::new(stream, self.seq, batch)?), None));
        }
        let (examples, summary) = self.open_examples_file()?;
        let examples = Arc::new(examples);
        TrainData::from(ExampleSplit {
            train: examples.clone(),
            val: None,
        })
        .validate_vocab(vocab_size)?;
        let batches = ExampleEvalBatches::new(examples, self.seq, batch)?;
        Ok((Box::new(batches), summary.message(self.seq + 1)))
    }

    /// Refuses `--mask-prompt` on a token stream, where there is no prompt to mask.
    fn check_no_mask(&self) -> Result<()> {
        if self.mask_prompt {
            return Err(DataError::Config(format!(
                "--mask-prompt needs fine-tuning examples, but --data {} is a token stream; give \
                 a .jsonl file (or a directory with train.jsonl) of prompt/completion or \
                 messages examples, or drop --mask-prompt",
                self.data
            )));
        }
        Ok(())
    }

    /// Every example of one `.jsonl` file, cut to `seq + 1` tokens, with those left without
    /// counted targets dropped.
    fn open_examples_file(&self) -> Result<(Vec<MaskedTokens>, EncodeSummary)> {
        let path = match DataSource::parse(self.data)? {
            DataSource::Examples(path) if path.is_file() => path,
            DataSource::Examples(path) => {
                return Err(DataError::Config(format!(
                    "{} is a directory of examples; pass the .jsonl file to use, e.g. {}",
                    path.display(),
                    path.join("valid.jsonl").display()
                )))
            }
            _ => {
                return Err(DataError::Config(format!(
                    "{} is not a .jsonl file of fine-tuning examples",
                    self.data
                )))
            }
        };
        let file = ExampleFile::read(&path)?;
        let encoder = self.encoder()?;
        check_maskable(&file, &encoder)?;
        let mut summary = EncodeSummary::default();
        let examples = encode_counted(&file.examples, &encoder, self.seq, &mut summary)?;
        if examples.is_empty() {
            return Err(nothing_counts(&path, self.seq));
        }
        Ok((examples, summary))
    }

    fn encoder(&self) -> Result<ExampleEncoder<'_>> {
        let Some((tokenizer, source)) = self.tokenizer else {
            return Err(DataError::Config(format!(
                "--data {} holds fine-tuning examples, which are rendered and tokenized with \
                 the model's tokenizer, but there is none; --init-from a model directory with a \
                 tokenizer.json, or pass --tokenizer",
                self.data
            )));
        };
        ExampleEncoder::new(tokenizer, source.chat_template()?, self.mask_prompt)
    }

    fn open_streams(&self, train: &DataSource, val: Option<&DataSource>) -> Result<OpenedData> {
        let tokenizer = self.tokenizer.map(|(t, _)| t);
        // Which flag a failure belongs to, since both may name files.
        let open = |flag: &str, spec: &str, source: &DataSource| {
            source
                .open_with(tokenizer, self.seed, self.text)
                .map_err(|e| DataError::Config(format!("{flag} {spec}: {e}")))
        };
        let train = open("--data", self.data, train)?;
        let split = match (val, self.val_data) {
            (Some(v), Some(spec)) => Split::separate(train, open("--val-data", spec, v)?),
            _ => Split::by_fraction(train, self.val_fraction, self.seq)?,
        };
        Ok(OpenedData {
            data: split.into(),
            truncation: None,
        })
    }
}

fn mixed(path: &std::path::Path) -> DataError {
    DataError::Config(format!(
        "{} is fine-tuning examples but the other of --data/--val-data is a token stream; give \
         both as .jsonl examples or both as token data",
        path.display()
    ))
}
