//! `anetrain bench train` and `anetrain bench generate` end to end on the tiny model: what they
//! print and that the printed figures agree with each other and with FLOP counts worked out
//! here from the tiny model's shape. Timing itself is never asserted.

mod common;
use common::anetrain;

use std::process::Output;

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The number right before `unit` on the first line that contains `key`.
fn number_before(out: &str, key: &str, unit: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no line with `{key}` in:\n{out}"));
    let head = &line[..line
        .find(unit)
        .unwrap_or_else(|| panic!("no `{unit}` in `{line}`"))];
    let word = head.split([' ', '(']).rfind(|w| !w.is_empty()).unwrap();
    word.parse()
        .unwrap_or_else(|_| panic!("`{word}` before `{unit}` in `{line}` is not a number"))
}

#[test]
fn bench_train_reports_the_step_flops_and_the_gemm_fraction() {
    let o = anetrain(&[
        "bench", "train", "--model", "tiny", "--batch", "2", "--seq", "16", "--warmup", "1",
        "--steps", "2",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("1 warm-up + 2 timed steps"), "{out}");
    // The tiny preset: vocab 256, dim 64, 2 layers of 4 heads x 16, FFN 128, untied.
    let (v, d, l, h, q, s) = (256.0, 64.0, 2.0, 128.0, 64.0, 16.0);
    let layer = 4.0 * d * d + 3.0 * d * h + 2.0 * d;
    let all = 2.0 * v * d + l * layer + d;
    let attention = 12.0 * l * q * s;
    let tokens = 2.0 * s;
    let model = (6.0 * (all - v * d) + attention) * tokens;
    let peer = (6.0 * all + attention) * tokens;
    let printed_model = number_before(&out, "model FLOPs", "/step");
    let printed_peer = number_before(&out, "peer FLOPs", "/step");
    assert!(
        (printed_model / model - 1.0).abs() < 1e-3,
        "{printed_model} vs {model}"
    );
    assert!(
        (printed_peer / peer - 1.0).abs() < 1e-3,
        "{printed_peer} vs {peer}"
    );

    let ms = number_before(&out, "ms/step", "ms/step");
    let tokens_per_s = number_before(&out, "tokens/s", "tokens/s");
    assert!(
        (tokens_per_s - tokens / (ms / 1e3)).abs() <= 1.0 + 0.01 * tokens_per_s,
        "{out}"
    );
    let gflops = number_before(&out, "peer FLOPs", "GFLOP/s");
    let fraction = number_before(&out, "peer FLOPs", "x bare GEMM");
    let gemm = number_before(&out, "bare GEMM (classifier 32x64x256", "GFLOP/s");
    assert!(gemm > 0.0 && gflops > 0.0, "{out}");
    assert!(
        (fraction - gflops / gemm).abs() <= 0.01 + 0.02 * fraction,
        "{out}"
    );
    // Random initial weights give near-uniform predictions: the first loss is about ln(vocab).
    let first_loss = number_before(&out, "ms/step", "->");
    assert!((first_loss - 256f64.ln()).abs() < 0.1, "{out}");
    assert!(out.contains("peak RSS"), "{out}");
}

#[test]
fn bench_train_rejects_a_sequence_longer_than_the_model_before_building_anything() {
    let o = anetrain(&["bench", "train", "--model", "tiny", "--seq", "100"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("--seq 100") && err.contains("--seq 64 or less"),
        "{err}"
    );
    let o = anetrain(&[
        "bench", "train", "--model", "tiny", "--seq", "16", "--device", "gpu",
    ]);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'gpu'") && err.contains("reference"),
        "{err}"
    );
}

#[test]
fn bench_generate_reports_prefill_and_decode_for_each_prompt_length() {
    let o = anetrain(&[
        "bench",
        "generate",
        "--model",
        "tiny",
        "--prompts",
        "1,20",
        "--tokens",
        "5",
        "--runs",
        "2",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    for len in [1.0, 20.0] {
        let key = format!("prompt {len} tokens:");
        let ms = number_before(&out, &key, " ms (");
        let prefill_rate = number_before(&out, &key, "tok/s), decode");
        assert!(
            (prefill_rate - len / (ms / 1e3)).abs() <= 1.0 + 0.05 * prefill_rate,
            "{out}"
        );
        assert!(number_before(&out, &key, "tok/s over") > 0.0, "{out}");
        let line = out.lines().find(|l| l.contains(&key)).unwrap();
        assert!(line.ends_with("over 5 tokens"), "{line}");
    }
    assert!(out.contains("peak RSS"), "{out}");
}

#[test]
fn bench_generate_rejects_prompts_that_do_not_fit_the_model() {
    let o = anetrain(&[
        "bench",
        "generate",
        "--model",
        "tiny",
        "--prompts",
        "60",
        "--tokens",
        "10",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("max_seq_len 64") && err.contains("shorten --prompts or --tokens"),
        "{err}"
    );
    let o = anetrain(&["bench", "generate", "--model", "tiny", "--tokens", "1"]);
    assert!(
        text(&o).1.contains("--tokens must be at least 2"),
        "{}",
        text(&o).1
    );
}

#[test]
fn bench_train_with_lora_times_both_and_a_fresh_adapter_starts_at_the_base_loss() {
    let o = anetrain(&[
        "bench",
        "train",
        "--model",
        "tiny",
        "--batch",
        "2",
        "--seq",
        "16",
        "--warmup",
        "1",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--lora-rank",
        "4",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // Rank 4 on q_proj and v_proj (64 -> 64 each) of 2 layers: 4·(64 + 64) per pair.
    assert!(out.contains("(2048 adapter params)"), "{out}");
    // B = 0: the first LoRA step sees exactly the base model, the same batch as full training.
    let full = out
        .lines()
        .find(|l| l.starts_with("mil kernels on cpu"))
        .unwrap_or_else(|| panic!("no full fine-tuning line in:\n{out}"));
    assert_eq!(
        number_before(&out, "LoRA rank 4", "->"),
        number_before(full, "loss", "->"),
        "{out}"
    );
    let lora_ms = number_before(&out, "LoRA rank 4", "ms/step");
    let full_ms = number_before(full, "ms/step", "ms/step");
    let share = number_before(&out, "LoRA / full fine-tuning", "% (");
    assert!(
        (share - 100.0 * lora_ms / full_ms).abs() < 1.0,
        "share {share} vs {lora_ms} / {full_ms}: {out}"
    );
}

#[test]
fn bench_train_with_lora_layers_adapts_only_the_top_blocks() {
    let o = anetrain(&[
        "bench",
        "train",
        "--model",
        "tiny",
        "--seq",
        "16",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--device",
        "cpu",
        "--lora-rank",
        "4",
        "--lora-layers",
        "1",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // Only the second of tiny's 2 layers: q_proj and v_proj at 4·(64 + 64) each.
    assert!(
        out.contains("of layers 1..2 (1024 adapter params)"),
        "{out}"
    );
    let o = anetrain(&["bench", "train", "--model", "tiny", "--lora-layers", "1"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("--lora-rank"), "{}", text(&o).1);
}

#[test]
fn bench_train_with_bf16_moments_counts_12_bytes_per_parameter() {
    let o = anetrain(&[
        "bench",
        "train",
        "--model",
        "tiny",
        "--seq",
        "16",
        "--warmup",
        "0",
        "--steps",
        "1",
        "--optimizer-state",
        "bf16",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // The tiny preset's parameters (see above): 2·V·D embeddings and classifier, 2 layers, norm.
    let (v, d, h) = (256.0, 64.0, 128.0);
    let all = 2.0 * v * d + 2.0 * (4.0 * d * d + 3.0 * d * h + 2.0 * d) + d;
    let line = out
        .lines()
        .find(|l| l.contains("bf16 AdamW moments are"))
        .unwrap_or_else(|| panic!("no memory line in:\n{out}"));
    let tail = line.split("moments are ").nth(1).unwrap();
    let per_param: f64 = tail.split(' ').next().unwrap().parse().unwrap();
    let mib: f64 = tail
        .split("= ")
        .nth(1)
        .unwrap()
        .trim_end_matches(" MiB")
        .parse()
        .unwrap();
    assert_eq!(per_param, 12.0, "{line}");
    assert!((mib - 12.0 * all / 1048576.0).abs() <= 0.5, "{line}");

    let o = anetrain(&[
        "bench",
        "train",
        "--model",
        "tiny",
        "--optimizer-state",
        "fp16",
    ]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("choose fp32 or bf16"), "{err}");
}
