//! Strided tensor views over shared `f32` storage.
//!
//! Slice, reshape (when no copy is needed), transpose, split and broadcasting only change a
//! view's offset, shape and strides; the storage is shared through an `Arc`. Ops that need
//! packed data call [`Tensor::contiguous`], which copies only when the view is not packed.

use super::pool::Pool;
use rayon::prelude::*;
use std::sync::Arc;

/// Elements below which an elementwise pass runs on the calling thread: rayon's fork/join
/// costs a few microseconds, about what 32K simple element updates cost.
pub const PAR_MIN: usize = 1 << 15;
/// Elements per rayon task in elementwise passes: large enough to amortise task overhead,
/// small enough to balance two to a few dozen cores.
pub const PAR_GRAIN: usize = 1 << 14;
/// Elements from which a plain copy is split over rayon's threads: one core alone does not
/// saturate memory bandwidth, and below about 256 KiB the fork/join costs what it saves.
pub(crate) const COPY_PAR_MIN: usize = 1 << 16;
/// Elements per rayon task of a split copy.
const COPY_GRAIN: usize = 1 << 15;

/// `dst.copy_from_slice(src)`, over several threads for large copies.
pub(crate) fn copy_slice(dst: &mut [f32], src: &[f32]) {
    if dst.len() < COPY_PAR_MIN {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(COPY_GRAIN)
            .zip(src.par_chunks(COPY_GRAIN))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
}

/// A strided view: element `idx` is at `storage[offset + Σ idx[d] * strides[d]]`.
#[derive(Clone, Debug)]
pub(crate) struct Tensor {
    data: Arc<Vec<f32>>,
    offset: usize,
    shape: Vec<usize>,
    strides: Vec<isize>,
}

/// Row-major strides of a packed tensor of `shape`.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![0isize; shape.len()];
    let mut acc = 1isize;
    for d in (0..shape.len()).rev() {
        strides[d] = acc;
        acc *= shape[d] as isize;
    }
    strides
}

/// Strides that read a tensor of `shape`/`strides` as if broadcast numpy-style to `out`
/// (axes aligned on the right; size-1 and missing axes get stride 0).
pub(crate) fn broadcast_strides(shape: &[usize], strides: &[isize], out: &[usize]) -> Vec<isize> {
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|d| {
            if d < lead || shape[d - lead] == 1 {
                0
            } else {
                strides[d - lead]
            }
        })
        .collect()
}

impl Tensor {
    /// A packed tensor owning `data` (row-major in `shape`).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor::from_shared(shape, Arc::new(data))
    }

    /// A packed tensor over shared storage (row-major in `shape`).
    pub fn from_shared(shape: Vec<usize>, data: Arc<Vec<f32>>) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        let strides = contiguous_strides(&shape);
        Tensor {
            data,
            offset: 0,
            shape,
            strides,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn strides(&self) -> &[isize] {
        &self.strides
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Offset of element 0 in [`Tensor::storage`].
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The whole backing storage, of which this view reads a subset.
    pub fn storage(&self) -> &[f32] {
        &self.data
    }

    /// The storage, mutably, when this view is packed, covers all of it and is its only user
    /// (a freshly computed op result), e.g. for rounding it in place.
    pub fn storage_mut(&mut self) -> Option<&mut [f32]> {
        let whole = self.offset == 0 && self.is_contiguous() && self.numel() == self.data.len();
        Arc::get_mut(&mut self.data)
            .filter(|_| whole)
            .map(|v| v.as_mut_slice())
    }

    /// Gives the storage back when this is its last view, so the run loop can reuse it.
    pub fn into_storage(self) -> Option<Vec<f32>> {
        Arc::try_unwrap(self.data).ok()
    }

    /// True when the view is packed row-major (size-1 axes may have any stride).
    pub fn is_contiguous(&self) -> bool {
        let mut expect = 1isize;
        for d in (0..self.rank()).rev() {
            if self.shape[d] != 1 && self.strides[d] != expect {
                return false;
            }
            expect *= self.shape[d] as isize;
        }
        true
    }

    /// The elements as one packed slice, when the view is packed.
    pub fn as_contiguous(&self) -> Option<&[f32]> {
        self.is_contiguous()
            .then(|| &self.data[self.offset..self.offset + self.numel()])
    }

    /// Another view of the same storage.
    pub fn view(&self, offset: usize, shape: Vec<usize>, strides: Vec<isize>) -> Tensor {
        Tensor {
            data: Arc::clone(&self.data),
            offset,
            shape,
            strides,
        }
    }

    /// Axes reordered: axis `d` of the result is axis `perm[d]` of `self`.
    pub fn permute(&self, perm: &[usize]) -> Tensor {
        let shape = perm.iter().map(|&p| self.shape[p]).collect();
        let strides = perm.iter().map(|&p| self.strides[p]).collect();
        self.view(self.offset, shape, strides)
    }

    /// The same elements in `shape` without copying, when the strides allow it (the check
    /// numpy calls "attempt no-copy reshape"): each group of old axes whose product equals a
    /// group of new axes must itself be packed relative to its last axis.
    pub fn reshape_view(&self, shape: &[usize]) -> Option<Tensor> {
        if self.numel() == 0 || self.is_contiguous() {
            return Some(self.view(self.offset, shape.to_vec(), contiguous_strides(shape)));
        }
        let old: Vec<(usize, isize)> = self
            .shape
            .iter()
            .zip(&self.strides)
            .filter(|(&n, _)| n != 1)
            .map(|(&n, &s)| (n, s))
            .collect();
        let new: Vec<usize> = shape.iter().copied().filter(|&n| n != 1).collect();
        let mut new_strides = vec![0isize; new.len()];
        let (mut oi, mut ni) = (0, 0);
        while oi < old.len() && ni < new.len() {
            let (mut oj, mut nj) = (oi + 1, ni + 1);
            let (mut op, mut np) = (old[oi].0, new[ni]);
            while op != np {
                if np < op {
                    np *= *new.get(nj)?;
                    nj += 1;
                } else {
                    op *= old.get(oj)?.0;
                    oj += 1;
                }
            }
            for k in oi..oj - 1 {
                if old[k].1 != old[k + 1].1 * old[k + 1].0 as isize {
                    return None;
                }
            }
            new_strides[nj - 1] = old[oj - 1].1;
            for k in (ni + 1..nj).rev() {
                new_strides[k - 1] = new_strides[k] * new[k] as isize;
            }
            oi = oj;
            ni = nj;
        }
        let mut it = new_strides.into_iter();
        let strides = shape
            .iter()
            .map(|&n| if n == 1 { 0 } else { it.next().unwrap_or(0) })
            .collect();
        Some(self.view(self.offset, shape.to_vec(), strides))
    }

    /// This view packed row-major: itself when already packed, else a copy.
    pub fn contiguous(&self, pool: &mut Pool) -> Tensor {
        if self.is_contiguous() {
            return self.clone();
        }
        let mut out = pool.take_for_write(self.numel());
        self.copy_to(&mut out);
        Tensor::new(self.shape.clone(), out)
    }

    /// Copies the elements row-major into `out` (`out.len() == numel`).
    pub fn copy_to(&self, out: &mut [f32]) {
        match self.as_contiguous() {
            Some(src) => copy_slice(out, src),
            None => map_into(out, &self.shape, [self.operand(&self.shape)], |[v]| v),
        }
    }

    /// This view as an elementwise operand broadcast to `out_shape`.
    pub fn operand(&self, out_shape: &[usize]) -> Operand<'_> {
        Operand {
            data: &self.data,
            offset: self.offset as isize,
            strides: broadcast_strides(&self.shape, &self.strides, out_shape),
        }
    }
}

/// One input of an elementwise pass: storage, start offset and strides over the output shape.
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub offset: isize,
    pub strides: Vec<isize>,
}

/// Drops size-1 axes and merges neighbouring axes that every stride list walks as one, so
/// the innermost loop is as long as possible. Returns the new shape and stride lists.
pub(crate) fn coalesce(shape: &[usize], strides: &[&[isize]]) -> (Vec<usize>, Vec<Vec<isize>>) {
    let mut out_shape: Vec<usize> = Vec::with_capacity(shape.len());
    let mut out_strides: Vec<Vec<isize>> = vec![Vec::with_capacity(shape.len()); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = out_shape.last().is_some()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| o.last().copied() == Some(s[d] * shape[d] as isize));
        if mergeable {
            let last = out_shape.len() - 1;
            out_shape[last] *= shape[d];
            for (o, s) in out_strides.iter_mut().zip(strides) {
                o[last] = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (o, s) in out_strides.iter_mut().zip(strides) {
                o.push(s[d]);
            }
        }
    }
    (out_shape, out_strides)
}

/// Calls `f(offsets)` for each row index in `rows` of the row-major index space `outer`,
/// where `offsets[k] = base[k] + Σ idx[d] * strides[k][d]`. Offsets advance like an odometer,
/// so a row costs one add per operand instead of a division per axis.
pub(crate) fn for_each_row<const K: usize>(
    outer: &[usize],
    strides: [&[isize]; K],
    base: [isize; K],
    rows: std::ops::Range<usize>,
    mut f: impl FnMut([isize; K]),
) {
    let mut idx = vec![0usize; outer.len()];
    let mut offs = base;
    let mut rem = rows.start;
    for d in (0..outer.len()).rev() {
        idx[d] = rem % outer[d];
        rem /= outer[d];
        for k in 0..K {
            offs[k] += idx[d] as isize * strides[k][d];
        }
    }
    for _ in rows {
        f(offs);
        for d in (0..outer.len()).rev() {
            idx[d] += 1;
            for k in 0..K {
                offs[k] += strides[k][d];
            }
            if idx[d] < outer[d] {
                break;
            }
            for k in 0..K {
                offs[k] -= strides[k][d] * outer[d] as isize;
            }
            idx[d] = 0;
        }
    }
}

/// Writes `out[i] = f(operands at i)` for every index of the packed `shape`, in parallel over
/// row chunks for large tensors. Cost: one call of `f` per element plus one odometer step per
/// row; rows are made long by [`coalesce`], and fully packed operands take a slice fast path.
pub(crate) fn map_into<const K: usize>(
    out: &mut [f32],
    shape: &[usize],
    operands: [Operand<'_>; K],
    f: impl Fn([f32; K]) -> f32 + Sync,
) {
    if out.is_empty() {
        return;
    }
    let out_strides = contiguous_strides(shape);
    let mut all: Vec<&[isize]> = vec![&out_strides];
    all.extend(operands.iter().map(|o| o.strides.as_slice()));
    let (cshape, cstrides) = coalesce(shape, &all);
    let base: [isize; K] = std::array::from_fn(|k| operands[k].offset);
    let data: [&[f32]; K] = std::array::from_fn(|k| operands[k].data);
    let Some((&inner, outer)) = cshape.split_last() else {
        if let Some(o) = out.first_mut() {
            *o = f(std::array::from_fn(|k| data[k][base[k] as usize]));
        }
        return;
    };
    let rank = cshape.len();
    let inner_strides: [isize; K] = std::array::from_fn(|k| cstrides[k + 1][rank - 1]);
    let outer_strides: [&[isize]; K] = std::array::from_fn(|k| &cstrides[k + 1][..rank - 1]);
    let run_rows = |first_row: usize, chunk: &mut [f32]| {
        let count = chunk.len() / inner;
        let mut rows = chunk.chunks_exact_mut(inner);
        for_each_row(
            outer,
            outer_strides,
            base,
            first_row..first_row + count,
            |offs| {
                if let Some(dst) = rows.next() {
                    map_row(dst, data, offs, inner_strides, &f);
                }
            },
        );
    };
    if out.len() < PAR_MIN {
        run_rows(0, out);
    } else {
        let rows_per_task = (PAR_GRAIN / inner).max(1);
        out.par_chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(|(t, chunk)| run_rows(t * rows_per_task, chunk));
    }
}

crate::simd_versions! {
    /// One row of [`map_into`]: a plain slice loop when every operand is packed along the row,
    /// in the widest vectors the CPU has (`f` inlines into each version; generic code is
    /// otherwise built for baseline SSE2 only).
    fn map_row<const K: usize, F: Fn([f32; K]) -> f32>(
        dst: &mut [f32],
        data: [&[f32]; K],
        offs: [isize; K],
        strides: [isize; K],
        f: &F,
    ) {
        let n = dst.len();
        if strides.iter().all(|&s| s == 1) {
            let src: [&[f32]; K] = std::array::from_fn(|k| &data[k][offs[k] as usize..][..n]);
            for (j, d) in dst.iter_mut().enumerate() {
                *d = f(std::array::from_fn(|k| src[k][j]));
            }
        } else {
            for (j, d) in dst.iter_mut().enumerate() {
                *d = f(std::array::from_fn(|k| {
                    data[k][(offs[k] + j as isize * strides[k]) as usize]
                }));
            }
        }
    }
}

/// Copies `src` into the strided region `dst[offset + Σ idx[d] * strides[d]]` of the same shape.
pub(crate) fn copy_into_strided(dst: &mut [f32], offset: usize, strides: &[isize], src: &Tensor) {
    let (cshape, cstrides) = coalesce(src.shape(), &[strides, src.strides()]);
    let Some((&inner, outer)) = cshape.split_last() else {
        dst[offset] = src.storage()[src.offset()];
        return;
    };
    let rank = cshape.len();
    let (ds, ss) = (cstrides[0][rank - 1], cstrides[1][rank - 1]);
    let rows: usize = outer.iter().product();
    let data = src.storage();
    for_each_row(
        outer,
        [&cstrides[0][..rank - 1], &cstrides[1][..rank - 1]],
        [offset as isize, src.offset() as isize],
        0..rows,
        |[d0, s0]| {
            if ds == 1 && ss == 1 {
                copy_slice(
                    &mut dst[d0 as usize..][..inner],
                    &data[s0 as usize..][..inner],
                );
            } else {
                for j in 0..inner as isize {
                    dst[(d0 + j * ds) as usize] = data[(s0 + j * ss) as usize];
                }
            }
        },
    );
}
