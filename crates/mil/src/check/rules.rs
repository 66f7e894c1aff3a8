//! The ANE constraint catalog as data (ane-reference §5, with §2.4, §2.5, §3.8 and §9).
//!
//! Applicability per chip follows what the reference records, and nothing more:
//! - a constraint stated without naming a chip applies to every chip (`Yes`);
//! - one observed on particular chips is `Yes` there, `No` where a source reports the opposite
//!   for that chip, and `Unknown` where nobody reported;
//! - a disputed constraint is `Unknown` on every chip the dispute covers.
//!
//! A limit whose value differs per chip is split into one rule per threshold (e.g. conv kernel
//! width ≥ 16 fails everywhere, 14–15 fails on M1 only), so every rule stays a yes/no fact.

use super::chip::Chip;
use std::fmt;

/// Whether a rule holds on a chip, as far as the sources know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applies {
    Yes,
    No,
    Unknown,
}

/// Where a rule comes from (the tags of ane-reference §0.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// maderix/ANE, its blog and community forks.
    Mx,
    /// mechramc/Orion.
    Or,
    /// ANEForge.
    Af,
    /// electricapp/ane-bridge-rs.
    Ab,
}

impl Source {
    /// The tag as the reference writes it.
    pub fn tag(self) -> &'static str {
        match self {
            Source::Mx => "MX",
            Source::Or => "OR",
            Source::Af => "AF",
            Source::Ab => "AB",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// What breaking a rule costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Compile failure, eval failure or silently wrong numbers.
    Error,
    /// Correct but slow, or a precision or range hazard that depends on the data.
    Warning,
}

/// How a rule is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// [`check`](super::check) inspects programs for it.
    Checked,
    /// The IR, the validator or the printer make breaking it impossible; listed for completeness.
    ByConstruction,
}

/// One ANE constraint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    /// Stable kebab-case name, used in reports and by the CLI.
    pub id: &'static str,
    /// The row of ane-reference §5, when the rule has one.
    pub number: Option<u8>,
    /// Where the reference discusses it (e.g. `§2.4`).
    pub section: &'static str,
    /// What goes wrong.
    pub description: &'static str,
    /// What to change.
    pub fix: &'static str,
    pub sources: &'static [Source],
    /// The sources disagree (ane-reference §9).
    pub disputed: bool,
    pub severity: Severity,
    pub enforcement: Enforcement,
    /// Applicability per chip, indexed by [`Chip::index`].
    pub applies: [Applies; 5],
}

impl Rule {
    /// Whether the rule holds on `chip`.
    pub fn applies_to(&self, chip: Chip) -> Applies {
        self.applies[chip.index()]
    }
}

use Applies::{No as N, Unknown as U, Yes as Y};
use Enforcement::{ByConstruction, Checked};
use Severity::{Error, Warning};
use Source::{Ab, Af, Mx, Or};

const ALL: [Applies; 5] = [Y; 5];
const NONE_KNOWN: [Applies; 5] = [U; 5];

/// The catalog, in the order of ane-reference §5 where rules have a number.
pub static RULES: &[Rule] = &[
    Rule {
        id: "concat",
        number: Some(6),
        section: "§3.7",
        description: "OR reports ANECCompile failing for every kernel with `concat`; MX uses it in every kernel and AF finds it correct",
        fix: "if it fails to compile, return several outputs instead of concatenating",
        sources: &[Or, Mx, Af],
        disputed: true,
        severity: Error,
        enforcement: Checked,
        applies: NONE_KNOWN,
    },
    Rule {
        id: "equal-output-sizes",
        number: Some(7),
        section: "§2.5",
        description: "several outputs need equal allocation sizes, otherwise eval fails with 0x1d",
        fix: "give every output the largest output's size (pad the smaller ones), or return one concatenated output",
        sources: &[Or],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "equal-input-sizes",
        number: Some(8),
        section: "§2.5",
        description: "several inputs need equal allocation sizes, otherwise eval fails with 0x1d",
        fix: "pack the inputs into one tensor along the channel or spatial axis (MX), or give every input the same size (OR)",
        sources: &[Mx, Or],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "io-min-bytes",
        number: Some(11),
        section: "§2.4",
        description: "buffers smaller than 49,152 bytes compile and then fail at eval with 0x1d (OR on M4 Max); the ANE reads a declared shape packed from the start of a larger buffer (OR#14), so it is the allocation that must reach the minimum",
        fix: "allocate the surface at 49,152 bytes or more (anetrain's ANE device always does), or pad the tensor, e.g. a 16-wide decode bucket with the unused columns zeroed",
        sources: &[Or],
        disputed: false,
        severity: Warning,
        enforcement: Checked,
        applies: [U, U, U, Y, U],
    },
    Rule {
        id: "io-width-multiple-of-32",
        number: Some(12),
        section: "§2.4",
        description: "the last axis of every input and output must be a multiple of 32 and at least 32: narrower fails at dispatch, \
                      other widths are read with rows padded to the next multiple of 32 (silently wrong data); AB on M5, \
                      while OR's 16-wide decode works on M4 Max",
        fix: "pad the last axis to a multiple of 32 (at least 32) and ignore the extra columns",
        sources: &[Ab, Or],
        disputed: true,
        severity: Error,
        enforcement: Checked,
        applies: [U, U, U, U, Y],
    },
    Rule {
        id: "sdpa-mask-ignored",
        number: Some(13),
        section: "§3.7",
        description: "scaled_dot_product_attention compiles and runs but ignores `attn_mask`, so causal attention is not causal",
        fix: "write attention out: matmul Q·Kᵀ, scale, add the mask, softmax, matmul with V",
        sources: &[Mx, Or],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "gelu",
        number: Some(14),
        section: "§3.7",
        description: "OR reports `gelu` fails to compile; AF lists it as a native op",
        fix: "use the tanh approximation built from mul, add and tanh",
        sources: &[Or, Af],
        disputed: true,
        severity: Error,
        enforcement: Checked,
        applies: NONE_KNOWN,
    },
    Rule {
        id: "named-matmul-flags",
        number: Some(15),
        section: "§3.5",
        description: "matmul's transpose flags must be named bool consts; inline true/false is rejected",
        fix: "declare `bool` consts and pass them by name",
        sources: &[Or],
        disputed: false,
        severity: Error,
        enforcement: ByConstruction,
        applies: ALL,
    },
    Rule {
        id: "conv-no-bias",
        number: Some(16),
        section: "§3.7",
        description: "`conv` has no `bias` argument",
        fix: "add the bias with a separate `add`",
        sources: &[Or],
        disputed: false,
        severity: Error,
        enforcement: ByConstruction,
        applies: ALL,
    },
    Rule {
        id: "dead-return-value",
        number: Some(17),
        section: "§3.3",
        description: "every name in the return list must be a value the function computes; a dead name gives InvalidMILProgram",
        fix: "return only values that an op produces",
        sources: &[Or],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "dead-op",
        number: Some(17),
        section: "§3.3",
        description: "ops whose results never reach a returned value (dead subgraphs) can make the whole compile fail",
        fix: "remove the op (eliminate dead code before emitting)",
        sources: &[Or, Ab],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "build-info-one-line",
        number: Some(18),
        section: "§3.2",
        description: "the buildInfo attribute must be on one line",
        fix: "emit it on one line",
        sources: &[Ab],
        disputed: false,
        severity: Error,
        enforcement: ByConstruction,
        applies: ALL,
    },
    Rule {
        id: "static-shapes",
        number: Some(19),
        section: "§3.3",
        description: "shapes must be static; a `?` dimension gives InvalidMILProgram",
        fix: "bucket dynamic sizes (OR uses sequence-length buckets)",
        sources: &[Ab],
        disputed: false,
        severity: Error,
        enforcement: ByConstruction,
        applies: ALL,
    },
    Rule {
        id: "fp16-compute",
        number: Some(20),
        section: "§3.8",
        description: "arithmetic must be fp16: fp32 and int32 compute fail to compile",
        fix: "keep fp32 only at the boundary: `cast` fp32 inputs to fp16 first and cast back just before an fp32 output",
        sources: &[Ab, Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "reduce-sum-precision",
        number: Some(23),
        section: "§5",
        description: "reduce_sum accumulates in fp16, so error grows roughly with √K for signed sums over K ≥ 256 elements \
                      (matmul and conv accumulate wide)",
        fix: "rewrite the long sum as a matmul with a ones vector [K, 1]",
        sources: &[Af],
        disputed: false,
        severity: Warning,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "width-offset-slice-concat",
        number: Some(24),
        section: "§5",
        description: "a concat of two or more slice_by_size results that begin past 0 on the last axis gives wrong elements \
                      on M1–M3 (crop DMA); exact on M4 and M5",
        fix: "slice on a non-last axis (pack along channels), or concat on the CPU",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: [Y, Y, Y, N, N],
    },
    Rule {
        id: "width-offset-slice-range",
        number: Some(24),
        section: "§5",
        description: "slice_by_size beginning past 0 on the last axis goes through a Q.4 ×16 encoding: on M1 and M2 sliced \
                      magnitudes above 4094 become ±inf",
        fix: "keep sliced magnitudes below 4094, or slice on a non-last axis",
        sources: &[Af],
        disputed: false,
        severity: Warning,
        enforcement: Checked,
        applies: [Y, Y, N, N, N],
    },
    Rule {
        id: "int8-weight-activation-range",
        number: Some(25),
        section: "§5",
        description: "a matmul or conv with int8 weights sends activations through a ×16 encoding that saturates past 4094",
        fix: "keep activations below 4094 in magnitude, or use fp16 weights",
        sources: &[Af],
        disputed: false,
        severity: Warning,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "axis-extent-16384",
        number: Some(26),
        section: "§5",
        description: "the last two axes (spatial and matmul axes) may not exceed 16384 on M1–M3 (65536 on M4 and later)",
        fix: "tile the computation along that axis",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: [Y, Y, Y, N, N],
    },
    Rule {
        id: "axis-extent-65536",
        number: Some(26),
        section: "§5",
        description: "no axis may exceed 65536",
        fix: "tile the computation along that axis",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "conv-kernel-width-16",
        number: Some(27),
        section: "§5",
        description: "a conv kernel 16 or more wide fails with ANECCompile \"Not implemented\"",
        fix: "split the kernel into narrower convs and add the results",
        sources: &[Af, Ab],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "conv-kernel-width-14",
        number: Some(27),
        section: "§5",
        description: "a conv kernel 14 or 15 wide fails on M1 (limit 13); M4 and M5 allow 15; M2 and M3 are unreported",
        fix: "split the kernel into convs at most 13 wide and add the results",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: [Y, U, U, N, N],
    },
    Rule {
        id: "conv-input-channels-32000",
        number: Some(28),
        section: "§5",
        description: "a conv with 32000 input channels is rejected (32000 output channels work)",
        fix: "use a matmul over a rank-3 [1, V, S] layout instead",
        sources: &[Mx],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "conv-input-channels-8192",
        number: Some(28),
        section: "§5",
        description: "a community MX fork reports an 8192-input-channel limit for conv; unconfirmed",
        fix: "split the input channels into chunks of at most 8192 and add the partial convs",
        sources: &[Mx],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: NONE_KNOWN,
    },
    Rule {
        id: "weights-over-2gb",
        number: Some(29),
        section: "§5",
        description: "a program's constants may total about 2 GB at most (3.4 GB fails)",
        fix: "split the model into several programs (AF chunks at 1.6 GB)",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "weights-over-1.5gb",
        number: Some(29),
        section: "§5",
        description: "constants between 1.5 GB (known to work) and 2 GB (the reported ceiling) are untested",
        fix: "split the model into several programs (AF chunks at 1.6 GB)",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: NONE_KNOWN,
    },
    Rule {
        id: "sram-working-set",
        number: Some(30),
        section: "§5",
        description: "an op whose inputs and outputs exceed the ~32 MB on-chip SRAM spills and runs about 30% slower",
        fix: "tile the op so its working set stays under about 24–32 MB",
        sources: &[Mx, Or],
        disputed: false,
        severity: Warning,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "reduce-mean-m5",
        number: Some(33),
        section: "§5",
        description: "reduce_mean compiles and then fails at dispatch on M5 (AB); OR and AF use it on other chips",
        fix: "use reduce_sum followed by a mul by 1/n, or a strided averaging conv",
        sources: &[Ab, Or, Af],
        disputed: true,
        severity: Error,
        enforcement: Checked,
        applies: [N, N, N, N, U],
    },
    Rule {
        id: "transcendentals",
        number: Some(34),
        section: "§5",
        description: "AB reports exp, log and sqrt (and sin, cos, atan) fail to compile; AF says they are native",
        fix: "build the function from mul, add, relu and real_div, or compute it on the CPU",
        sources: &[Ab, Af],
        disputed: true,
        severity: Error,
        enforcement: Checked,
        applies: NONE_KNOWN,
    },
    Rule {
        id: "io-rank",
        number: None,
        section: "§2.3",
        description: "inputs and outputs of rank 4 [1, C, H, W] and rank 3 [1, C, S] are known to work; the framework \
                      canonicalises other ranks and batches to NCHW but nobody reports running them",
        fix: "reshape to [1, C, 1, S] at the boundary",
        sources: &[Mx, Ab],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: NONE_KNOWN,
    },
    Rule {
        id: "no-anchor",
        number: None,
        section: "§3.8",
        description: "a program without a conv, linear or matmul may be left on the CPU and refused at load",
        fix: "anchor the program with a conv, linear or matmul (a 1×1 identity conv works)",
        sources: &[Ab],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "rank-at-most-5",
        number: None,
        section: "§3.8",
        description: "reshape and transpose stop at rank 5; rank 6 is rejected",
        fix: "merge adjacent axes so no tensor has more than 5",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
    Rule {
        id: "matmul-rank-5-transpose",
        number: None,
        section: "§3.8",
        description: "a rank-5 matmul that transposes an operand (a transpose flag or a transpose op) fails",
        fix: "merge the batch axes so the matmul is rank 4 or less",
        sources: &[Af],
        disputed: false,
        severity: Error,
        enforcement: Checked,
        applies: ALL,
    },
];

/// The whole catalog, for listing (`anetrain mil rules`).
pub fn rules() -> &'static [Rule] {
    RULES
}

/// The rule with id `id`.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}
