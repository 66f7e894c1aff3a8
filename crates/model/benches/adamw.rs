//! AdamW's update over a whole model with its moments in fp32 and in bf16, timed interleaved
//! (A B A B) in one process so the ratio survives a noisy, shared machine. Run with
//! `cargo bench -p anetrain-model --bench adamw [-- PRESET [ROUNDS]]` (default stories15M, 5).

use std::time::Instant;

use anetrain_model::config::ModelConfig;
use anetrain_model::params::Params;
use anetrain_model::train::{Optimizer, OptimizerSpec, StatePrecision};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let preset = args.next().unwrap_or_else(|| "stories15M".into());
    let rounds: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("ROUNDS is a number"));
    let config = ModelConfig::preset(&preset).expect("a preset name");
    let mut params = Params::init(&config, 1).expect("the preset's weights");
    let grads = Params::init(&config, 2).expect("the preset's gradients");
    let n = params.num_params();
    let mut runs: Vec<(StatePrecision, Optimizer, Vec<f64>)> =
        [StatePrecision::Fp32, StatePrecision::Bf16]
            .into_iter()
            .map(|s| {
                let spec = OptimizerSpec::adamw(0.1).with_state(s);
                (s, Optimizer::new(spec, &params), Vec::new())
            })
            .collect();
    // The first round faults the state in and is not counted.
    for round in 0..=rounds {
        for (_, opt, times) in &mut runs {
            let start = Instant::now();
            opt.step(&mut params, &grads, 1e-4, 1.0 / 1024.0);
            if round > 0 {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    println!(
        "AdamW over {preset} ({:.1}M params), {} threads, median of {rounds} interleaved rounds:",
        n as f64 / 1e6,
        rayon::current_num_threads()
    );
    let fp32 = median(runs[0].2.clone());
    for (state, _, times) in runs {
        let ms = median(times);
        println!(
            "  {} moments: {ms:.2} ms/update ({:.2} ns/param, {:.2}x fp32)",
            state.name(),
            ms * 1e6 / n as f64,
            ms / fp32
        );
    }
}
