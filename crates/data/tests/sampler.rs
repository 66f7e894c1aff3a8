//! Batching behaviour: the sample formula, shuffle permutations, resume and evaluation passes.

use anetrain_data::{
    Batch, EvalBatches, Sampler, SamplerState, Sampling, Split, TokenStream, Tokens,
};
use std::sync::Arc;

/// A stream whose token at position k is k, so every row reveals where it was read from.
fn positions(len: u32) -> Arc<dyn TokenStream> {
    Arc::new(Tokens::new((0..len).collect()))
}

/// The sample index of a row read from [`positions`], checked against the window formula.
fn sample_of(row: &[u32], seq: usize) -> usize {
    let start = row[0] as usize;
    assert_eq!(
        start % seq,
        0,
        "row does not start at a sample boundary: {row:?}"
    );
    let expected: Vec<u32> = (start as u32..(start + seq + 1) as u32).collect();
    assert_eq!(row, expected.as_slice());
    start / seq
}

/// The sample indices of the next `batches` batches.
fn draw(sampler: &mut Sampler, batch: usize, seq: usize, batches: usize) -> Vec<usize> {
    let mut out = Batch::new(batch, seq);
    let mut indices = Vec::new();
    for _ in 0..batches {
        sampler.next_batch(&mut out).unwrap();
        assert_eq!(out.rows(), batch);
        indices.extend((0..batch).map(|r| sample_of(out.row(r), seq)));
    }
    indices
}

#[test]
fn sequential_takes_sample_i_from_i_times_seq_and_wraps_after_the_last_full_sample() {
    // 45 tokens, seq 8: samples are tokens[8i .. 8i + 9) for i < (45 - 1) / 8 = 5.
    let seq = 8;
    let mut s = Sampler::new(positions(45), seq, 3, Sampling::Sequential).unwrap();
    assert_eq!(s.num_samples(), 5);
    let mut out = Batch::new(3, seq);
    s.next_batch(&mut out).unwrap();
    for r in 0..3 {
        let start = (r * seq) as u32;
        let expected_inputs: Vec<u32> = (start..start + seq as u32).collect();
        let expected_targets: Vec<u32> = (start + 1..start + seq as u32 + 1).collect();
        assert_eq!(out.inputs(r), expected_inputs.as_slice());
        assert_eq!(out.targets(r), expected_targets.as_slice());
    }
    // Batches straddle the epoch boundary: 3, 4, then 0, 1, 2, 3 again.
    let next = draw(&mut s, 3, seq, 2);
    assert_eq!(next, vec![3, 4, 0, 1, 2, 3]);
    assert_eq!(
        s.state(),
        SamplerState {
            epoch: 1,
            cursor: 4
        }
    );
}

#[test]
fn shuffle_is_a_permutation_per_epoch_and_changes_across_epochs() {
    let (seq, n) = (4, 60);
    let mut s = Sampler::new(positions(n * 4 + 1), seq, 1, Sampling::Shuffle { seed: 9 }).unwrap();
    let epoch0 = draw(&mut s, 1, seq, n as usize);
    let epoch1 = draw(&mut s, 1, seq, n as usize);
    let all: Vec<usize> = (0..n as usize).collect();
    for epoch in [&epoch0, &epoch1] {
        let mut sorted = epoch.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, all);
    }
    assert_ne!(epoch0, all, "epoch 0 was not shuffled");
    assert_ne!(epoch0, epoch1, "epochs share one order");
}

#[test]
fn shuffle_is_deterministic_per_seed_and_differs_across_seeds() {
    let order = |seed| {
        let mut s = Sampler::new(positions(401), 4, 5, Sampling::Shuffle { seed }).unwrap();
        draw(&mut s, 5, 4, 20)
    };
    assert_eq!(order(1), order(1));
    assert_ne!(order(1), order(2));
}

#[test]
fn resuming_from_a_saved_state_reproduces_the_uninterrupted_batches() {
    for sampling in [Sampling::Sequential, Sampling::Shuffle { seed: 3 }] {
        let (seq, batch) = (5, 3);
        // 23 samples, so batches of 3 cross epoch boundaries at different offsets.
        let stream = positions(23 * 5 + 1);
        let mut whole = Sampler::new(stream.clone(), seq, batch, sampling).unwrap();
        let expected = draw(&mut whole, batch, seq, 30);

        let mut first = Sampler::new(stream.clone(), seq, batch, sampling).unwrap();
        let mut got = draw(&mut first, batch, seq, 17);
        // Through JSON, as a checkpoint stores it.
        let saved = serde_json::to_string(&first.state()).unwrap();
        let state: SamplerState = serde_json::from_str(&saved).unwrap();
        let mut resumed = Sampler::new(stream, seq, batch, sampling).unwrap();
        resumed.restore(state).unwrap();
        got.extend(draw(&mut resumed, batch, seq, 13));
        assert_eq!(got, expected, "{sampling:?}");
    }
}

#[test]
fn restoring_a_position_past_the_data_is_an_error() {
    let mut s = Sampler::new(positions(41), 8, 1, Sampling::Sequential).unwrap();
    let err = s
        .restore(SamplerState {
            epoch: 2,
            cursor: 5,
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("5 samples") && err.contains("--seq 8"),
        "{err}"
    );
}

#[test]
fn sampling_config_serializes_readably() {
    let json = serde_json::to_string(&Sampling::Shuffle { seed: 7 }).unwrap();
    assert_eq!(json, r#"{"kind":"shuffle","seed":7}"#);
    let back: Sampling = serde_json::from_str(r#"{"kind":"sequential"}"#).unwrap();
    assert_eq!(back, Sampling::Sequential);
}

#[test]
fn too_little_data_and_mismatched_buffers_are_errors() {
    let err = Sampler::new(positions(8), 8, 1, Sampling::Sequential)
        .err()
        .unwrap();
    assert!(err.to_string().contains("--seq 8"), "{err}");
    let mut s = Sampler::new(positions(100), 8, 2, Sampling::Sequential).unwrap();
    let err = s.next_batch(&mut Batch::new(2, 4)).unwrap_err().to_string();
    assert!(err.contains("Batch::new(2, 8)"), "{err}");
}

#[test]
fn evaluation_visits_every_validation_sample_once_in_order() {
    let seq = 6;
    let split = Split::by_fraction(positions(200), 0.25, seq).unwrap();
    let val = split.val.unwrap();
    let first_val_token = val.get(0..1).unwrap()[0] as usize;
    let mut eval = EvalBatches::new(val, seq, 4).unwrap();
    // 200 tokens: 33 samples, ceil(33 * 0.25) = 9 held out, a final batch of 1.
    assert_eq!(eval.num_samples(), 9);
    let mut out = Batch::new(4, seq);
    for pass in 0..2 {
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while eval.next_batch(&mut out).unwrap() {
            sizes.push(out.rows());
            seen.extend((0..out.rows()).map(|r| sample_of(out.row(r), seq)));
        }
        assert_eq!(out.rows(), 0);
        assert_eq!(sizes, vec![4, 4, 1], "pass {pass}");
        let expected: Vec<usize> = (first_val_token / seq..first_val_token / seq + 9).collect();
        assert_eq!(seen, expected);
        eval.rewind();
    }
    // Training samples end where validation starts, and together they cover all 33.
    let train_samples = anetrain_data::num_samples(split.train.len(), seq).unwrap();
    assert_eq!(train_samples * seq, first_val_token);
    assert_eq!(train_samples + eval.num_samples(), 33);
}

#[test]
fn batches_from_rows_keep_their_weights_and_refuse_bad_shapes() {
    let rows = vec![vec![1, 2, 3], vec![4, 5, 6]];
    let weights = vec![vec![1.0, 0.0], vec![0.0, 0.0]];
    let b = Batch::from_rows(&rows, Some(&weights)).unwrap();
    assert_eq!((b.rows(), b.seq(), b.counted_targets()), (2, 2, 1));
    assert_eq!(b.targets(1), [5, 6]);
    assert_eq!(b.target_weights(0).unwrap(), [1.0, 0.0]);
    assert_eq!(Batch::from_rows(&rows, None).unwrap().counted_targets(), 4);
    let err = |rows: &[Vec<u32>], w: Option<&[Vec<f32>]>| {
        Batch::from_rows(rows, w).unwrap_err().to_string()
    };
    assert!(err(&[vec![1]], None).contains("at least 2 tokens"));
    assert!(err(&[vec![1, 2], vec![1]], None).contains("row 1 has 1 tokens"));
    assert!(err(&rows, Some(&[vec![1.0, 1.0]])).contains("1 rows of weights"));
    assert!(err(&rows, Some(&[vec![1.0], vec![1.0]])).contains("one weight per target"));
    assert!(err(&rows, Some(&[vec![0.5, 1.0], vec![1.0, 1.0]])).contains("0 (ignored) or 1"));
}
