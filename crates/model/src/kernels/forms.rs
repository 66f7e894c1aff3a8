//! Kernel forms: where two MIL spellings compute the same values, which one the generator
//! emits. The defaults are the forms peers have run on Apple hardware (ane-reference §3.7);
//! the others are fallbacks for a machine whose capability file (`anetrain doctor --probe`)
//! shows a default failing and the fallback working. Each form has a probe kernel of its own
//! in the probe catalog, so the file can say so.

use anetrain_device::ane::capabilities::Capabilities;
use anetrain_device::Device;
use anetrain_mil::{Builder, Bundle, DType};

use super::matmul::{dynamic_matmul, OUTPUT};
use super::INPUT;
use crate::error::{ModelError, Result};

/// How a dynamic matmul reads its `[ic][s]` activation as `[s][ic]` rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulForm {
    /// An explicit transpose, a plain matmul, and a transpose back (maderix's
    /// `gen_dyn_matmul`, run on M1–M5).
    #[default]
    Transposes,
    /// `matmul(transpose_x = true)` on the rectangular activation, one transpose op fewer; no
    /// peer runs a transpose flag on a rectangular operand.
    TransposeFlag,
}

/// How attention backward sums `P ⊙ dP` over the keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RowSumForm {
    /// `reduce_sum` over the last axis (maderix's `sdpaBwd2`).
    #[default]
    ReduceSum,
    /// A matmul with a constant column of ones: accumulates wide, but no peer runs a matmul
    /// with a constant operand.
    OnesMatmul,
}

/// The form of every choice the kernel generator has; [`Default`] is the proven set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelForms {
    pub matmul: MatmulForm,
    pub row_sum: RowSumForm,
}

/// One choice between forms, so selection and probing are written once for all choices.
trait Form: Copy + Eq + Sized + 'static {
    /// Every form, the proven default first, then fallbacks in order of preference.
    const ALL: &'static [Self];
    /// What is being chosen, for messages.
    const CHOICE: &'static str;
    /// The form's name, for messages.
    fn name(self) -> &'static str;
    /// The id of its probe kernel in the probe catalog and the capability file.
    fn probe_id(self) -> &'static str;
    /// A small kernel exercising the form (ports of at least 48 KiB).
    fn probe_kernel(self) -> Result<Bundle>;
}

impl Form for MatmulForm {
    const ALL: &'static [MatmulForm] = &[MatmulForm::Transposes, MatmulForm::TransposeFlag];
    const CHOICE: &'static str = "dynamic matmul";

    fn name(self) -> &'static str {
        match self {
            MatmulForm::Transposes => "transpose + matmul + transpose",
            MatmulForm::TransposeFlag => "matmul(transpose_x) on a rectangular operand",
        }
    }

    fn probe_id(self) -> &'static str {
        match self {
            MatmulForm::Transposes => "form-matmul-transposes",
            MatmulForm::TransposeFlag => "form-matmul-transpose-flag",
        }
    }

    fn probe_kernel(self) -> Result<Bundle> {
        let forms = KernelForms {
            matmul: self,
            ..KernelForms::default()
        };
        dynamic_matmul(384, 384, 64, forms)
    }
}

impl Form for RowSumForm {
    const ALL: &'static [RowSumForm] = &[RowSumForm::ReduceSum, RowSumForm::OnesMatmul];
    const CHOICE: &'static str = "attention row sum";

    fn name(self) -> &'static str {
        match self {
            RowSumForm::ReduceSum => "reduce_sum",
            RowSumForm::OnesMatmul => "matmul with a column of ones",
        }
    }

    fn probe_id(self) -> &'static str {
        match self {
            RowSumForm::ReduceSum => "form-row-sum-reduce",
            RowSumForm::OnesMatmul => "form-row-sum-ones-matmul",
        }
    }

    /// `h − rowsum(h)/64` for `h = a·a` per head, `a` the input as `[1, 6, 64, 64]`: the
    /// square matmul anchors the kernel and makes every row sum distinct.
    fn probe_kernel(self) -> Result<Bundle> {
        let mut b = Builder::new();
        let x = b.input(INPUT, DType::Fp16, [1, 384, 1, 64])?;
        let a = b.reshape(x, &[1, 6, 64, 64])?;
        let h = b.matmul(a, a)?;
        let sums = super::attention::row_sum(&mut b, h, self)?;
        let mean = b.scale(sums, 1.0 / 64.0)?;
        let centred = b.sub(h, mean)?;
        let y = b.reshape(centred, &[1, 384, 1, 64])?;
        b.output(y, OUTPUT)?;
        b.finish().map_err(ModelError::from)
    }
}

/// Whether every recorded result of `form`'s probe passed; `None` when it was not probed.
fn measured<F: Form>(caps: &Capabilities, form: F) -> Option<(bool, Option<&str>)> {
    let mut results = caps
        .probes
        .iter()
        .filter(|p| p.op == form.probe_id())
        .peekable();
    results.peek()?;
    let mut error = None;
    let mut passed = true;
    for p in results {
        if !(p.compiled && p.ran) {
            passed = false;
            error = error.or(p.error.as_deref());
        }
    }
    Some((passed, error))
}

/// The default unless `caps` shows it failing; then the first fallback `caps` shows working,
/// or an error naming the failed form and how to measure the others.
fn choose<F: Form>(caps: &Capabilities) -> Result<F> {
    let default = F::ALL[0];
    let Some((false, error)) = measured(caps, default) else {
        return Ok(default);
    };
    if let Some(&working) = F::ALL[1..]
        .iter()
        .find(|&&f| matches!(measured(caps, f), Some((true, _))))
    {
        return Ok(working);
    }
    let others: Vec<String> = F::ALL[1..]
        .iter()
        .map(|&f| {
            let status = match measured(caps, f) {
                Some(_) => "failed",
                None => "not probed",
            };
            format!("`{}` ({status})", f.name())
        })
        .collect();
    Err(ModelError::Options(format!(
        "the {} form `{}` failed on this machine's Neural Engine (probe `{}`: {}) and no \
         alternative form is known to work ({}); run `anetrain doctor --probe` to measure the \
         alternatives, or train and generate with --device cpu",
        F::CHOICE,
        default.name(),
        default.probe_id(),
        error.unwrap_or("no message"),
        others.join(", ")
    )))
}

/// The kernel of the probe of `F` with id `id`, if one has it.
fn probe_of<F: Form>(id: &str) -> Option<Result<Bundle>> {
    F::ALL
        .iter()
        .find(|f| f.probe_id() == id)
        .map(|f| f.probe_kernel())
}

impl KernelForms {
    /// The forms a capability file allows: each default, unless the file shows it failing.
    pub fn from_capabilities(caps: &Capabilities) -> Result<KernelForms> {
        Ok(KernelForms {
            matmul: choose(caps)?,
            row_sum: choose(caps)?,
        })
    }

    /// The forms for kernels compiled on `device`: from its capability file when it has one
    /// (the ANE), else the defaults (the CPU runs every form alike).
    pub fn for_device(device: &dyn Device) -> Result<KernelForms> {
        match device.capabilities() {
            Some(caps) => KernelForms::from_capabilities(caps),
            None => Ok(KernelForms::default()),
        }
    }

    /// Every combination of forms, the defaults first: what tests run on the CPU to show that
    /// each computes the same values.
    pub fn every() -> Vec<KernelForms> {
        let mut all = Vec::new();
        for &matmul in MatmulForm::ALL {
            for &row_sum in RowSumForm::ALL {
                all.push(KernelForms { matmul, row_sum });
            }
        }
        all
    }

    /// The id of every form's probe, for the catalog of `anetrain doctor --probe`.
    pub fn probe_ids() -> Vec<&'static str> {
        let matmul = MatmulForm::ALL.iter().map(|f| f.probe_id());
        matmul
            .chain(RowSumForm::ALL.iter().map(|f| f.probe_id()))
            .collect()
    }

    /// The kernel of the form probe `id` ([`KernelForms::probe_ids`]).
    pub fn probe_kernel(id: &str) -> Option<Result<Bundle>> {
        probe_of::<MatmulForm>(id).or_else(|| probe_of::<RowSumForm>(id))
    }

    /// One line per choice naming the form chosen, for `mil dump` and dry runs.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("{}: {}", MatmulForm::CHOICE, self.matmul.name()),
            format!("{}: {}", RowSumForm::CHOICE, self.row_sum.name()),
        ]
    }
}
