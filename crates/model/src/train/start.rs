//! Starting a new training run as every front end does: settings given as changes to a base,
//! the model from a source (or already loaded), the tokenizer chosen, the data opened, the
//! engine built, and a run directory that carries the tokenizer, the settings and the metrics
//! of every step. `anetrain train`, the C trainer and Python's `anetrain.Trainer` all start
//! runs here (and resume them: [`super::resume`]).

use std::path::{Path, PathBuf};

use anetrain_data::{
    DataRequest, DataSource, OpenedData, Sampling, TextOptions, Tokenizer, TokenizerSource,
    DEFAULT_VAL_FRACTION,
};
use serde::Deserialize;

use super::base_ref::BaseRef;
use super::checkpoint::DataProvenance;
use super::eval::EvalResult;
use super::metrics::StepMetrics;
use super::optimizer::{parse_optimizer, OptimizerSpec, StatePrecision};
use super::options::TrainOptions;
use super::run_dir::{Claim, RunDir};
use super::trainer::Trainer;
use crate::config::ModelConfig;
use crate::device_choice::DeviceChoice;
use crate::error::{ModelError, Result};
use crate::lora::LoraRequest;
use crate::source::{check_tokenizer_fits, LoadedModel, ModelSource, ModelTokenizer};

/// Settings a front end changes on top of a base [`TrainOptions`], each `None` to keep the
/// base's: the `train` flags, the C trainer's JSON keys and Python's keywords are these names.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionChanges {
    /// Total optimizer steps.
    pub steps: Option<u64>,
    /// Sequences per micro-batch.
    pub batch: Option<usize>,
    /// Tokens per sequence.
    pub seq: Option<usize>,
    /// Micro-batches per optimizer step.
    pub accum: Option<usize>,
    /// Peak learning rate.
    pub lr: Option<f32>,
    /// Linear warmup steps.
    pub warmup: Option<u64>,
    /// `adamw` or `sgd`.
    pub optimizer: Option<String>,
    /// Decoupled weight decay.
    pub weight_decay: Option<f32>,
    /// How AdamW's moments are stored: `fp32` or `bf16`.
    pub optimizer_state: Option<String>,
    /// Global gradient-norm limit, 0 for none.
    pub clip: Option<f32>,
    /// Seed of initialisation and data order.
    pub seed: Option<u64>,
    /// `shuffle` or `sequential`.
    pub sampling: Option<String>,
    /// Checkpoint interval in steps.
    pub save_every: Option<u64>,
    /// Evaluation interval in steps, 0 for never.
    pub eval_every: Option<u64>,
    /// Validation batches per evaluation, 0 for all.
    pub eval_batches: Option<usize>,
    /// Checkpoints kept besides the best one.
    pub keep_last: Option<usize>,
    /// Skipped steps in a row that stop the run as diverged, 0 for never.
    pub max_skipped_steps: Option<u64>,
}

impl OptionChanges {
    /// `base` with every given setting applied. A new seed also reseeds a shuffled data order.
    pub fn apply(&self, base: TrainOptions) -> Result<TrainOptions> {
        let mut o = base;
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { o.$field = v; } )* };
        }
        set!(
            steps,
            batch,
            seq,
            accum,
            lr,
            warmup,
            clip,
            seed,
            save_every,
            eval_every,
            eval_batches,
            keep_last,
            max_skipped_steps
        );
        if self.optimizer.is_some() || self.weight_decay.is_some() || self.optimizer_state.is_some()
        {
            let (current, decay) = match o.optimizer {
                OptimizerSpec::Adamw { weight_decay, .. } => ("adamw", weight_decay),
                OptimizerSpec::Sgd { weight_decay, .. } => ("sgd", weight_decay),
            };
            let name = self.optimizer.as_deref().unwrap_or(current);
            // Kept when only the optimizer changes, so switching to SGD (refused on resume
            // anyway) is not mistaken for asking SGD for bf16 state.
            let state = match &self.optimizer_state {
                Some(given) => StatePrecision::parse(given)?,
                None if name == current => o.optimizer.state_precision(),
                None => StatePrecision::Fp32,
            };
            o.optimizer = parse_optimizer(name, self.weight_decay.unwrap_or(decay), state)?;
        }
        match self.sampling.as_deref() {
            Some("sequential") => o.sampling = Sampling::Sequential,
            Some("shuffle") => o.sampling = Sampling::Shuffle { seed: o.seed },
            Some(other) => {
                return Err(ModelError::Options(format!(
                    "unknown --sampling `{other}`; choose shuffle or sequential"
                )))
            }
            None if self.seed.is_some() => {
                if let Sampling::Shuffle { .. } = o.sampling {
                    o.sampling = Sampling::Shuffle { seed: o.seed };
                }
            }
            None => {}
        }
        Ok(o)
    }
}

/// A new run's settings as one JSON object (the C trainer's options, Python's keywords): the
/// [`OptionChanges`] keys plus `tokenizer`, `val_data`, `val_fraction`, `device` and the LoRA
/// keys `lora_rank`, `lora_alpha`, `lora_targets`, `lora_layers` and `adapter`.
#[derive(Clone, Debug, Default)]
pub struct RunSettings {
    /// Changes to [`TrainOptions::default`].
    pub changes: OptionChanges,
    /// `byte`, a tokenizer.json or a directory holding one; default the model's.
    pub tokenizer: Option<String>,
    /// Separate validation data; default: hold out `val_fraction`.
    pub val_data: Option<String>,
    /// Share held out for validation [default 0.05].
    pub val_fraction: Option<f64>,
    /// Where the engine runs [default auto].
    pub device: Option<String>,
    /// The `train --lora-*` and `--adapter` settings; any given makes it a LoRA run.
    pub lora: LoraRequest,
}

/// The keys of [`RunSettings`] that are not [`OptionChanges`].
const PLAN_KEYS: [&str; 9] = [
    "tokenizer",
    "val_data",
    "val_fraction",
    "device",
    "lora_rank",
    "lora_alpha",
    "lora_targets",
    "lora_layers",
    "adapter",
];

/// The values of [`PLAN_KEYS`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanKeys {
    tokenizer: Option<String>,
    val_data: Option<String>,
    val_fraction: Option<f64>,
    device: Option<String>,
    lora_rank: Option<usize>,
    lora_alpha: Option<f32>,
    lora_targets: Option<Targets>,
    lora_layers: Option<usize>,
    adapter: Option<PathBuf>,
}

/// `lora_targets` as `"q_proj,v_proj"` (the flag's spelling) or `["q_proj", "v_proj"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Targets {
    List(String),
    Names(Vec<String>),
}

impl RunSettings {
    /// Reads a JSON object; an unknown key or a wrong type is an error naming it.
    pub fn from_json(text: &str) -> Result<RunSettings> {
        let bad = |e: serde_json::Error| {
            ModelError::Options(format!(
                "training options {text}: {e}; the keys are steps, batch, seq, accum, lr, \
                 warmup, optimizer, weight_decay, clip, seed, sampling, save_every, eval_every, \
                 eval_batches, keep_last, max_skipped_steps, tokenizer, val_data, val_fraction, \
                 device, lora_rank, lora_alpha, lora_targets, lora_layers and adapter"
            ))
        };
        let mut all: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(bad)?;
        let mut plan = serde_json::Map::new();
        for key in PLAN_KEYS {
            if let Some(value) = all.remove(key).filter(|v| !v.is_null()) {
                plan.insert(key.into(), value);
            }
        }
        let changes = serde_json::from_value(all.into()).map_err(bad)?;
        let plan: PlanKeys = serde_json::from_value(plan.into()).map_err(bad)?;
        Ok(RunSettings {
            changes,
            tokenizer: plan.tokenizer,
            val_data: plan.val_data,
            val_fraction: plan.val_fraction,
            device: plan.device,
            lora: LoraRequest {
                rank: plan.lora_rank,
                alpha: plan.lora_alpha,
                targets: plan.lora_targets.map(|t| match t {
                    Targets::List(list) => list,
                    Targets::Names(names) => names.join(","),
                }),
                layers: plan.lora_layers,
                adapter: plan.adapter,
            },
        })
    }

    /// The plan of a run of `model` on `data` (`None`: the synthetic corpus) with these
    /// settings over [`TrainOptions::default`].
    pub fn plan(self, model: BaseModel, data: Option<String>) -> Result<RunPlan> {
        Ok(RunPlan {
            model,
            data: DataProvenance {
                data,
                tokenizer: None,
                val_data: self.val_data,
                val_fraction: self.val_fraction,
                mask_prompt: false,
            },
            tokenizer: self
                .tokenizer
                .as_deref()
                .map(TokenizerSource::parse)
                .transpose()?,
            options: self.changes.apply(TrainOptions::default())?,
            device: self.device.as_deref().unwrap_or("auto").parse()?,
            capabilities: None,
            lora: self.lora,
        })
    }
}

/// The weights a new run starts from.
pub enum BaseModel {
    /// A path or preset name; a preset takes the vocabulary of the run's tokenizer.
    Source(ModelSource),
    /// A model already loaded (its vocabulary is fixed).
    Loaded(Box<LoadedModel>),
}

/// Everything a new run is started from.
pub struct RunPlan {
    /// The starting weights.
    pub model: BaseModel,
    /// Training and validation data (`data: None` is the synthetic corpus; `tokenizer` is
    /// filled in by the run).
    pub data: DataProvenance,
    /// The tokenizer to use instead of the model's.
    pub tokenizer: Option<TokenizerSource>,
    /// The run's settings.
    pub options: TrainOptions,
    /// Where the engine runs.
    pub device: DeviceChoice,
    /// On the ANE, the capability file that picks kernel forms (`None`: doctor's, if any).
    pub capabilities: Option<PathBuf>,
    /// LoRA settings: when any is given, only an adapter on the frozen base is trained (the
    /// model must then be a path, the base the run refers to).
    pub lora: LoraRequest,
}

/// A run started from a [`RunPlan`] (or resumed): the trainer, with the tokenizer it was given
/// and, once it has one, the run directory its steps are logged and checkpointed in.
pub struct Run {
    /// The training loop.
    pub trainer: Trainer,
    /// The run's tokenizer (none for pretokenized data and a model without one).
    pub tokenizer: Option<ModelTokenizer>,
    /// What was decided on the way, one sentence each, for the front end to show.
    pub notes: Vec<String>,
    pub(super) provenance: DataProvenance,
    /// The run directory: the first one adopted ([`Run::adopt_dir`]).
    pub(super) home: Option<RunDir>,
    /// Other directories the run has saved into, locked while the run lives.
    pub(super) others: Vec<Claim>,
    /// Steps taken before the run had a directory, written to its log when it gets one.
    pub(super) unlogged: Vec<StepMetrics>,
    /// The step of the last checkpoint saved.
    pub(super) saved_at: Option<u64>,
}

impl Run {
    /// Loads the model, chooses the tokenizer (the plan's, else the model's, else bytes for
    /// text data), opens the data (text through `text`), builds the engine and the trainer.
    pub fn start(plan: RunPlan, text: &TextOptions) -> Result<Run> {
        let RunPlan {
            model,
            mut data,
            tokenizer: flag,
            options,
            device,
            capabilities,
            lora,
        } = plan;
        data.data.get_or_insert_with(|| "synthetic".into());
        if data.val_data.is_none() {
            data.val_fraction.get_or_insert(DEFAULT_VAL_FRACTION);
        }
        let mut notes = Vec::new();
        let carried = match &model {
            BaseModel::Source(source) => source.tokenizer()?,
            BaseModel::Loaded(loaded) => loaded.tokenizer.clone(),
        };
        let chosen = flag.or(carried).or(data
            .byte_tokenizer_by_default()?
            .then_some(TokenizerSource::Byte));
        let tokenizer = chosen.as_ref().map(TokenizerSource::open).transpose()?;
        let base_path = match &model {
            BaseModel::Source(
                ModelSource::Run(p)
                | ModelSource::Checkpoint(p)
                | ModelSource::HuggingFace(p)
                | ModelSource::Llama2c(p),
            ) => Some(p.clone()),
            BaseModel::Source(ModelSource::Preset { .. }) | BaseModel::Loaded(_) => None,
        };
        let loaded = match model {
            BaseModel::Loaded(loaded) => *loaded,
            BaseModel::Source(source) => {
                let source = match (&source, &tokenizer) {
                    (ModelSource::Preset { name, .. }, Some(t)) => {
                        let preset = ModelConfig::preset(name)?.vocab_size;
                        if preset != t.vocab_size() {
                            notes.push(format!(
                                "model: preset {name} with its vocabulary set to the tokenizer's {} tokens (preset has {preset})",
                                t.vocab_size()
                            ));
                        }
                        source.with_preset_vocab(t.vocab_size())
                    }
                    _ => source,
                };
                let loaded = source.load(options.seed)?;
                if !matches!(source, ModelSource::Preset { .. }) {
                    notes.push(format!("starting from {}", loaded.description));
                }
                loaded
            }
        };
        let tokenizer = match (tokenizer, chosen) {
            (Some(tokenizer), Some(source)) => {
                check_tokenizer_fits(tokenizer.as_ref(), &source, &loaded.config)?;
                Some(ModelTokenizer { source, tokenizer })
            }
            _ => None,
        };
        let LoadedModel {
            mut config, params, ..
        } = loaded;
        let adapter = lora.resolve(base_path.as_ref().map(|_| &config), options.seed)?;
        if let Some(t) = &tokenizer {
            config.adopt_special_tokens(t.tokenizer.as_ref());
        }
        let tok = tokenizer
            .as_ref()
            .map(|t| (t.tokenizer.as_ref(), &t.source));
        let opened = data.open(tok, &options, text)?;
        notes.extend(opened.truncation);
        let (engine, why) =
            device.engine_with(&config, options.seq, &params, capabilities.as_deref())?;
        notes.push(format!("device: {why}"));
        let trainer = match (adapter, base_path) {
            (Some(adapter), Some(base)) => {
                notes.push(format!(
                    "training a LoRA adapter ({} parameters, rank {}, {}) on the frozen base",
                    adapter.num_params(),
                    adapter.config().rank,
                    adapter.config().targets_list()
                ));
                let base_ref = BaseRef::new(&base, &params)?;
                Trainer::new_adapter(
                    &config,
                    params,
                    base_ref,
                    adapter,
                    options,
                    opened.data,
                    engine,
                )?
            }
            _ => Trainer::new(&config, params, options, opened.data, engine)?,
        };
        let mut run = Run {
            trainer,
            tokenizer,
            notes,
            provenance: data,
            home: None,
            others: Vec::new(),
            unlogged: Vec::new(),
            saved_at: None,
        };
        run.trainer.set_provenance(run.provenance.clone());
        Ok(run)
    }

    /// As [`Run::start`], in the run directory `dir` ([`Run::adopt_dir`]), which is claimed
    /// first so a directory that cannot be used is refused before the model loads.
    pub fn start_in(dir: &Path, plan: RunPlan, text: &TextOptions) -> Result<Run> {
        let (claim, note) = Claim::new_run(dir)?;
        let mut run = Run::start(plan, text)?;
        run.notes.splice(0..0, note);
        run.settle(claim)?;
        Ok(run)
    }

    /// Makes `dir` a directory of this run: creates and locks it, refuses one inside a
    /// checkpoint or holding another run's checkpoints (saving there would delete them by
    /// retention), and copies the tokenizer in so the checkpoints saved there load with it.
    /// The first directory adopted is the run directory: `run.json` and `metrics.jsonl`
    /// (every step, those before included) are written there, and checkpoints when due.
    pub fn adopt_dir(&mut self, dir: &Path) -> Result<()> {
        let adopted = self.home.iter().map(|h| h.path.as_path());
        if adopted
            .chain(self.others.iter().map(Claim::path))
            .any(|d| d == dir)
        {
            return Ok(());
        }
        let (claim, note) = Claim::new_run(dir)?;
        self.notes.extend(note);
        self.settle(claim)
    }

    /// Takes a claimed directory as the run's own (the first) or as another it saves into.
    fn settle(&mut self, claim: Claim) -> Result<()> {
        if let Some(t) = &self.tokenizer {
            self.provenance.tokenizer = Some(t.source.copy_into(claim.path())?.spec());
            self.trainer.set_provenance(self.provenance.clone());
        }
        if self.home.is_some() {
            self.others.push(claim);
        } else {
            self.home = Some(claim.start(&self.trainer, &self.provenance, &self.unlogged)?);
            self.unlogged.clear();
        }
        Ok(())
    }

    /// The run directory, once there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.home.as_ref().map(|h| h.path.as_path())
    }

    /// Saves a checkpoint of the current step into `dir`, adopting it first
    /// ([`Run::adopt_dir`]); returns the checkpoint directory.
    pub fn save(&mut self, dir: &Path) -> Result<PathBuf> {
        self.adopt_dir(dir)?;
        let saved = self.trainer.save(dir)?;
        self.saved_at = Some(self.trainer.current_step());
        Ok(saved)
    }

    /// Saves the current step into the run directory unless it is saved already (before
    /// stopping early); an error when the run has no directory.
    pub fn checkpoint(&mut self) -> Result<()> {
        let Some(dir) = self.dir().map(Path::to_path_buf) else {
            return Err(ModelError::Options(
                "the run has no directory to save into; save it into one first".into(),
            ));
        };
        if self.saved_at != Some(self.trainer.current_step()) {
            self.save(&dir)?;
        }
        Ok(())
    }

    /// The step of the last checkpoint saved by this run.
    pub fn saved_at(&self) -> Option<u64> {
        self.saved_at
    }

    /// One optimizer step, logged in the run directory (which gets a checkpoint when one is
    /// due); an error once the run has reached its total steps.
    pub fn step(&mut self) -> Result<StepMetrics> {
        if self.trainer.is_done() {
            return Err(ModelError::Options(format!(
                "the run has reached its total of {} steps; start a run with more `steps` to train further",
                self.trainer.options().steps
            )));
        }
        let metrics = self.trainer.step()?;
        self.record(&metrics)?;
        Ok(metrics)
    }

    /// Logs a step taken, and saves when a checkpoint is due.
    fn record(&mut self, metrics: &StepMetrics) -> Result<()> {
        let Some(home) = &mut self.home else {
            self.unlogged.push(metrics.clone());
            return Ok(());
        };
        home.log(metrics)?;
        if self.trainer.save_due() {
            let dir = home.path.clone();
            self.save(&dir)?;
        }
        Ok(())
    }

    /// Up to `steps` optimizer steps ([`Run::step`]), fewer when the run reaches its total or
    /// `on_step` returns false after a step; returns the metrics of the steps taken.
    pub fn train(
        &mut self,
        steps: u64,
        mut on_step: impl FnMut(&StepMetrics) -> bool,
    ) -> Result<Vec<StepMetrics>> {
        let mut taken = Vec::new();
        while (taken.len() as u64) < steps && !self.trainer.is_done() {
            let metrics = self.step()?;
            let go_on = on_step(&metrics);
            taken.push(metrics);
            if !go_on {
                break;
            }
        }
        Ok(taken)
    }

    /// The validation loss of the current weights; an error when the run has no validation
    /// data.
    pub fn evaluate(&mut self) -> Result<EvalResult> {
        self.trainer.evaluate()?.ok_or_else(|| {
            ModelError::Options(
                "the run has no validation data; give `val_data` or a `val_fraction` above 0"
                    .into(),
            )
        })
    }

    /// The data and tokenizer spellings the run records.
    pub fn provenance(&self) -> &DataProvenance {
        &self.provenance
    }
}

impl DataProvenance {
    /// Whether the run's data (training or validation) is text for which the byte tokenizer
    /// serves when no other is given (examples never default to it).
    pub fn byte_tokenizer_by_default(&self) -> Result<bool> {
        let train = DataSource::parse(self.data.as_deref().unwrap_or("synthetic"))?;
        let val = self
            .val_data
            .as_deref()
            .map(DataSource::parse)
            .transpose()?;
        Ok(train.byte_tokenizer_by_default() || val.is_some_and(|v| v.byte_tokenizer_by_default()))
    }

    /// Opens the training and validation data described (synthetic when unset): text
    /// tokenized with `tokenizer`, fine-tuning examples rendered with its chat template.
    pub fn open(
        &self,
        tokenizer: Option<(&dyn Tokenizer, &TokenizerSource)>,
        options: &TrainOptions,
        text: &TextOptions,
    ) -> Result<OpenedData> {
        Ok(DataRequest {
            data: self.data.as_deref().unwrap_or("synthetic"),
            val_data: self.val_data.as_deref(),
            val_fraction: self.val_fraction.unwrap_or(DEFAULT_VAL_FRACTION),
            mask_prompt: self.mask_prompt,
            seq: options.seq,
            seed: options.seed,
            tokenizer,
            text,
        }
        .open()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_from_json_change_only_what_they_name() {
        let s = RunSettings::from_json(
            r#"{"steps": 7, "optimizer": "sgd", "seed": 3, "tokenizer": "byte", "device": "cpu"}"#,
        )
        .unwrap();
        assert_eq!(s.tokenizer.as_deref(), Some("byte"));
        let plan = s
            .plan(BaseModel::Source(ModelSource::parse("tiny").unwrap()), None)
            .unwrap();
        let want = TrainOptions {
            steps: 7,
            seed: 3,
            sampling: Sampling::Shuffle { seed: 3 },
            optimizer: OptimizerSpec::sgd(0.1),
            ..TrainOptions::default()
        };
        assert_eq!(plan.options, want);
        assert_eq!(plan.device, DeviceChoice::Cpu);
    }

    #[test]
    fn optimizer_state_reads_from_json_and_bad_values_name_the_fix() {
        let plan = |json: &str| {
            RunSettings::from_json(json)
                .unwrap()
                .plan(BaseModel::Source(ModelSource::parse("tiny").unwrap()), None)
        };
        let bf16 = plan(r#"{"optimizer_state": "bf16"}"#)
            .unwrap()
            .options
            .optimizer;
        assert_eq!(
            bf16,
            OptimizerSpec::adamw(0.1).with_state(StatePrecision::Bf16)
        );
        let e = plan(r#"{"optimizer_state": "fp8"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("`fp8`") && e.contains("choose fp32 or bf16"),
            "{e}"
        );
        let e = plan(r#"{"optimizer": "sgd", "optimizer_state": "bf16"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("SGD has none"), "{e}");
        // Changing the decay keeps the precision; switching optimizer does not carry it.
        let changes = |json: &str| RunSettings::from_json(json).unwrap().changes;
        let saved = TrainOptions {
            optimizer: bf16,
            ..TrainOptions::default()
        };
        let o = changes(r#"{"weight_decay": 0.2}"#)
            .apply(saved.clone())
            .unwrap();
        assert_eq!(o.optimizer.state_precision(), StatePrecision::Bf16);
        let o = changes(r#"{"optimizer": "sgd"}"#).apply(saved).unwrap();
        assert_eq!(o.optimizer, OptimizerSpec::sgd(0.1));
    }

    #[test]
    fn lora_settings_read_from_json_make_the_lora_request() {
        let s = RunSettings::from_json(
            r#"{"lora_rank": 4, "lora_alpha": 8, "lora_targets": ["q_proj", "o_proj"], "lora_layers": 2, "adapter": null}"#,
        )
        .unwrap();
        let want = LoraRequest {
            rank: Some(4),
            alpha: Some(8.0),
            targets: Some("q_proj,o_proj".into()),
            layers: Some(2),
            adapter: None,
        };
        assert_eq!(s.lora, want);
        let s = RunSettings::from_json(r#"{"lora_targets": "all", "adapter": "a/b"}"#).unwrap();
        assert_eq!(s.lora.targets.as_deref(), Some("all"));
        assert_eq!(s.lora.adapter, Some(PathBuf::from("a/b")));
        let e = RunSettings::from_json(r#"{"lora_rank": "big"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"big\""), "{e}");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_named() {
        let e = RunSettings::from_json(r#"{"stpes": 7}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stpes") && e.contains("the keys are steps"),
            "{e}"
        );
        let e = RunSettings::from_json(r#"{"steps": "many"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"many\""), "{e}");
        let e = RunSettings::from_json("[1]").unwrap_err().to_string();
        assert!(e.contains("training options [1]"), "{e}");
    }

    #[test]
    fn a_run_trains_and_saves_with_its_tokenizer() {
        let settings =
            RunSettings::from_json(r#"{"steps": 3, "batch": 2, "seq": 16, "device": "cpu"}"#)
                .unwrap();
        let plan = settings
            .plan(
                BaseModel::Source(ModelSource::parse("tiny").unwrap()),
                Some("synthetic:20000".into()),
            )
            .unwrap();
        let mut run = Run::start(plan, &TextOptions::default()).unwrap();
        assert!(
            run.notes.iter().any(|n| n.contains("258 tokens")),
            "{:?}",
            run.notes
        );
        let first = run.step().unwrap();
        let stopped = run.train(5, |m| m.step < 2).unwrap();
        assert_eq!(stopped.len(), 1, "the callback stops after step 2");
        let rest = run.train(5, |_| true).unwrap();
        assert_eq!(rest.len(), 1, "the run ends at its total of 3 steps");
        assert!(first.step == 1 && stopped[0].step == 2 && rest[0].step == 3);
        let e = run.step().unwrap_err().to_string();
        assert!(e.contains("total of 3 steps"), "{e}");
        assert!(run.evaluate().unwrap().loss.is_finite());
        let dir = tempfile::tempdir().unwrap();
        let ckpt = run.save(dir.path()).unwrap();
        let loaded = ModelSource::parse(ckpt.to_str().unwrap())
            .unwrap()
            .load(0)
            .unwrap();
        assert_eq!(loaded.tokenizer, Some(TokenizerSource::Byte));
        assert_eq!(loaded.params, *run.trainer.params());
        // A second run may not save over the first one's checkpoints.
        let plan =
            RunSettings::from_json(r#"{"steps": 1, "batch": 2, "seq": 16, "device": "cpu"}"#)
                .unwrap()
                .plan(
                    BaseModel::Loaded(Box::new(loaded)),
                    Some("synthetic:20000".into()),
                )
                .unwrap();
        let mut other = Run::start(plan, &TextOptions::default()).unwrap();
        let e = other.save(dir.path()).unwrap_err().to_string();
        assert!(e.contains("already holds a run"), "{e}");
    }
}
