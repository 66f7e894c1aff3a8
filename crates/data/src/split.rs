//! Train/validation split.

use crate::error::{DataError, Result};
use crate::sampler::num_samples;
use crate::stream::{TokenStream, Window};
use std::sync::Arc;

/// The share of samples held out for validation when no separate validation data is given
/// (`--val-fraction`).
pub const DEFAULT_VAL_FRACTION: f64 = 0.05;

/// Training data and, optionally, validation data that is never trained on.
#[derive(Clone)]
pub struct Split {
    /// What the sampler draws training batches from.
    pub train: Arc<dyn TokenStream>,
    /// What evaluation runs over, if anything.
    pub val: Option<Arc<dyn TokenStream>>,
}

impl Split {
    /// Separate training and validation sources (e.g. `train.bin` and `val.bin`).
    pub fn separate(train: Arc<dyn TokenStream>, val: Arc<dyn TokenStream>) -> Self {
        Split {
            train,
            val: Some(val),
        }
    }

    /// Holds out the last `val_fraction` of `stream`'s samples of `seq + 1` tokens (at least
    /// one sample when the fraction is positive; `0` means no validation).
    ///
    /// The cut is at a sample boundary `b = n_train * seq`: training is `[0, b + 1)` and
    /// validation `[b, len)`, so token `b` is both the last training target and the first
    /// validation input. No validation *target* is ever trained on, and validation keeps every
    /// one of its samples.
    pub fn by_fraction(
        stream: Arc<dyn TokenStream>,
        val_fraction: f64,
        seq: usize,
    ) -> Result<Self> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(DataError::Config(format!(
                "--val-fraction {val_fraction} is not in [0, 1); pass e.g. 0.05, or 0 for no \
                 validation"
            )));
        }
        if val_fraction == 0.0 {
            return Ok(Split {
                train: stream,
                val: None,
            });
        }
        let n = num_samples(stream.len(), seq)?;
        let n_val = ((n as f64 * val_fraction).ceil() as usize).max(1);
        if n_val >= n {
            return Err(DataError::Config(format!(
                "the data has only {n} samples of --seq {seq} + 1 tokens, too few to hold out \
                 {val_fraction} of them for validation; use more data, a shorter --seq, \
                 --val-fraction 0, or a separate validation file"
            )));
        }
        let boundary = (n - n_val) * seq;
        let len = stream.len();
        let train = Window::new(stream.clone(), 0..boundary + 1)?;
        let val = Window::new(stream, boundary..len)?;
        Ok(Split {
            train: Arc::new(train),
            val: Some(Arc::new(val)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Tokens;

    fn stream(len: u32) -> Arc<dyn TokenStream> {
        Arc::new(Tokens::new((0..len).collect()))
    }

    #[test]
    fn fraction_split_keeps_every_sample_and_never_trains_on_val_targets() {
        // 101 tokens, seq 10: 10 samples; 20% -> 2 validation samples starting at token 80.
        let split = Split::by_fraction(stream(101), 0.2, 10).unwrap();
        let val = split.val.unwrap();
        assert_eq!(split.train.len(), 81);
        assert_eq!(num_samples(split.train.len(), 10).unwrap(), 8);
        assert_eq!(val.get(0..1).unwrap(), vec![80]);
        assert_eq!(num_samples(val.len(), 10).unwrap(), 2);
        // The last training target is token 80; validation targets start at 81.
        assert_eq!(split.train.get(80..81).unwrap(), vec![80]);
    }

    #[test]
    fn small_fraction_still_holds_out_one_sample() {
        let split = Split::by_fraction(stream(101), 0.01, 10).unwrap();
        let val = split.val.unwrap();
        assert_eq!(num_samples(val.len(), 10).unwrap(), 1);
        assert_eq!(num_samples(split.train.len(), 10).unwrap(), 9);
    }

    #[test]
    fn zero_fraction_means_no_validation() {
        let split = Split::by_fraction(stream(50), 0.0, 10).unwrap();
        assert!(split.val.is_none());
        assert_eq!(split.train.len(), 50);
    }

    #[test]
    fn bad_fractions_and_tiny_data_are_errors_with_the_fix() {
        let err = Split::by_fraction(stream(101), 1.5, 10)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--val-fraction 1.5"), "{err}");
        // 11 tokens, seq 10: one sample, nothing left to train on.
        let err = Split::by_fraction(stream(11), 0.05, 10)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("only 1 samples") && err.contains("--val-fraction 0"),
            "{err}"
        );
    }
}
