//! One module per subcommand.

pub mod bench;
pub mod bench_generate;
pub mod bench_train;
pub mod chat;
pub mod child;
pub mod dashboard;
pub mod device;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod fuse;
pub mod generate;
pub mod import;
pub mod measure;
pub mod mil;
pub mod plot;
pub mod probe;
pub mod restart;
pub mod sampling;
pub mod train;
