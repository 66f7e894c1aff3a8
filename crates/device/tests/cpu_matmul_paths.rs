//! `matmul_into`'s special paths equal a naive triple loop in every layout: matrix-vector
//! products (a width-1 decode step, the classifier over one token) with the vector on either
//! side, and long-`k` products cut into pieces along `k` (the classifier's input gradient),
//! each with operands by rows or by columns, overwriting or accumulating.

use anetrain_device::cpu::gemm::{matmul_into, MatRef};

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

/// A `rows × cols` matrix over `data`, row-major or (`by_columns`) column-major.
fn view(data: &[f32], rows: usize, cols: usize, by_columns: bool) -> MatRef<'_> {
    let (rs, cs) = if by_columns { (1, rows) } else { (cols, 1) };
    MatRef {
        data,
        offset: 0,
        rs: rs as isize,
        cs: cs as isize,
    }
}

fn at(m: &MatRef, i: usize, j: usize) -> f32 {
    m.data[(m.offset + i as isize * m.rs + j as isize * m.cs) as usize]
}

/// Checks `matmul_into` on `m×k · k×n` against an f64 triple loop for both operand layouts
/// and both write modes, into a result with `pad` unused floats after each row (which must
/// stay untouched).
fn check_against_naive(m: usize, n: usize, k: usize, pad: usize) {
    let dst_rs = n + pad;
    for (lhs_cols, rhs_cols) in [(false, false), (true, false), (false, true), (true, true)] {
        for accumulate in [false, true] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let (lhs, rhs) = (view(&a, m, k, lhs_cols), view(&b, k, n, rhs_cols));
            let start = values(m * dst_rs, 3);
            let mut got = start.clone();
            matmul_into(&mut got, dst_rs, lhs, rhs, m, n, k, accumulate, true).unwrap();
            for i in 0..m {
                for j in 0..dst_rs {
                    let g = got[i * dst_rs + j];
                    if j >= n {
                        assert_eq!(g, start[i * dst_rs + j], "padding [{i}][{j}] was written");
                        continue;
                    }
                    let sum: f64 = (0..k)
                        .map(|t| at(&lhs, i, t) as f64 * at(&rhs, t, j) as f64)
                        .sum();
                    let want = sum as f32
                        + if accumulate {
                            start[i * dst_rs + j]
                        } else {
                            0.0
                        };
                    assert!(
                        (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{m}x{k}·{k}x{n} lhs by columns {lhs_cols} rhs by columns {rhs_cols} \
                         accumulate {accumulate}: [{i}][{j}] {g} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn vector_products_equal_the_naive_sum_in_every_layout() {
    // (m, n, k): a column vector result, a row vector result, small and above the thread
    // threshold, lengths that are not multiples of the summation lanes.
    for (m, n, k) in [
        (37, 1, 45),
        (1, 29, 70),
        (2000, 1, 300),
        (1, 3000, 130),
        (1, 1, 33),
    ] {
        check_against_naive(m, n, k, 0);
    }
}

#[test]
fn long_k_products_cut_along_k_equal_the_naive_sum_in_every_layout() {
    // k at least 8× the result's sides and 2M+ multiply-adds: cut into pieces; 8001 and
    // 16_003 leave a short last piece, 9 rows of padding check the result's row stride.
    for (m, n, k, pad) in [(20, 16, 8001, 0), (3, 50, 16_003, 9), (64, 40, 8192, 0)] {
        check_against_naive(m, n, k, pad);
    }
}
