//! Training: optimizers, the learning-rate schedule, loss scaling, clipping, the step loop,
//! checkpoints and metrics. The loop drives any [`crate::engine::Engine`], so switching from
//! the reference model to MIL kernels on a device is one constructor argument.

pub mod base_ref;
pub mod checkpoint;
pub mod clip;
pub mod eval;
pub mod follow;
pub mod loss_scale;
pub mod metrics;
pub mod optimizer;
pub mod options;
pub mod resume;
pub mod run_dir;
pub mod run_lock;
pub mod schedule;
pub mod start;
pub mod trainer;

pub use base_ref::BaseRef;
pub use checkpoint::{Checkpoint, CheckpointMeta, DataProvenance, TrainState};
pub use eval::{evaluate, EvalResult};
pub use follow::{Activity, Change, MetricsFollower};
pub use loss_scale::LossScaler;
pub use metrics::{MetricsLog, StepMetrics};
pub use optimizer::{Optimizer, OptimizerSpec, StatePrecision};
pub use options::TrainOptions;
pub use resume::ResumePlan;
pub use run_dir::RUN_FILE;
pub use run_lock::RunLock;
pub use schedule::Schedule;
pub use start::{BaseModel, OptionChanges, Run, RunPlan, RunSettings};
pub use trainer::Trainer;
