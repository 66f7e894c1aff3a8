//! Ops that move data without arithmetic: slices, reshape, transpose and split are views of
//! their input; concat copies into a fresh buffer. `mil` resolves the geometry at compile
//! time, so the run loop only adjusts offsets and strides.

use super::pool::Pool;
use super::tensor::{contiguous_strides, copy_into_strided, Tensor};
use anetrain_mil::infer::SlicePlan;

/// The view a slice selects.
pub(crate) fn slice(x: &Tensor, p: &SlicePlan) -> Tensor {
    let mut offset = x.offset() as isize;
    let (mut shape, mut strides) = (Vec::new(), Vec::new());
    for d in 0..x.rank() {
        offset += p.begin[d] as isize * x.strides()[d];
        if !p.squeeze[d] {
            shape.push(p.count[d]);
            strides.push(x.strides()[d] * p.stride[d]);
        }
    }
    x.view(offset as usize, shape, strides)
}

/// `reshape`: a view when the strides allow it, otherwise a packed copy.
pub(crate) fn reshape(x: &Tensor, shape: &[usize], pool: &mut Pool) -> Tensor {
    match x.reshape_view(shape) {
        Some(v) => v,
        None => {
            let packed = x.contiguous(pool);
            packed.view(packed.offset(), shape.to_vec(), contiguous_strides(shape))
        }
    }
}

/// `concat`: copies each input into its region of a packed output. With `interleave`, input
/// `i` fills positions `i, i + n, i + 2n, ...` of the axis.
pub(crate) fn concat(
    inputs: &[&Tensor],
    axis: usize,
    interleave: bool,
    shape: &[usize],
    pool: &mut Pool,
) -> Tensor {
    let mut out = pool.take_for_write(shape.iter().product());
    let out_strides = contiguous_strides(shape);
    let n = inputs.len() as isize;
    let mut start = 0usize;
    for (i, x) in inputs.iter().enumerate() {
        let mut strides = out_strides.clone();
        let offset = if interleave {
            strides[axis] *= n;
            i * out_strides[axis] as usize
        } else {
            start * out_strides[axis] as usize
        };
        start += x.shape()[axis];
        if x.numel() > 0 {
            copy_into_strided(&mut out, offset, &strides, x);
        }
    }
    Tensor::new(shape.to_vec(), out)
}

/// `split`: consecutive views along `axis`.
pub(crate) fn split(x: &Tensor, axis: usize, sizes: &[usize]) -> Vec<Tensor> {
    let mut start = 0usize;
    sizes
        .iter()
        .map(|&n| {
            let mut shape = x.shape().to_vec();
            shape[axis] = n;
            let offset = x.offset() as isize + start as isize * x.strides()[axis];
            start += n;
            x.view(offset as usize, shape, x.strides().to_vec())
        })
        .collect()
}
