//! Checkpoints: atomic saves that never damage an earlier checkpoint, retention of the last N
//! plus the best, config checks that name the mismatch, and metrics logs that resume cleanly.

use std::path::Path;

use anetrain_data::SamplerState;
use anetrain_model::config::ModelConfig;
use anetrain_model::params::Params;
use anetrain_model::train::checkpoint::{
    apply_retention, latest_checkpoint, list_checkpoints, save_checkpoint, FORMAT_VERSION,
    OPTIMIZER_FILE,
};
use anetrain_model::train::metrics::{read_metrics, METRICS_FILE};
use anetrain_model::train::trainer::config_value;
use anetrain_model::train::{
    Checkpoint, CheckpointMeta, DataProvenance, LossScaler, MetricsLog, Optimizer, OptimizerSpec,
    StatePrecision, StepMetrics, TrainOptions, TrainState,
};

fn config() -> ModelConfig {
    ModelConfig::preset("tiny").unwrap()
}

fn meta(step: u64, val_loss: Option<f32>) -> CheckpointMeta {
    CheckpointMeta {
        format_version: FORMAT_VERSION,
        step,
        config: config_value(&config()).unwrap(),
        train: Some(TrainState {
            options: TrainOptions::default(),
            sampler: SamplerState {
                epoch: 1,
                cursor: 5,
            },
            train_samples: 100,
            loss_scaler: LossScaler::default(),
            optimizer_updates: step,
            tokens_seen: step * 512,
            elapsed_secs: 1.5,
            val_loss,
            best_val_loss: val_loss,
        }),
        provenance: DataProvenance {
            data: Some("synthetic".into()),
            tokenizer: Some("byte".into()),
            val_data: None,
            val_fraction: Some(0.05),
            mask_prompt: false,
        },
        lora_base: None,
    }
}

fn save(dir: &Path, params: &Params, step: u64, val_loss: Option<f32>) -> std::path::PathBuf {
    let opt = Optimizer::new(TrainOptions::default().optimizer, params);
    save_checkpoint(dir, params, Some(&opt), &meta(step, val_loss)).unwrap()
}

#[test]
fn checkpoint_round_trips_weights_optimizer_state_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::init(&config(), 3).unwrap();
    let mut opt = Optimizer::new(TrainOptions::default().optimizer, &params);
    let mut p = params.clone();
    opt.step(&mut p, &params, 1e-3, 1.0);
    let m = meta(7, Some(2.0));
    let mut m = m;
    m.train.as_mut().unwrap().optimizer_updates = 1;
    let path = save_checkpoint(dir.path(), &p, Some(&opt), &m).unwrap();
    assert!(path.ends_with("ckpt-00000007"));
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.params, p);
    assert_eq!(ckpt.meta, m);
    assert_eq!(ckpt.config, config());
    assert_eq!(ckpt.load_optimizer().unwrap(), opt);
}

#[test]
fn bf16_moments_are_saved_as_bf16_and_restored_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::init(&config(), 3).unwrap();
    let spec = OptimizerSpec::adamw(0.1).with_state(StatePrecision::Bf16);
    let mut opt = Optimizer::new(spec, &params);
    let mut p = params.clone();
    opt.step(&mut p, &params, 1e-3, 1.0);
    let mut m = meta(7, None);
    let train = m.train.as_mut().unwrap();
    train.optimizer_updates = 1;
    train.options.optimizer = spec;
    let path = save_checkpoint(dir.path(), &p, Some(&opt), &m).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.meta, m);
    assert_eq!(ckpt.load_optimizer().unwrap(), opt);
    // Two bytes per moment per parameter, plus the header.
    let n = params.num_params() as u64;
    let size = std::fs::metadata(path.join(OPTIMIZER_FILE)).unwrap().len();
    assert!(
        (4 * n..4 * n + 65536).contains(&size),
        "{size} bytes of optimizer state for {n} parameters"
    );

    // fp32 moments under a run that says bf16 are not this checkpoint's: an error, not a
    // silent conversion.
    let fp32 = Optimizer::new(TrainOptions::default().optimizer, &params);
    let mut m = meta(8, None);
    m.train.as_mut().unwrap().options.optimizer = spec;
    let path = save_checkpoint(dir.path(), &p, Some(&fp32), &m).unwrap();
    let e = Checkpoint::load(&path)
        .unwrap()
        .load_optimizer()
        .unwrap_err()
        .to_string();
    assert!(e.contains("stored as F32") && e.contains("BF16"), "{e}");
}

#[test]
fn a_failed_save_leaves_the_previous_checkpoint_intact_and_no_debris() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::init(&config(), 1).unwrap();
    let first = save(dir.path(), &params, 3, None);

    // The rename target exists already: the save must fail without touching it or step 3.
    let blocker = dir.path().join("ckpt-00000006");
    std::fs::write(&blocker, "not a checkpoint").unwrap();
    let other = Params::init(&config(), 2).unwrap();
    let opt = Optimizer::new(TrainOptions::default().optimizer, &other);
    let err = save_checkpoint(dir.path(), &other, Some(&opt), &meta(6, None)).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&blocker).unwrap(),
        "not a checkpoint"
    );

    // A write error mid-save (the temporary directory cannot be created).
    let tmp_name = format!(".tmp-ckpt-9-{}", std::process::id());
    std::fs::write(dir.path().join(&tmp_name), "in the way").unwrap();
    assert!(save_checkpoint(dir.path(), &other, Some(&opt), &meta(9, None)).is_err());
    std::fs::remove_file(dir.path().join(&tmp_name)).unwrap();

    assert_eq!(latest_checkpoint(dir.path()).unwrap(), Some(first.clone()));
    assert_eq!(Checkpoint::load(&first).unwrap().params, params);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn interrupted_saves_are_ignored_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::zeros(&config());
    save(dir.path(), &params, 1, None);
    // What a crash between writing files and the rename leaves behind.
    let crashed = dir.path().join(".tmp-ckpt-2-99999");
    std::fs::create_dir(&crashed).unwrap();
    std::fs::write(crashed.join("meta.json"), "{").unwrap();
    assert_eq!(list_checkpoints(dir.path()).unwrap().len(), 1);
    save(dir.path(), &params, 2, None);
    apply_retention(dir.path(), 5).unwrap();
    assert!(!crashed.exists());
}

#[test]
fn retention_keeps_the_last_n_and_the_best_validation_loss() {
    let dir = tempfile::tempdir().unwrap();
    let params = Params::zeros(&config());
    for (step, val) in [(1, 3.0), (2, 1.0), (3, 2.5), (4, 2.6), (5, 2.7)] {
        save(dir.path(), &params, step, Some(val));
    }
    save(dir.path(), &params, 6, None);
    let removed = apply_retention(dir.path(), 2).unwrap();
    assert_eq!(removed.len(), 3);
    let steps: Vec<u64> = list_checkpoints(dir.path())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, vec![2, 5, 6]);
}

#[test]
fn a_config_mismatch_names_every_differing_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = save(dir.path(), &Params::zeros(&config()), 1, None);
    let ckpt = Checkpoint::load(&path).unwrap();
    ckpt.check_config(&config()).unwrap();
    let mut other = config();
    other.dim = 96;
    other.n_layers = 3;
    let msg = ckpt.check_config(&other).unwrap_err().to_string();
    assert!(msg.contains("dim: expected 96, found 64"), "{msg}");
    assert!(msg.contains("n_layers: expected 3, found 2"), "{msg}");
    assert!(!msg.contains("hidden_dim"), "{msg}");
}

#[test]
fn weights_only_checkpoints_refuse_to_resume_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = meta(0, None);
    m.train = None;
    let path = save_checkpoint(dir.path(), &Params::zeros(&config()), None, &m).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    let msg = ckpt.load_optimizer().unwrap_err().to_string();
    assert!(msg.contains("--init-from"), "{msg}");
}

#[test]
fn a_resumed_metrics_log_drops_steps_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let line = |step| StepMetrics {
        step,
        loss: step as f32,
        lr: 1e-3,
        grad_norm: Some(0.5),
        loss_scale: 1024.0,
        skipped: false,
        skipped_total: 0,
        tokens: step * 10,
        tokens_per_s: 1.0,
        elapsed_s: 1.0,
        val_loss: None,
        perplexity: None,
    };
    let mut log = MetricsLog::create(dir.path()).unwrap();
    for step in 1..=5 {
        log.append(&line(step)).unwrap();
    }
    drop(log);
    let mut log = MetricsLog::resume(dir.path(), 3).unwrap();
    log.append(&line(4)).unwrap();
    let steps: Vec<u64> = read_metrics(&dir.path().join(METRICS_FILE))
        .unwrap()
        .iter()
        .map(|m| m.step)
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
}
