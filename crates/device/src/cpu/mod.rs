//! The CPU device: a MIL interpreter that is both the reference semantics and fast.

/// How the CPU device rounds intermediate results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Every tensor is held in fp32, whatever dtype the program declares.
    #[default]
    F32,
    /// Every fp16-typed op result is rounded to fp16, as the ANE's datapath does.
    F16,
}

/// The CPU device.
#[derive(Clone, Debug, Default)]
pub struct CpuDevice {
    pub precision: Precision,
}
