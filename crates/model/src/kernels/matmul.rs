//! Dynamic-weight matmuls: the weight travels in the kernel input next to the activation, so
//! a compiled kernel serves any weights (and every layer) without recompiling.
//!
//! Input `[1, ic, 1, s + oc]` fp16: columns `[0, s)` hold the activation `a [ic][s]`, columns
//! `[s, s + oc)` a staged matrix `M [ic][oc]`. Output `[1, oc, 1, s]`, `y = Mᵀ a`
//! (ane-reference §3.7, §6.2). Forward `y = W a` stages `M = Wᵀ`; backward `dx = Wᵀ dy`
//! stages `M = W`.

use anetrain_mil::{Builder, Bundle, DType, Var};

use super::forms::{KernelForms, MatmulForm};

use crate::error::Result;

use crate::error::ModelError;

/// The permutation that swaps the last two axes of a rank-4 tensor, the only transpose the
/// kernels use (ane-reference §3.7).
pub(crate) const SWAP_LAST: [usize; 4] = [0, 1, 3, 2];

/// Name of the single input of every kernel in this crate.
pub const INPUT: &str = "x";
/// Name of the single output of every kernel in this crate.
pub const OUTPUT: &str = "y";

/// Adds `y = Mᵀ a` reading activation and staged matrix from the packed input `x`
/// `[1, ic, 1, s + oc]`; returns `y` as `[1, oc, 1, s]`.
pub(crate) fn dynamic_matmul_into(
    b: &mut Builder,
    x: Var,
    ic: usize,
    oc: usize,
    s: usize,
    form: MatmulForm,
) -> Result<Var> {
    let a = b.slice(x, &[0, 0, 0, 0], &[1, ic, 1, s])?;
    let m = b.slice(x, &[0, 0, 0, s], &[1, ic, 1, oc])?;
    let a = b.reshape(a, &[1, 1, ic, s])?;
    let m = b.reshape(m, &[1, 1, ic, oc])?;
    // `[s][ic] · [ic][oc]`, by default as maderix's `gen_dyn_matmul` runs it on M1–M5:
    // explicit transposes around a plain matmul rather than a flag on a rectangular operand.
    let y = match form {
        MatmulForm::Transposes => {
            let a = b.transpose(a, &SWAP_LAST)?;
            b.matmul(a, m)?
        }
        MatmulForm::TransposeFlag => b.matmul_t(a, m, true, false)?,
    };
    let y = b.transpose(y, &SWAP_LAST)?;
    b.reshape(y, &[1, oc, 1, s]).map_err(ModelError::from)
}

/// `dynamic_matmul(ic, oc, s)`: input `[1, ic, 1, s + oc]`, output `[1, oc, 1, s]`, `y = Mᵀ a`.
pub fn dynamic_matmul(ic: usize, oc: usize, s: usize, forms: KernelForms) -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, ic, 1, s + oc])?;
    let y = dynamic_matmul_into(&mut b, x, ic, oc, s, forms.matmul)?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}

/// The SwiGLU activation `act = h1 · sigmoid(h1) · h3` `[1, hidden, 1, s]` of
/// `h13 = [h1; h3]` `[1, 2·hidden, 1, s]`. SiLU is spelled `mul(sigmoid)`, the form every ANE
/// project compiles.
pub(crate) fn swiglu_into(b: &mut Builder, h13: Var, hidden: usize, s: usize) -> Result<Var> {
    let h1 = b.slice(h13, &[0, 0, 0, 0], &[1, hidden, 1, s])?;
    let h3 = b.slice(h13, &[0, hidden, 0, 0], &[1, hidden, 1, s])?;
    let gate = b.sigmoid(h1)?;
    let silu = b.mul(h1, gate)?;
    b.mul(silu, h3).map_err(ModelError::from)
}

/// `ffn_up_fwd(dim, hidden, s)`: input `[1, dim, 1, s + 2·hidden]` with `M = [W1; W3]ᵀ`
/// staged; computes `h1 = W1 a`, `h3 = W3 a`, `act = h1 · sigmoid(h1) · h3` and returns
/// `[1, 3·hidden, 1, s]` holding `(h1, h3, act)` on channels.
pub fn ffn_up_fwd(dim: usize, hidden: usize, s: usize, forms: KernelForms) -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input(INPUT, DType::Fp16, [1, dim, 1, s + 2 * hidden])?;
    let h13 = dynamic_matmul_into(&mut b, x, dim, 2 * hidden, s, forms.matmul)?;
    let act = swiglu_into(&mut b, h13, hidden, s)?;
    let y = b.concat(&[h13, act], 1)?;
    b.output(y, OUTPUT)?;
    b.finish().map_err(ModelError::from)
}
