//! One module per subcommand.

pub mod mil;
pub mod bench;
pub mod device;
pub mod doctor;
pub mod eval;
pub mod export;
pub mod generate;
pub mod import;
pub mod train;
