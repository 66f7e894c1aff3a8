//! Linear layers `y = x Wᵀ` (Hugging Face `nn.Linear` without bias) and their two backward
//! products, on top of the `gemm` crate.
//!
//! Shapes: `x [n, d_in]`, `W [d_out, d_in]`, `y [n, d_out]`, all row-major. Cost `n·d_in·d_out`
//! multiply-adds for each of the three functions.

use gemm::{gemm, Parallelism};

/// `y = x Wᵀ`, overwriting `y [n, d_out]`.
pub fn linear_forward(y: &mut [f32], x: &[f32], w: &[f32], n: usize, d_in: usize, d_out: usize) {
    // lhs = x [n, d_in] (row stride d_in); rhs = Wᵀ [d_in, d_out], i.e. W read column-wise.
    matmul(
        y,
        false,
        Operand::new(x, n, d_in, d_in, 1),
        Operand::new(w, d_in, d_out, 1, d_in),
    );
}

/// `dx += dy W`: the gradient of `y = x Wᵀ` with respect to `x [n, d_in]`.
pub fn linear_backward_input(
    dx: &mut [f32],
    dy: &[f32],
    w: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    matmul(
        dx,
        true,
        Operand::new(dy, n, d_out, d_out, 1),
        Operand::new(w, d_out, d_in, d_in, 1),
    );
}

/// `dW += dyᵀ x`: the gradient of `y = x Wᵀ` with respect to `W [d_out, d_in]`.
pub fn linear_backward_weight(
    dw: &mut [f32],
    dy: &[f32],
    x: &[f32],
    n: usize,
    d_in: usize,
    d_out: usize,
) {
    matmul(
        dw,
        true,
        Operand::new(dy, d_out, n, 1, d_out),
        Operand::new(x, n, d_in, d_in, 1),
    );
}

/// A strided read-only matrix: element `(r, c)` is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        let op = Operand {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        };
        // The raw-pointer GEMM below trusts this bound; every caller derives shapes from a
        // validated config, so a failure here is a bug in this crate, not bad user input.
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(last < data.len(), "matrix view exceeds its buffer");
        }
        op
    }
}

/// `dst [a.rows, b.cols] (row-major) = a b`, or `+= a b` when `accumulate`.
fn matmul(dst: &mut [f32], accumulate: bool, a: Operand, b: Operand) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!(dst.len(), a.rows * b.cols, "destination has the wrong size");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: the asserts above and in `Operand::new` keep every index gemm touches,
    // `r*rs + c*cs` for r < rows and c < cols, inside the borrowed slices, and `dst` is a
    // unique borrow disjoint from the shared inputs.
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
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::Rayon(0),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0; a.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = a[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn the_three_products_match_naive_loops() {
        let (n, d_in, d_out) = (5, 7, 3);
        let x: Vec<f32> = (0..n * d_in).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..d_out * d_in).map(|i| (i as f32 * 0.91).cos()).collect();
        let dy: Vec<f32> = (0..n * d_out).map(|i| (i as f32 * 0.53).sin()).collect();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);

        let mut y = vec![9.0; n * d_out];
        linear_forward(&mut y, &x, &w, n, d_in, d_out);
        assert!(close(
            &y,
            &naive(&x, &transpose(&w, d_out, d_in), n, d_in, d_out)
        ));

        let mut dx = vec![1.0; n * d_in];
        linear_backward_input(&mut dx, &dy, &w, n, d_in, d_out);
        let want: Vec<f32> = naive(&dy, &w, n, d_out, d_in)
            .iter()
            .map(|v| v + 1.0)
            .collect();
        assert!(close(&dx, &want));

        let mut dw = vec![0.0; d_out * d_in];
        linear_backward_weight(&mut dw, &dy, &x, n, d_in, d_out);
        assert!(close(
            &dw,
            &naive(&transpose(&dy, n, d_out), &x, d_out, n, d_in)
        ));
    }
}
