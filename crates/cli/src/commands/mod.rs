//! One module per subcommand.

pub mod mil;
