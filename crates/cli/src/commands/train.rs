//! `anetrain train`: train a model from scratch or from existing weights, on the built-in
//! synthetic corpus by default, with checkpoints, metrics, resume and a sample at the end.

use super::dashboard::{LiveDashboard, SAMPLE_FILE};
use super::device::{CapabilityArgs, DeviceArgs};
use super::plot::refresh_run_plot;
use super::restart::{exec_restart, restart_command};
use crate::interrupt::{Signals, Stop};
use crate::sample::stream_generation;
use anetrain_data::{TextOptions, TokenizerSource};
use anetrain_device::ane::budget::CompileBudget;
use anetrain_model::generate::{Generator, SamplingOptions};
use anetrain_model::lora::LoraRequest;
use anetrain_model::source::ModelSource;
use anetrain_model::train::metrics::METRICS_FILE;
use anetrain_model::train::{
    BaseModel, DataProvenance, OptionChanges, ResumePlan, Run, RunPlan, StepMetrics, TrainOptions,
};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// The preset trained when neither --model nor --init-from is given: small enough that the
/// quick start shows the loss falling within a couple of minutes on two cores.
const DEFAULT_PRESET: &str = "tiny";

/// The settings of a new run when no flag overrides them, tuned for the quick start: the tiny
/// model on the synthetic corpus reaches a validation loss near 0.2 nats per byte in 600 steps
/// (about a minute on two cores). The peak learning rate 3e-3 suits models this small; use
/// `--lr 3e-4` (ane-reference §6.9) for stories15M and larger.
fn quick_start_options() -> TrainOptions {
    TrainOptions {
        steps: 600,
        batch: 16,
        seq: 64,
        lr: 3e-3,
        warmup: 20,
        eval_every: 100,
        ..TrainOptions::default()
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// Model preset to train from scratch (stories15M, tiny, ...); default tiny.
    #[arg(long, conflicts_with = "init_from")]
    model: Option<String>,
    /// Start from existing weights: a run or checkpoint directory, a Hugging Face directory,
    /// or a llama2.c .bin.
    #[arg(long, value_name = "DIR")]
    init_from: Option<std::path::PathBuf>,
    /// Train a LoRA adapter of this rank on the frozen --init-from model instead of every
    /// weight [default with --adapter: the adapter's; else 8].
    #[arg(long)]
    lora_rank: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha / rank [default: 16].
    #[arg(long)]
    lora_alpha: Option<f32>,
    /// Projections to adapt, comma-separated (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,
    /// down_proj) or `all` [default: q_proj,v_proj].
    #[arg(long)]
    lora_targets: Option<String>,
    /// Adapt only the top N layers [default: all].
    #[arg(long)]
    lora_layers: Option<usize>,
    /// Continue training this PEFT or mlx-lm adapter on the --init-from model (rank, alpha and
    /// targets come from its adapter_config.json).
    #[arg(long, value_name = "DIR")]
    adapter: Option<std::path::PathBuf>,
    /// Training data: `synthetic[:TOKENS]`, a .bin shard or directory of shards, a text
    /// file, or fine-tuning examples: a .jsonl file or an mlx-lm directory (train.jsonl,
    /// valid.jsonl for validation). Default: the synthetic corpus (or the resumed run's data).
    #[arg(long)]
    data: Option<String>,
    /// Separate validation data (same spellings as --data); default: hold out --val-fraction
    /// (or, for an examples directory, its valid.jsonl).
    #[arg(long)]
    val_data: Option<String>,
    /// Fine-tuning examples: only completion / assistant tokens count in the loss.
    #[arg(long)]
    mask_prompt: bool,
    /// Share of the data held out for validation when --val-data is not given [default: 0.05,
    /// or the resumed run's].
    #[arg(long)]
    val_fraction: Option<f64>,
    /// `byte`, a tokenizer.json, or a directory holding one; the run keeps a copy. Default:
    /// the --init-from model's tokenizer (or the resumed run's); else byte for text and
    /// synthetic data, and none for .bin shards.
    #[arg(long)]
    tokenizer: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    capabilities: CapabilityArgs,
    /// Total optimizer steps of the run; a resumed run continues up to this total
    /// [default: 600].
    #[arg(long)]
    steps: Option<u64>,
    /// Sequences per micro-batch [default: 16].
    #[arg(long)]
    batch: Option<usize>,
    /// Tokens per sequence [default: 64, at most the model's max_seq_len].
    #[arg(long)]
    seq: Option<usize>,
    /// Micro-batches per optimizer step [default: 1].
    #[arg(long)]
    accum: Option<usize>,
    /// Peak learning rate [default: 3e-3; use 3e-4 for stories15M and larger].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Linear warmup steps [default: 20].
    #[arg(long)]
    warmup: Option<u64>,
    /// adamw or sgd [default: adamw].
    #[arg(long)]
    optimizer: Option<String>,
    /// Decoupled weight decay on matrices and embeddings [default: 0.1].
    #[arg(long, allow_negative_numbers = true)]
    weight_decay: Option<f32>,
    /// How AdamW stores its two moments: fp32, or bf16 for 12 instead of 16 bytes per
    /// parameter (the update is computed in f32 either way) [default: fp32, or the resumed
    /// run's].
    #[arg(long, value_name = "fp32|bf16")]
    optimizer_state: Option<String>,
    /// Global gradient-norm limit, 0 for none [default: 1].
    #[arg(long, allow_negative_numbers = true)]
    clip: Option<f32>,
    /// Seed of initialisation, data order and the final sample [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// shuffle (seeded) or sequential [default: shuffle].
    #[arg(long)]
    sampling: Option<String>,
    /// The run directory: checkpoints, metrics.jsonl, run.json.
    #[arg(long, value_name = "DIR")]
    out: std::path::PathBuf,
    /// Save a checkpoint every N steps (and always at the end) [default: 0 = end only].
    #[arg(long)]
    save_every: Option<u64>,
    /// Evaluate on the validation data every N steps (and at the end), 0 for never
    /// [default: 100].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Validation batches per evaluation, 0 for all [default: 8].
    #[arg(long)]
    eval_batches: Option<usize>,
    /// Checkpoints to keep besides the best-validation one [default: 3].
    #[arg(long)]
    keep_last: Option<usize>,
    /// Stop the run as diverged after this many skipped (overflowed) steps in a row, 0 for
    /// never [default: 20].
    #[arg(long)]
    max_skipped_steps: Option<u64>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    resume: bool,
    /// Tokens of text to sample at the end, 0 for none.
    #[arg(long, default_value_t = 200)]
    sample_tokens: usize,
    /// Sampling temperature of the final sample (0 = greedy).
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Without a terminal, print a progress line every N steps (0: only the first step,
    /// evaluations and skipped steps).
    #[arg(long, default_value_t = 10)]
    log_every: u64,
    /// Show the live dashboard (as `anetrain dashboard`) instead of progress lines; q stops
    /// the run like Ctrl-C.
    #[arg(long)]
    dashboard: bool,
}

/// Runs `anetrain train`.
pub fn run(args: TrainArgs) -> Result<ExitCode> {
    let signals = Signals::install();
    if let Err(e) = &signals {
        eprintln!("warning: Ctrl-C and SIGTERM will not save a checkpoint ({e})");
    }
    // Flags first: a refused run must not touch --out.
    let sample = sample_options(&args)?;
    let tokenizer = args
        .tokenizer
        .as_deref()
        .map(TokenizerSource::parse)
        .transpose()?;
    // The library locks --out before it loads anything, and keeps it locked while `run` lives.
    let mut run = if args.resume {
        resume_run(&args, tokenizer)?
    } else {
        new_run(&args, tokenizer)?
    };
    for note in &run.notes {
        println!("{note}");
    }
    if let Ok(signals) = &signals {
        signals.arm();
    }
    let stopped = train_loop(&args, &mut run, signals.as_ref().ok())?;
    refresh_run_plot(&args.out);
    if let Some(stop) = stopped {
        return Ok(stop.exit_code());
    }
    if args.sample_tokens > 0 {
        // The run succeeded and its checkpoint is saved; a failed sample must not undo that.
        if let Err(e) = print_sample(&args, &run, sample) {
            println!("sample skipped: {e:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The final sample's settings, checked before training starts.
fn sample_options(args: &TrainArgs) -> Result<SamplingOptions> {
    let options = SamplingOptions {
        temperature: args.temperature,
        ..SamplingOptions::default()
    };
    options
        .validate()
        .with_context(|| format!("--temperature {}", args.temperature))?;
    Ok(options)
}

fn new_run(args: &TrainArgs, tokenizer: Option<TokenizerSource>) -> Result<Run> {
    let data = DataProvenance {
        data: args.data.clone(),
        tokenizer: None,
        val_data: args.val_data.clone(),
        val_fraction: args.val_fraction,
        mask_prompt: args.mask_prompt,
    };
    let model = match &args.init_from {
        Some(path) => ModelSource::from_path(path)?,
        None => ModelSource::Preset {
            name: args.model.as_deref().unwrap_or(DEFAULT_PRESET).to_string(),
            vocab_size: None,
        },
    };
    let plan = RunPlan {
        model: BaseModel::Source(model),
        data,
        tokenizer,
        options: option_changes(args).apply(quick_start_options())?,
        device: args.device.device,
        capabilities: args.capabilities.path().map(Path::to_path_buf),
        lora: lora_request(args),
    };
    // The run carries its own tokenizer, so eval, generate, export and --resume find it.
    with_text_progress(&args.out, |text| Ok(Run::start_in(&args.out, plan, text)?))
}

fn resume_run(args: &TrainArgs, tokenizer: Option<TokenizerSource>) -> Result<Run> {
    if args.init_from.is_some() {
        bail!("--resume continues the run in --out; drop --init-from (or start a new run with it)");
    }
    let plan = ResumePlan {
        changes: option_changes(args),
        data: args.data.clone(),
        val_data: args.val_data.clone(),
        val_fraction: args.val_fraction,
        mask_prompt: args.mask_prompt,
        tokenizer,
        device: args.device.device,
        capabilities: args.capabilities.path().map(Path::to_path_buf),
        preset: args.model.clone(),
        lora: lora_request(args),
        ..ResumePlan::new(&args.out)
    };
    with_text_progress(&args.out, |text| Ok(Run::resume(plan, text)?))
}

/// The LoRA flags as the library takes them.
fn lora_request(args: &TrainArgs) -> LoraRequest {
    LoraRequest {
        rank: args.lora_rank,
        alpha: args.lora_alpha,
        targets: args.lora_targets.clone(),
        layers: args.lora_layers,
        adapter: args.adapter.clone(),
    }
}

/// The settings flags the user gave, as changes to a new run's defaults or a resumed run's.
fn option_changes(args: &TrainArgs) -> OptionChanges {
    OptionChanges {
        steps: args.steps,
        batch: args.batch,
        seq: args.seq,
        accum: args.accum,
        lr: args.lr,
        warmup: args.warmup,
        optimizer: args.optimizer.clone(),
        weight_decay: args.weight_decay,
        optimizer_state: args.optimizer_state.clone(),
        clip: args.clip,
        seed: args.seed,
        sampling: args.sampling.clone(),
        save_every: args.save_every,
        eval_every: args.eval_every,
        eval_batches: args.eval_batches,
        keep_last: args.keep_last,
        max_skipped_steps: args.max_skipped_steps,
    }
}

/// Runs `open` with text options that cache tokenized text in `run_dir` when its own
/// directory is read-only, and show tokenizing progress on a terminal.
fn with_text_progress<T>(
    run_dir: &Path,
    open: impl FnOnce(&TextOptions) -> Result<T>,
) -> Result<T> {
    let bar = std::io::stdout().is_terminal().then(|| {
        ProgressBar::new(0).with_style(
            ProgressStyle::with_template("tokenizing {bar:30} {bytes}/{total_bytes} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    });
    let announced = std::sync::Once::new();
    let progress = |done: u64, total: u64| {
        announced.call_once(|| {
            println!("tokenizing {total} bytes of text (cached for later runs; Ctrl-C stops)")
        });
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let text = TextOptions {
        fallback_cache_dir: Some(run_dir.to_path_buf()),
        progress: Some(&progress),
    };
    let opened = open(&text);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    opened
}

/// Trains to the total step count, saving when due; returns the signal that ended it early, if
/// one did (after saving a checkpoint of the last completed step).
fn train_loop(args: &TrainArgs, run: &mut Run, signals: Option<&Signals>) -> Result<Option<Stop>> {
    let total = run.trainer.options().steps;
    if run.trainer.is_done() {
        println!("the run is already at step {} of {total}; nothing to do (raise --steps to train further)", run.trainer.current_step());
        return Ok(None);
    }
    println!(
        "training {} parameters for {} steps of {} tokens; metrics in {}",
        run.trainer.trainable_params(),
        total - run.trainer.current_step(),
        run.trainer.options().tokens_per_step(),
        args.out.join(METRICS_FILE).display()
    );
    let dashboard = args
        .dashboard
        .then(|| LiveDashboard::start(&args.out))
        .and_then(|started| {
            started
                .map_err(|e| println!("warning: {e:#}; printing progress lines instead"))
                .ok()
        });
    let bar = (dashboard.is_none() && std::io::stdout().is_terminal()).then(|| {
        let bar = ProgressBar::new(total).with_position(run.trainer.current_step());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let budget = CompileBudget::process();
    // Everything compiled so far built the engine; a restarted process compiles it again.
    let engine_compiles = budget.used();
    if budget_check(budget, 0, engine_compiles) == BudgetCheck::Stay {
        println!(
            "warning: building the engine used {engine_compiles} of {} ANE compiles; a restart \
             would spend them again, so training continues in this process",
            budget.limit()
        );
    }
    while !run.trainer.is_done() {
        // The library logs the step in metrics.jsonl and saves a checkpoint when one is due.
        let m = run.step().with_context(|| {
            format!(
                "stopped in {}; it can continue from its last checkpoint with --resume",
                args.out.display()
            )
        })?;
        if dashboard.is_none() {
            report(&bar, &m, args.log_every);
        }
        if run.saved_at() == Some(m.step) {
            refresh_run_plot(&args.out);
        }
        // A finished run has nothing left to compile for, so it never restarts.
        if !run.trainer.is_done()
            && budget_check(budget, 0, engine_compiles) == BudgetCheck::Restart
        {
            stop_early(run, &bar, dashboard)?;
            println!(
                "compile budget nearly spent ({} of {}): saved step {}, restarting with --resume",
                budget.used(),
                budget.limit(),
                m.step
            );
            return Err(restart());
        }
        let quit = || {
            let asked = dashboard
                .as_ref()
                .is_some_and(LiveDashboard::quit_requested);
            asked.then_some(Stop::Interrupt)
        };
        if let Some(stop) = signals.and_then(Signals::stop).or_else(quit) {
            stop_early(run, &bar, dashboard)?;
            println!(
                "{}: saved step {} in {}; continue with --resume --out {}",
                stop.describe(),
                m.step,
                args.out.display(),
                args.out.display()
            );
            return Ok(Some(stop));
        }
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    drop(dashboard);
    println!("done: step {total}, checkpoint in {}", args.out.display());
    Ok(None)
}

/// Saves the current step (unless saved already) and closes the progress display, before the
/// loop ends ahead of the run's total.
fn stop_early(
    run: &mut Run,
    bar: &Option<ProgressBar>,
    dashboard: Option<LiveDashboard>,
) -> Result<()> {
    run.checkpoint()?;
    if let Some(bar) = bar {
        bar.abandon();
    }
    drop(dashboard);
    Ok(())
}

/// What the per-process ANE compile budget (ane-reference §1.10) asks of the training loop.
#[derive(Debug, PartialEq, Eq)]
enum BudgetCheck {
    /// Compiles to spare; always so on the CPU, which charges nothing to the budget.
    Continue,
    /// Past the soft limit, but a fresh process (the engine's compiles, then the upcoming
    /// ones) would fit: checkpoint and restart with `--resume`.
    Restart,
    /// Past the soft limit even in a fresh process: a restart would end up here again, so
    /// training goes on (a compile past the hard limit fails with its own error).
    Stay,
}

/// Whether `upcoming` more compiles fit the budget, given that `engine_compiles` of those used
/// built the engine (and would be spent again by a restarted process).
fn budget_check(budget: &CompileBudget, upcoming: usize, engine_compiles: usize) -> BudgetCheck {
    if !budget.needs_restart(upcoming) {
        BudgetCheck::Continue
    } else if engine_compiles.saturating_add(upcoming) <= budget.limit() {
        BudgetCheck::Restart
    } else {
        BudgetCheck::Stay
    }
}

/// The command line of the restarted process: this one with `--resume`, and without
/// `--init-from`, which a resumed run refuses (its weights are in the checkpoint now).
fn restart_argv(args: &[String]) -> Vec<String> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let mut kept = Vec::with_capacity(args.len() + 1);
    let mut skip_value = false;
    for (i, arg) in args.iter().enumerate() {
        if skip_value {
            skip_value = false;
        } else if i < end && arg == "--init-from" {
            skip_value = true;
        } else if !(i < end && arg.starts_with("--init-from=")) {
            kept.push(arg.clone());
        }
    }
    restart_command(&kept)
}

/// Replaces this process with `anetrain train ... --resume`; returns only the error of a
/// failed restart.
fn restart() -> anyhow::Error {
    let args: std::result::Result<Vec<String>, _> =
        std::env::args_os().map(|a| a.into_string()).collect();
    let Ok(args) = args else {
        return anyhow!(
            "cannot restart: an argument is not valid UTF-8; rerun the same command with --resume"
        );
    };
    exec_restart(&restart_argv(&args))
}

fn report(bar: &Option<ProgressBar>, m: &StepMetrics, log_every: u64) {
    let val = m
        .val_loss
        .map(|v| format!(" val {v:.4} ppl {:.2}", v.exp()))
        .unwrap_or_default();
    let skip = if m.skipped {
        " (skipped: overflow)"
    } else {
        ""
    };
    let line = format!(
        "loss {:.4}{val} | {:.0} tok/s | lr {:.2e}{skip}",
        m.loss, m.tokens_per_s, m.lr
    );
    match bar {
        Some(bar) => {
            bar.set_position(m.step);
            bar.set_message(line);
            if m.val_loss.is_some() || m.skipped {
                bar.println(format!("step {}: {}", m.step, bar.message()));
            }
        }
        None if m.step.checked_rem(log_every) == Some(0)
            || m.val_loss.is_some()
            || m.skipped
            || m.step == 1 =>
        {
            println!("step {:>6} {line} | {:.0}s", m.step, m.elapsed_s)
        }
        None => {}
    }
}

/// Samples from the trained model, starting at BOS (or the tokenizer's encoding of "Once").
fn print_sample(args: &TrainArgs, run: &Run, options: SamplingOptions) -> Result<()> {
    let Some(tok) = run.tokenizer.as_ref().map(|t| t.tokenizer.as_ref()) else {
        println!(
            "sample skipped: the run has no tokenizer to show text with (pass --tokenizer to train, or generate with --prompt-ids)"
        );
        return Ok(());
    };
    let trainer = &run.trainer;
    let start = tok
        .bos()
        .or_else(|| tok.encode("Once").ok().and_then(|ids| ids.first().copied()))
        .ok_or_else(|| anyhow!("the tokenizer has no BOS token to start a sample from"))?;
    // For `reference` (no kernels) this is the fp32 CPU interpreter.
    let (device, _) = args.device.device.device_with(args.capabilities.path())?;
    let max_seq = trainer.config().max_seq_len.min(1 + args.sample_tokens);
    let mut generator =
        Generator::new(trainer.config(), trainer.trained_model()?, device, max_seq)?;
    // Documents are separated by BOS in the training layout, so a BOS also ends a story.
    generator.set_eos(tok.bos().or(tok.eos()));
    let options = SamplingOptions {
        seed: trainer.options().seed,
        ..options
    };
    println!("sample (temperature {}):", args.temperature);
    let (_, text) = stream_generation(&mut generator, tok, &[start], max_seq - 1, options)?;
    let path = args.out.join(SAMPLE_FILE);
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("warning: cannot save the sample to {}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_budget_asks_for_a_restart_only_when_one_helps() {
        let budget = CompileBudget::new(100);
        for _ in 0..60 {
            budget.charge().unwrap();
        }
        assert_eq!(budget_check(&budget, 0, 60), BudgetCheck::Continue);
        assert_eq!(budget_check(&budget, 40, 60), BudgetCheck::Continue);
        // 60 + 41 passes the limit in a fresh process too; 20 + 41 would not.
        assert_eq!(budget_check(&budget, 41, 60), BudgetCheck::Stay);
        assert_eq!(budget_check(&budget, 41, 20), BudgetCheck::Restart);
        for _ in 0..41 {
            budget.charge().unwrap();
        }
        assert_eq!(budget_check(&budget, 0, 60), BudgetCheck::Restart);
        // The engine alone took all 101: a new process would spend them again.
        assert_eq!(budget_check(&budget, 0, 101), BudgetCheck::Stay);
    }

    #[test]
    fn the_cpu_never_restarts() {
        assert_eq!(
            budget_check(&CompileBudget::new(100), 0, 0),
            BudgetCheck::Continue
        );
    }

    #[test]
    fn the_restart_resumes_and_drops_init_from() {
        let argv = strings(&["anetrain", "train", "--init-from", "w.bin", "--out", "run"]);
        assert_eq!(
            restart_argv(&argv),
            strings(&["anetrain", "train", "--out", "run", "--resume"])
        );
        let argv = strings(&[
            "anetrain",
            "train",
            "--init-from=w.bin",
            "--out",
            "run",
            "--resume",
        ]);
        assert_eq!(
            restart_argv(&argv),
            strings(&["anetrain", "train", "--out", "run", "--resume"])
        );
        let argv = strings(&["anetrain", "train", "--out", "run", "--", "--init-from"]);
        assert_eq!(
            restart_argv(&argv),
            strings(&[
                "anetrain",
                "train",
                "--out",
                "run",
                "--resume",
                "--",
                "--init-from"
            ])
        );
    }
}
