//! Matrix products on strided views through the `gemm` crate, so transposed operands (the
//! `[C][S]` activations read as `[S][C]`, weights read as `Wᵀ`) cost no copies.

use gemm::{gemm, Parallelism};

use crate::error::{ModelError, Result};

/// Below this many multiply-adds a product runs on the calling thread: splitting it over
/// rayon would cost more than it saves.
const PARALLEL_MACS: usize = 1 << 18;

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
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return Ok(());
    }
    let parallelism = if m * n * k >= PARALLEL_MACS {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    // SAFETY: `MatRef::new` keeps every `r·rs + c·cs` (r < rows, c < cols) inside its slice,
    // `dst` holds exactly m·n values written at `i·n + j`, and `dst` is a unique borrow
    // disjoint from the shared operands.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
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
