//! Greedy generation through the binary on the CPU device (prefill and KV-cache decode in the
//! MIL decode kernels) gives exactly the tokens of the plain-Rust reference forward, which
//! recomputes the whole sequence for every new token and has no cache, chunks or kernels.

mod common;

use anetrain_model::hf::load_hf_dir;
use anetrain_model::reference;
use common::{arg, ok, shared, stdout};

/// Greedy continuation of `prompt` by `new` tokens with the reference forward; also returns
/// the smallest gap between the best and second-best logit, so a near tie is reported.
fn reference_greedy(dir: &std::path::Path, prompt: &[u32], new: usize) -> (Vec<u32>, f32) {
    let (config, params) = load_hf_dir(dir).unwrap();
    let (mut ids, mut min_gap) = (prompt.to_vec(), f32::INFINITY);
    for _ in 0..new {
        let logits = reference::forward(&config, &params, std::slice::from_ref(&ids)).unwrap();
        let v = logits.vocab;
        let last = &logits.data[(ids.len() - 1) * v..ids.len() * v];
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        min_gap = min_gap.min(last[order[0]] - last[order[1]]);
        ids.push(order[0] as u32);
    }
    (ids, min_gap)
}

/// Runs `generate --temperature 0 --device cpu` after `prompt` for up to `max_tokens` and
/// checks it prints exactly the reference forward's greedy continuation of `want_new` tokens.
fn check_greedy(
    fixture: &str,
    dir: &std::path::Path,
    prompt: &[u32],
    max_tokens: usize,
    want_new: usize,
) {
    let ids: Vec<String> = prompt.iter().map(|t| t.to_string()).collect();
    let o = ok(&[
        "generate",
        "--model",
        arg(dir),
        "--prompt-ids",
        &ids.join(","),
        "--max-tokens",
        &max_tokens.to_string(),
        "--temperature",
        "0",
        "--device",
        "cpu",
    ]);
    let got: Vec<u32> = stdout(&o)
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    let (want, gap) = reference_greedy(dir, prompt, want_new);
    assert_eq!(
        got,
        want,
        "{fixture}, {}-token prompt: the binary's greedy tokens differ from the reference \
         forward's (smallest top-2 logit gap {gap})",
        prompt.len()
    );
}

/// A `len`-token prompt of the fixtures' 256-token vocabulary, starting with BOS.
fn prompt_of(len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| if i == 0 { 1 } else { (i * 37 + 11) % 256 })
        .collect()
}

const FIXTURES: [&str; 3] = ["llama_mha", "llama_gqa_tied", "qwen3_gqa"];

#[test]
fn prompts_around_the_compiled_widths_decode_like_the_reference_shared() {
    for fixture in FIXTURES {
        let Some(dir) = shared(&format!("fixtures/{fixture}")) else {
            return;
        };
        // Longer than the ANE's 32-token chunk and than the 32-position cache bucket; exactly
        // a compiled prefill width (the CPU compiles power-of-two widths), then one more.
        for (len, new) in [(45, 12), (64, 6), (65, 6)] {
            check_greedy(fixture, &dir, &prompt_of(len), new, new);
        }
    }
}

#[test]
fn generation_runs_up_to_the_context_limit_like_the_reference_shared() {
    for fixture in FIXTURES {
        let Some(dir) = shared(&format!("fixtures/{fixture}")) else {
            return;
        };
        // The fixtures hold 128 positions: after 100 prompt tokens, 28 are fed back and the
        // 29th is predicted from a full cache, whatever --max-tokens asks for.
        check_greedy(fixture, &dir, &prompt_of(100), 40, 29);
    }
}

#[test]
fn cpu_greedy_decode_matches_the_reference_forward_shared() {
    for fixture in FIXTURES {
        let Some(dir) = shared(&format!("fixtures/{fixture}")) else {
            return;
        };
        // 5 + 40 tokens cross the ANE's 32-token chunk boundary.
        check_greedy(fixture, &dir, &[1, 17, 42, 99, 5], 40, 40);
    }
}
