//! Matrix products on strided views through the CPU device's `gemm` front, so transposed
//! operands (the `[C][S]` activations read as `[S][C]`, weights read as `Wᵀ`) cost no copies.

use crate::error::{ModelError, Result};
use anetrain_device::cpu::gemm::{matmul_into, MatRef as Strided};

/// A read-only strided matrix: element `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A strided view; fails if any element would fall outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 && (rows - 1) * rs + (cols - 1) * cs >= data.len() {
            return Err(ModelError::Input(format!(
                "a {rows}×{cols} matrix view with strides ({rs}, {cs}) needs more than the {} values given",
                data.len()
            )));
        }
        Ok(MatRef {
            data,
            rows,
            cols,
            rs,
            cs,
        })
    }

    /// A dense row-major `[rows][cols]` matrix.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        MatRef::new(data, rows, cols, cols, 1)
    }

    /// The same view in the device gemm front's terms.
    fn strided(self) -> Strided<'a> {
        Strided {
            data: self.data,
            offset: 0,
            rs: self.rs as isize,
            cs: self.cs as isize,
        }
    }

    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// `dst [a.rows][b.cols] (row-major) = a · b`, or `+= a · b` when `accumulate`.
/// Cost: `a.rows · a.cols · b.cols` multiply-adds, multithreaded when large. The summation
/// order depends only on the shapes, so results are bit-reproducible run to run.
pub fn matmul(dst: &mut [f32], accumulate: bool, a: MatRef, b: MatRef) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k || dst.len() != m * n {
        return Err(ModelError::Input(format!(
            "matmul of {m}×{k} by {}×{n} into a buffer of {} values",
            b.rows,
            dst.len()
        )));
    }
    matmul_into(dst, n, a.strided(), b.strided(), m, n, k, accumulate, true)
        .map_err(|e| ModelError::Input(e.to_string()))
}

/// `dw [out][in] += dy [out][S] · xᵀ` for activations `x [in][S]`: the weight gradient of
/// `y = W x` in the `[C][S]` layout.
pub fn weight_grad(dw: &mut [f32], dy: &[f32], x: &[f32], s: usize) -> Result<()> {
    let (out, inp) = (dy.len() / s.max(1), x.len() / s.max(1));
    matmul(
        dw,
        true,
        MatRef::rows(dy, out, s)?,
        MatRef::rows(x, inp, s)?.t(),
    )
}
