//! `matmul`, `linear` and `conv`, all lowered onto [`matmul_into`] (the `gemm` crate).
//!
//! Operands are passed to gemm as strided views, so transposes, slices and the no-copy
//! reshapes in front of a matmul cost nothing. A 1×1 convolution is one product per batch
//! and group; other convolutions first unfold their input window by window (im2col).

use super::gemm::{matmul_into, MatRef, PAR_MACS};
use super::pool::Pool;
use super::shape_ops::reshape;
use super::tensor::{broadcast_strides, Tensor};
use crate::error::Result;
use anetrain_mil::infer::{broadcast_shapes, ConvPlan};
use rayon::prelude::*;

/// One operand of a batched matmul: batch axes plus a strided `rows × cols` matrix.
struct Batched {
    batch: Vec<usize>,
    batch_strides: Vec<isize>,
    rows: usize,
    cols: usize,
    rs: isize,
    cs: isize,
}

/// Shapes only: `(batch, rows, cols)` of an operand after rank-1 promotion and transpose.
fn matrix_dims(shape: &[usize], lhs: bool, transpose: bool) -> (Vec<usize>, usize, usize) {
    match shape {
        [k] if lhs => (vec![], 1, *k),
        [k] => (vec![], *k, 1),
        _ => {
            let r = shape.len();
            let (a, b) = (shape[r - 2], shape[r - 1]);
            let (rows, cols) = if transpose { (b, a) } else { (a, b) };
            (shape[..r - 2].to_vec(), rows, cols)
        }
    }
}

fn batched(t: &Tensor, lhs: bool, transpose: bool) -> Batched {
    let (batch, rows, cols) = matrix_dims(t.shape(), lhs, transpose);
    let s = t.strides();
    let r = s.len();
    let (rs, cs) = match r {
        1 if lhs => (0, s[0]),
        1 => (s[0], 0),
        _ if transpose => (s[r - 1], s[r - 2]),
        _ => (s[r - 2], s[r - 1]),
    };
    Batched {
        batch_strides: s[..r.saturating_sub(2)].to_vec(),
        batch,
        rows,
        cols,
        rs,
        cs,
    }
}

/// Offset of batch `b` (row-major over `batch`) for the given batch strides.
fn batch_offset(mut b: usize, batch: &[usize], strides: &[isize]) -> isize {
    let mut off = 0;
    for d in (0..batch.len()).rev() {
        off += (b % batch[d]) as isize * strides[d];
        b /= batch[d];
    }
    off
}

/// Elements gemm repacks for one `m×k · k×n` product written row-major `[m][n]`, from the
/// operands' `(row, column)` strides (`x` is `m×k`, `y` is `k×n`): gemm computes such a result
/// as its transpose `yᵀ·xᵀ` and repacks `y` unless `y`'s column stride is 1, and `x` unless
/// `x`'s is.
fn packed_elements(x: (isize, isize), y: (isize, isize), m: usize, n: usize, k: usize) -> usize {
    let (x_cs, y_cs) = (x.1, y.1);
    usize::from(y_cs.unsigned_abs() != 1) * k * n + usize::from(x_cs.unsigned_abs() != 1) * m * k
}

/// Whether one 2-D product is cheaper written column-major, as `yᵀ·xᵀ` into `[n][m]` (then
/// returned as a transposed view): true when gemm then repacks fewer elements. A weight stored `[out][in]` and read as `Wᵀ` by `aᵀ·Wᵀ` is the case this is for:
/// gemm would otherwise repack all of `W` on every call.
fn transposed_is_cheaper(a: &Batched, b: &Batched) -> bool {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let direct = packed_elements((a.rs, a.cs), (b.rs, b.cs), m, n, k);
    // `yᵀ·xᵀ`: the `n×k` left operand `yᵀ` has strides `(b.cs, b.rs)`, the `k×m` right `xᵀ`
    // has `(a.cs, a.rs)`.
    let swapped = packed_elements((b.cs, b.rs), (a.cs, a.rs), n, m, k);
    swapped < direct
}

/// `matmul(x, y)` into `out_shape`, packed, or as a transposed view of a packed `[n][m]` when
/// [`transposed_is_cheaper`]. A few large products run one after another with gemm
/// parallelised inside; many, or small ones, run in parallel across batches.
pub(crate) fn matmul(
    x: &Tensor,
    y: &Tensor,
    tx: bool,
    ty: bool,
    out_shape: &[usize],
    pool: &mut Pool,
) -> Result<Tensor> {
    let (a, b) = (batched(x, true, tx), batched(y, false, ty));
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let batch = broadcast_shapes(&a.batch, &b.batch).unwrap_or_default();
    let xs = broadcast_strides(&a.batch, &a.batch_strides, &batch);
    let ys = broadcast_strides(&b.batch, &b.batch_strides, &batch);
    let count: usize = batch.iter().product();
    let mut out = pool.take_for_write(count * m * n);
    if count == 1 && out_shape.len() >= 2 && transposed_is_cheaper(&a, &b) {
        let lhs = MatRef {
            data: y.storage(),
            offset: y.offset() as isize,
            rs: b.cs,
            cs: b.rs,
        };
        let rhs = MatRef {
            data: x.storage(),
            offset: x.offset() as isize,
            rs: a.cs,
            cs: a.rs,
        };
        matmul_into(&mut out, m, lhs, rhs, n, m, k, false, true)?;
        let r = out_shape.len();
        let mut swapped = out_shape.to_vec();
        swapped.swap(r - 2, r - 1);
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        return Ok(Tensor::new(swapped, out).permute(&perm));
    }
    let one = |bi: usize, dst: &mut [f32], parallel: bool| {
        let lhs = MatRef {
            data: x.storage(),
            offset: x.offset() as isize + batch_offset(bi, &batch, &xs),
            rs: a.rs,
            cs: a.cs,
        };
        let rhs = MatRef {
            data: y.storage(),
            offset: y.offset() as isize + batch_offset(bi, &batch, &ys),
            rs: b.rs,
            cs: b.cs,
        };
        matmul_into(dst, n, lhs, rhs, m, n, k, false, parallel)
    };
    // Enough products to keep every thread busy (attention heads) run side by side, each on
    // one thread: one fork-join for all of them instead of one inside every product.
    let across = count >= 2 * rayon::current_num_threads() || m * n * k < PAR_MACS;
    if m * n > 0 && (count == 1 || !across) {
        for (bi, dst) in out.chunks_mut(m * n).enumerate() {
            one(bi, dst, true)?;
        }
    } else if m * n > 0 {
        out.par_chunks_mut(m * n)
            .enumerate()
            .try_for_each(|(bi, dst)| one(bi, dst, false))?;
    }
    Ok(Tensor::new(out_shape.to_vec(), out))
}

/// `linear`: `x · weightᵀ + bias`, the bias written first and the product accumulated onto it.
pub(crate) fn linear(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    out_shape: &[usize],
    pool: &mut Pool,
) -> Result<Tensor> {
    let (outn, inn) = (w.shape()[0], w.shape()[1]);
    let m = out_shape.iter().product::<usize>() / outn.max(1);
    let x2 = reshape(x, &[m, inn], pool);
    let mut out = pool.take_for_write(m * outn);
    if let Some(b) = bias {
        let mut row = vec![0.0; outn];
        b.copy_to(&mut row);
        out.chunks_mut(outn)
            .for_each(|dst| dst.copy_from_slice(&row));
    }
    let lhs = MatRef {
        data: x2.storage(),
        offset: x2.offset() as isize,
        rs: x2.strides()[0],
        cs: x2.strides()[1],
    };
    let rhs = MatRef {
        data: w.storage(),
        offset: w.offset() as isize,
        rs: w.strides()[1],
        cs: w.strides()[0],
    };
    matmul_into(&mut out, outn, lhs, rhs, m, outn, inn, bias.is_some(), true)?;
    Ok(Tensor::new(out_shape.to_vec(), out))
}

/// Unfolds channels `c0..c0+cin_g` of image `b` of the packed `x` into `col`
/// (`[cin_g·kh·kw, ho·wo]`), zero outside the padded border. Parallel over `col` rows.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    shape: [usize; 4],
    b: usize,
    c0: usize,
    kernel: [usize; 3],
    out_hw: [usize; 2],
    p: &ConvPlan,
    col: &mut [f32],
) {
    let [_, cin, h, w] = shape;
    let [_, kh, kw] = kernel;
    let [ho, wo] = out_hw;
    col.par_chunks_mut(ho * wo)
        .enumerate()
        .for_each(|(r, dst)| {
            let (c, i, j) = (r / (kh * kw), (r / kw) % kh, r % kw);
            let plane = &x[((b * cin) + c0 + c) * h * w..][..h * w];
            for oy in 0..ho {
                let iy = (oy * p.strides[0] + i * p.dilations[0]) as isize - p.pad[0].0 as isize;
                let row = &mut dst[oy * wo..(oy + 1) * wo];
                if iy < 0 || iy >= h as isize {
                    row.fill(0.0);
                    continue;
                }
                for (ox, d) in row.iter_mut().enumerate() {
                    let ix =
                        (ox * p.strides[1] + j * p.dilations[1]) as isize - p.pad[1].0 as isize;
                    *d = if ix < 0 || ix >= w as isize {
                        0.0
                    } else {
                        plane[iy as usize * w + ix as usize]
                    };
                }
            }
        });
}

/// `conv` of `x [N, Cin, H, W]` with `weight [Cout, Cin/groups, kH, kW]` into `out_shape`.
pub(crate) fn conv(
    x: &Tensor,
    weight: &Tensor,
    p: &ConvPlan,
    out_shape: &[usize],
    pool: &mut Pool,
) -> Result<Tensor> {
    let (n, cin, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (cout, cin_g, kh, kw) = (
        weight.shape()[0],
        weight.shape()[1],
        weight.shape()[2],
        weight.shape()[3],
    );
    let (ho, wo) = (out_shape[2], out_shape[3]);
    let (g, cout_g, kdim, hw_out) = (p.groups, cout / p.groups, cin_g * kh * kw, ho * wo);
    let wt = weight.contiguous(pool);
    let mut out = pool.take_for_write(n * cout * hw_out);
    let pointwise = kh == 1 && kw == 1 && p.strides == [1, 1] && p.pad == [(0, 0); 2];
    // Output channels of group `gi` for image `b`: the group's weight rows times `rhs`.
    let product = |out: &mut [f32], b: usize, gi: usize, rhs: MatRef<'_>| {
        let lhs = MatRef {
            data: wt.storage(),
            offset: (wt.offset() + gi * cout_g * kdim) as isize,
            rs: kdim as isize,
            cs: 1,
        };
        let dst = &mut out[(b * cout + gi * cout_g) * hw_out..][..cout_g * hw_out];
        matmul_into(dst, hw_out, lhs, rhs, cout_g, hw_out, kdim, false, true)
    };
    if pointwise {
        let xv = reshape(x, &[n, cin, h * wd], pool);
        let s = xv.strides();
        for b in 0..n {
            for gi in 0..g {
                let rhs = MatRef {
                    data: xv.storage(),
                    offset: xv.offset() as isize + b as isize * s[0] + (gi * cin_g) as isize * s[1],
                    rs: s[1],
                    cs: s[2],
                };
                product(&mut out, b, gi, rhs)?;
            }
        }
    } else {
        let xc = x.contiguous(pool);
        let xdata = xc.as_contiguous().unwrap_or_default();
        let mut col = pool.take_for_write(kdim * hw_out);
        for b in 0..n {
            for gi in 0..g {
                im2col(
                    xdata,
                    [n, cin, h, wd],
                    b,
                    gi * cin_g,
                    [cin_g, kh, kw],
                    [ho, wo],
                    p,
                    &mut col,
                );
                let rhs = MatRef {
                    data: &col,
                    offset: 0,
                    rs: hw_out as isize,
                    cs: 1,
                };
                product(&mut out, b, gi, rhs)?;
            }
        }
        pool.put(col);
    }
    Ok(Tensor::new(out_shape.to_vec(), out))
}
