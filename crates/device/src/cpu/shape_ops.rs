//! Ops that move data without arithmetic: slices, reshape, transpose and split are views of
//! their input; concat copies into a fresh buffer. Parameters are resolved against the static
//! input shapes at compile time, so the run loop only adjusts offsets and strides.

use super::pool::Pool;
use super::tensor::{contiguous_strides, copy_into_strided, Tensor};

/// A resolved slice: per axis a start, a step and a length; `squeeze` axes are dropped.
#[derive(Clone, Debug)]
pub(crate) struct SliceParams {
    start: Vec<usize>,
    step: Vec<isize>,
    len: Vec<usize>,
    squeeze: Vec<bool>,
}

impl SliceParams {
    /// The output shape.
    pub fn out_shape(&self) -> Vec<usize> {
        self.len
            .iter()
            .zip(&self.squeeze)
            .filter(|(_, &s)| !s)
            .map(|(&n, _)| n)
            .collect()
    }
}

fn check_rank(what: &str, values: &[i64], rank: usize) -> Result<(), String> {
    if values.len() == rank {
        Ok(())
    } else {
        Err(format!(
            "`{what}` has {} entries but the input has rank {rank}; give one per axis",
            values.len()
        ))
    }
}

/// `slice_by_size`: `begin` (negative counts from the end) and `size` (-1 means to the end).
pub(crate) fn slice_by_size(
    shape: &[usize],
    begin: &[i64],
    size: &[i64],
) -> Result<SliceParams, String> {
    check_rank("begin", begin, shape.len())?;
    check_rank("size", size, shape.len())?;
    let mut p = SliceParams {
        start: Vec::new(),
        step: vec![1; shape.len()],
        len: Vec::new(),
        squeeze: vec![false; shape.len()],
    };
    for d in 0..shape.len() {
        let dim = shape[d] as i64;
        let b = if begin[d] < 0 {
            begin[d] + dim
        } else {
            begin[d]
        };
        let n = if size[d] == -1 { dim - b } else { size[d] };
        if b < 0 || n < 0 || b + n > dim {
            return Err(format!(
                "axis {d}: begin {} size {} does not fit in dimension {dim}",
                begin[d], size[d]
            ));
        }
        p.start.push(b as usize);
        p.len.push(n as usize);
    }
    Ok(p)
}

/// The optional arguments of `slice_by_index`, one entry per axis when present.
#[derive(Default)]
pub(crate) struct IndexSliceArgs {
    pub stride: Option<Vec<i64>>,
    pub begin_mask: Option<Vec<i64>>,
    pub end_mask: Option<Vec<i64>>,
    pub squeeze_mask: Option<Vec<i64>>,
}

/// `slice_by_index` with numpy semantics: end exclusive, negative indices count from the
/// end, out-of-range indices clamp, masked begin/end mean "from the first/to the last
/// element in the stride's direction", and squeezed axes keep the element at `begin`.
pub(crate) fn slice_by_index(
    shape: &[usize],
    begin: &[i64],
    end: &[i64],
    args: &IndexSliceArgs,
) -> Result<SliceParams, String> {
    let rank = shape.len();
    check_rank("begin", begin, rank)?;
    check_rank("end", end, rank)?;
    let ones = vec![1; rank];
    let zeros = vec![0; rank];
    let stride = args.stride.as_deref().unwrap_or(&ones);
    let bmask = args.begin_mask.as_deref().unwrap_or(&zeros);
    let emask = args.end_mask.as_deref().unwrap_or(&zeros);
    let smask = args.squeeze_mask.as_deref().unwrap_or(&zeros);
    for (what, v) in [
        ("stride", stride),
        ("begin_mask", bmask),
        ("end_mask", emask),
        ("squeeze_mask", smask),
    ] {
        check_rank(what, v, rank)?;
    }
    let mut p = SliceParams {
        start: Vec::new(),
        step: Vec::new(),
        len: Vec::new(),
        squeeze: smask.iter().map(|&m| m != 0).collect(),
    };
    for d in 0..rank {
        let dim = shape[d] as i64;
        let s = stride[d];
        if s == 0 {
            return Err(format!("axis {d}: stride 0 is not allowed"));
        }
        let norm = |i: i64| if i < 0 { i + dim } else { i };
        let (b, n) = if p.squeeze[d] {
            let b = norm(begin[d]);
            if b < 0 || b >= dim {
                return Err(format!(
                    "axis {d}: squeezed index {} is outside dimension {dim}",
                    begin[d]
                ));
            }
            (b, 1)
        } else if s > 0 {
            let b = if bmask[d] != 0 {
                0
            } else {
                norm(begin[d]).clamp(0, dim)
            };
            let e = if emask[d] != 0 {
                dim
            } else {
                norm(end[d]).clamp(0, dim)
            };
            (b, if e > b { (e - b + s - 1) / s } else { 0 })
        } else {
            let b = if bmask[d] != 0 {
                dim - 1
            } else {
                norm(begin[d]).clamp(-1, dim - 1)
            };
            let e = if emask[d] != 0 {
                -1
            } else {
                norm(end[d]).clamp(-1, dim - 1)
            };
            (b, if b > e { (b - e + (-s) - 1) / (-s) } else { 0 })
        };
        p.start.push(if n == 0 { 0 } else { b as usize });
        p.step.push(s as isize);
        p.len.push(n as usize);
    }
    Ok(p)
}

/// The view a slice selects.
pub(crate) fn slice(x: &Tensor, p: &SliceParams) -> Tensor {
    let mut offset = x.offset() as isize;
    let (mut shape, mut strides) = (Vec::new(), Vec::new());
    for d in 0..x.rank() {
        offset += p.start[d] as isize * x.strides()[d];
        if !p.squeeze[d] {
            shape.push(p.len[d]);
            strides.push(x.strides()[d] * p.step[d]);
        }
    }
    x.view(offset as usize, shape, strides)
}

/// Resolves a `reshape` target: one -1 is inferred, 0 copies the input's dimension.
pub(crate) fn reshape_shape(input: &[usize], target: &[i64]) -> Result<Vec<usize>, String> {
    let numel: usize = input.iter().product();
    let mut infer = None;
    let mut known = 1usize;
    let mut shape = Vec::with_capacity(target.len());
    for (d, &t) in target.iter().enumerate() {
        let n = match t {
            -1 if infer.is_none() => {
                infer = Some(d);
                1
            }
            0 => *input
                .get(d)
                .ok_or_else(|| format!("shape entry {d} is 0 but the input has no axis {d}"))?,
            t if t > 0 => t as usize,
            _ => {
                return Err(format!(
                    "shape entry {d} is {t}; use sizes ≥ 0 and at most one -1"
                ))
            }
        };
        known *= n;
        shape.push(n);
    }
    if let Some(d) = infer {
        if numel.checked_rem(known) != Some(0) {
            return Err(format!(
                "cannot infer the -1 in {target:?} for {numel} elements"
            ));
        }
        shape[d] = numel / known;
    } else if known != numel {
        return Err(format!(
            "shape {target:?} has {known} elements but the input has {numel}"
        ));
    }
    Ok(shape)
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

/// Checks that `perm` is a permutation of `0..rank` (negative entries count from the end).
pub(crate) fn transpose_perm(rank: usize, perm: &[i64]) -> Result<Vec<usize>, String> {
    let p: Vec<usize> = perm
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<_, _>>()?;
    let mut seen = vec![false; rank];
    for &a in &p {
        seen[a] = true;
    }
    if p.len() != rank || seen.iter().any(|s| !s) {
        return Err(format!(
            "perm {perm:?} is not a permutation of the {rank} axes"
        ));
    }
    Ok(p)
}

/// An axis in `-rank..rank` as an index in `0..rank`.
pub(crate) fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// The output shape of `concat` along `axis`; with `interleave` every input must have the same shape.
pub(crate) fn concat_shape(
    inputs: &[&[usize]],
    axis: usize,
    interleave: bool,
) -> Result<Vec<usize>, String> {
    let first = inputs.first().ok_or("concat needs at least one value")?;
    let mut out = first.to_vec();
    out[axis] = 0;
    for s in inputs {
        let same_rest =
            s.len() == first.len() && (0..s.len()).all(|d| d == axis || s[d] == first[d]);
        if !same_rest || (interleave && s[axis] != first[axis]) {
            return Err(format!(
                "value of shape {s:?} does not match {first:?} off axis {axis}{}",
                if interleave {
                    " (interleave needs equal shapes)"
                } else {
                    ""
                }
            ));
        }
        out[axis] += s[axis];
    }
    Ok(out)
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
    let mut out = pool.take(shape.iter().product());
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

/// Split sizes along `axis` from `split_sizes` or an even `num_splits`.
pub(crate) fn split_sizes(
    dim: usize,
    num_splits: Option<i64>,
    sizes: Option<Vec<i64>>,
) -> Result<Vec<usize>, String> {
    match (num_splits, sizes) {
        (_, Some(s)) => {
            if s.iter().any(|&v| v < 0) || s.iter().sum::<i64>() != dim as i64 {
                return Err(format!(
                    "split_sizes {s:?} must be ≥ 0 and sum to the axis size {dim}"
                ));
            }
            Ok(s.iter().map(|&v| v as usize).collect())
        }
        (Some(n), None) if n > 0 && dim.checked_rem(n as usize) == Some(0) => {
            Ok(vec![dim / n as usize; n as usize])
        }
        (Some(n), None) => Err(format!(
            "num_splits {n} does not divide the axis size {dim}"
        )),
        (None, None) => Err("give `num_splits` or `split_sizes`".to_string()),
    }
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
