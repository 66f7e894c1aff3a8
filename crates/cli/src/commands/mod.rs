//! One module per subcommand.

pub mod mil;
pub mod eval;
pub mod export;
pub mod import;
pub mod train;
