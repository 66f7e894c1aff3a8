//! The shape rules of MIL ops, written once: broadcasting, reshape, permutations, splits,
//! matmul, reductions, and the resolved geometry of `conv` and the slices.

use super::normalize_axis;

type Res<T> = std::result::Result<T, String>;

/// `v` as a size, or an error naming `what`.
pub(super) fn dim(v: i64, what: &str) -> Res<usize> {
    usize::try_from(v).map_err(|_| format!("{what} must be non-negative, got {v}"))
}

/// The element count of `shape`, or an error when it does not fit in memory's address space.
fn checked_numel(shape: &[usize]) -> Res<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} has more elements than fit in memory"))
}

fn too_large(what: &str) -> String {
    format!("{what} is too large")
}

/// The numpy broadcast of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Res<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// The shape `reshape` produces, resolving one `-1`.
pub fn reshape_target(input: &[usize], shape: &[i64]) -> Res<Vec<usize>> {
    let numel = checked_numel(input)?;
    let mut infer_at = None;
    let mut known = 1usize;
    let mut out = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if d == -1 {
            if infer_at.replace(i).is_some() {
                return Err("reshape allows only one -1".into());
            }
            out.push(0);
        } else if d <= 0 {
            return Err(format!("reshape dimension {d} must be positive or -1"));
        } else {
            let d = dim(d, "reshape dimension")?;
            known = known
                .checked_mul(d)
                .ok_or_else(|| too_large("the reshape target"))?;
            out.push(d);
        }
    }
    if let Some(i) = infer_at {
        if known == 0 || !numel.is_multiple_of(known) {
            return Err(format!("cannot infer -1 reshaping {input:?} to {shape:?}"));
        }
        out[i] = numel / known;
    } else if known != numel {
        return Err(format!(
            "cannot reshape {input:?} ({numel} elements) to {shape:?} ({known} elements)"
        ));
    }
    Ok(out)
}

/// Checks that `perm` is a permutation of the axes of a rank-`rank` tensor (negative axes allowed).
pub fn permutation(perm: &[i64], rank: usize) -> Res<Vec<usize>> {
    if perm.len() != rank {
        return Err(format!("perm needs {rank} entries, got {}", perm.len()));
    }
    let p = perm
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Res<Vec<_>>>()?;
    let mut seen = vec![false; rank];
    for &i in &p {
        if std::mem::replace(&mut seen[i], true) {
            return Err(format!("perm {perm:?} repeats axis {i}"));
        }
    }
    Ok(p)
}

/// The sizes `split` cuts an axis of length `len` into.
pub fn split_sizes(len: usize, num: Option<i64>, sizes: Option<Vec<i64>>) -> Res<Vec<usize>> {
    match (num, sizes) {
        (_, Some(s)) => {
            let s = s
                .into_iter()
                .map(|v| dim(v, "split size"))
                .collect::<Res<Vec<_>>>()?;
            let total = s
                .iter()
                .try_fold(0usize, |acc, &v| acc.checked_add(v))
                .ok_or_else(|| too_large("the sum of split_sizes"))?;
            if total != len {
                return Err(format!(
                    "split_sizes {s:?} do not sum to the axis size {len}"
                ));
            }
            Ok(s)
        }
        (Some(n), None) if n > 0 && len.is_multiple_of(n as usize) => {
            Ok(vec![len / n as usize; n as usize])
        }
        (Some(n), None) => Err(format!(
            "num_splits {n} does not divide the axis size {len}"
        )),
        (None, None) => Err("split needs num_splits or split_sizes".into()),
    }
}

/// The output shape of `matmul` with numpy semantics, batch broadcasting and transposes.
pub fn matmul_shape(x: &[usize], y: &[usize], tx: bool, ty: bool) -> Res<Vec<usize>> {
    if x.is_empty() || y.is_empty() {
        return Err("matmul operands must have rank at least 1".into());
    }
    let xs: Vec<usize> = if x.len() == 1 {
        vec![1, x[0]]
    } else {
        x.to_vec()
    };
    let ys: Vec<usize> = if y.len() == 1 {
        vec![y[0], 1]
    } else {
        y.to_vec()
    };
    let (xr, yr) = (xs.len(), ys.len());
    let (m, kx) = if tx && x.len() > 1 {
        (xs[xr - 1], xs[xr - 2])
    } else {
        (xs[xr - 2], xs[xr - 1])
    };
    let (ky, n) = if ty && y.len() > 1 {
        (ys[yr - 1], ys[yr - 2])
    } else {
        (ys[yr - 2], ys[yr - 1])
    };
    if kx != ky {
        return Err(format!(
            "matmul inner dimensions differ: x {x:?} (transpose_x={tx}) and y {y:?} (transpose_y={ty})"
        ));
    }
    let mut out = broadcast_shapes(&xs[..xr - 2], &ys[..yr - 2])?;
    if x.len() > 1 {
        out.push(m);
    }
    if y.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

/// Normalised, sorted, de-duplicated reduction axes (all axes when `None`).
pub fn reduction_axes(axes: Option<&[i64]>, rank: usize) -> Res<Vec<usize>> {
    let mut out = match axes {
        None => (0..rank).collect(),
        Some(a) => a
            .iter()
            .map(|&x| normalize_axis(x, rank))
            .collect::<Res<Vec<_>>>()?,
    };
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The shape left after reducing `axes`.
pub fn reduced_shape(shape: &[usize], axes: &[usize], keep_dims: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| match (axes.contains(&i), keep_dims) {
            (false, _) => Some(d),
            (true, true) => Some(1),
            (true, false) => None,
        })
        .collect()
}

/// Resolved geometry of a `conv`: everything the interpreter needs, computed once.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvPlan {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding before and after each spatial axis.
    pub pad: Vec<(usize, usize)>,
    pub output: Vec<usize>,
}

impl ConvPlan {
    /// Resolves conv parameters for input `x` `[N, Cin, *spatial]` and weight `[Cout, Cin/groups, *k]`.
    pub fn new(
        x: &[usize],
        w: &[usize],
        strides: Option<Vec<i64>>,
        pad_type: Option<&str>,
        pad: Option<Vec<i64>>,
        dilations: Option<Vec<i64>>,
        groups: Option<i64>,
    ) -> Res<ConvPlan> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(format!(
                "conv needs x [N, C, *spatial] and weight [Cout, Cin/groups, *kernel] of the same rank; got {x:?} and {w:?}"
            ));
        }
        let ns = x.len() - 2;
        let groups = dim(groups.unwrap_or(1), "groups")?;
        let list = |v: Option<Vec<i64>>, what: &str| -> Res<Vec<usize>> {
            match v {
                None => Ok(vec![1; ns]),
                Some(v) if v.len() == ns => v.into_iter().map(|d| dim(d, what)).collect(),
                Some(v) => Err(format!("{what} needs {ns} entries, got {}", v.len())),
            }
        };
        let strides = list(strides, "strides")?;
        let dilations = list(dilations, "dilations")?;
        if strides.contains(&0) || dilations.contains(&0) || groups == 0 {
            return Err("strides, dilations and groups must be at least 1".into());
        }
        let (cin, cout) = (x[1], w[0]);
        if cin % groups != 0 || cout % groups != 0 || w[1].checked_mul(groups) != Some(cin) {
            return Err(format!(
                "weight {w:?} does not match {cin} input channels in {groups} groups (weight must be [Cout, Cin/groups, ...])"
            ));
        }
        let input = x[2..].to_vec();
        let kernel = w[2..].to_vec();
        if kernel.contains(&0) {
            return Err(format!(
                "weight {w:?} has an empty kernel; every kernel size must be at least 1"
            ));
        }
        let eff: Vec<usize> = (0..ns)
            .map(|i| {
                dilations[i]
                    .checked_mul(kernel[i] - 1)
                    .and_then(|e| e.checked_add(1))
                    .ok_or_else(|| too_large("the dilated kernel"))
            })
            .collect::<Res<_>>()?;
        let pad: Vec<(usize, usize)> = match pad_type.unwrap_or("valid") {
            "valid" => vec![(0, 0); ns],
            "custom" => {
                let p = pad.ok_or("pad_type custom needs `pad`")?;
                if p.len() != 2 * ns {
                    return Err(format!("pad needs {} entries", 2 * ns));
                }
                (0..ns)
                    .map(|i| Ok((dim(p[2 * i], "pad")?, dim(p[2 * i + 1], "pad")?)))
                    .collect::<Res<_>>()?
            }
            "same" | "same_lower" => (0..ns)
                .map(|i| {
                    let out = input[i].div_ceil(strides[i]).max(1);
                    let total = (out - 1)
                        .saturating_mul(strides[i])
                        .saturating_add(eff[i])
                        .saturating_sub(input[i]);
                    if pad_type == Some("same") {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    }
                })
                .collect(),
            other => {
                return Err(format!(
                    "unknown pad_type `{other}` (valid, same, same_lower, custom)"
                ))
            }
        };
        let mut output = Vec::with_capacity(ns);
        for i in 0..ns {
            let padded = input[i]
                .checked_add(pad[i].0)
                .and_then(|p| p.checked_add(pad[i].1))
                .ok_or_else(|| too_large("the padded input"))?;
            if padded < eff[i] {
                return Err(format!(
                    "kernel extent {} exceeds padded input {padded} on spatial axis {i}",
                    eff[i]
                ));
            }
            output.push((padded - eff[i]) / strides[i] + 1);
        }
        Ok(ConvPlan {
            batch: x[0],
            in_channels: cin,
            out_channels: cout,
            groups,
            input,
            kernel,
            strides,
            dilations,
            pad,
            output,
        })
    }

    /// `[N, Cout, *output spatial]`.
    pub fn output_shape(&self) -> Vec<usize> {
        let mut s = vec![self.batch, self.out_channels];
        s.extend(&self.output);
        s
    }
}

/// A resolved slice: per axis a start, a step (negative walks backwards) and a count;
/// `squeeze` axes are dropped from the output.
#[derive(Clone, Debug, PartialEq)]
pub struct SlicePlan {
    pub begin: Vec<usize>,
    pub stride: Vec<isize>,
    pub count: Vec<usize>,
    pub squeeze: Vec<bool>,
}

fn entries(what: &str, v: &[i64], rank: usize) -> Res<()> {
    if v.len() == rank {
        Ok(())
    } else {
        Err(format!(
            "{what} has {} entries but x has rank {rank}; give one per axis",
            v.len()
        ))
    }
}

impl SlicePlan {
    /// `slice_by_size`: `begin` and `size` (-1 meaning to the end) per axis.
    pub fn by_size(shape: &[usize], begin: &[i64], size: &[i64]) -> Res<SlicePlan> {
        entries("begin", begin, shape.len())?;
        entries("size", size, shape.len())?;
        let mut plan = SlicePlan {
            begin: vec![],
            stride: vec![1; shape.len()],
            count: vec![],
            squeeze: vec![false; shape.len()],
        };
        for (i, &n) in shape.iter().enumerate() {
            let b = dim(begin[i], "begin")?;
            let s = if size[i] == -1 {
                n.checked_sub(b).ok_or("begin beyond the end")?
            } else {
                dim(size[i], "size")?
            };
            let end = b.checked_add(s).ok_or_else(|| too_large("the slice end"))?;
            if end > n {
                return Err(format!(
                    "slice [{b}, {end}) on axis {i} exceeds its size {n}"
                ));
            }
            plan.begin.push(b);
            plan.count.push(s);
        }
        Ok(plan)
    }

    /// `slice_by_index` with numpy semantics: end exclusive, negative indices count from the
    /// end, out-of-range indices clamp, a masked begin/end means "from the first/to the last
    /// element in the stride's direction", and a squeezed axis keeps the element at `begin`.
    pub fn by_index(
        shape: &[usize],
        begin: &[i64],
        end: &[i64],
        stride: Option<&[i64]>,
        begin_mask: Option<&[i64]>,
        end_mask: Option<&[i64]>,
        squeeze_mask: Option<&[i64]>,
    ) -> Res<SlicePlan> {
        let r = shape.len();
        entries("begin", begin, r)?;
        entries("end", end, r)?;
        for (what, v) in [
            ("stride", stride),
            ("begin_mask", begin_mask),
            ("end_mask", end_mask),
            ("squeeze_mask", squeeze_mask),
        ] {
            if let Some(v) = v {
                entries(what, v, r)?;
            }
        }
        let flag = |v: Option<&[i64]>, i: usize| v.is_some_and(|v| v[i] != 0);
        let mut plan = SlicePlan {
            begin: vec![],
            stride: vec![],
            count: vec![],
            squeeze: vec![],
        };
        for i in 0..r {
            let n = shape[i] as i64;
            let s = stride.map_or(1, |s| s[i]);
            if s == 0 {
                return Err(format!("stride 0 on axis {i} is not allowed"));
            }
            let norm = |v: i64| if v < 0 { v + n } else { v };
            let sq = flag(squeeze_mask, i);
            let (b, count) = if sq {
                let b = norm(begin[i]);
                if b < 0 || b >= n {
                    return Err(format!(
                        "squeezed index {} on axis {i} is outside its size {n}",
                        begin[i]
                    ));
                }
                (b, 1)
            } else if s > 0 {
                let b = if flag(begin_mask, i) {
                    0
                } else {
                    norm(begin[i]).clamp(0, n)
                };
                let e = if flag(end_mask, i) {
                    n
                } else {
                    norm(end[i]).clamp(0, n)
                };
                (b, if e > b { (e - b + s - 1) / s } else { 0 })
            } else {
                let b = if flag(begin_mask, i) {
                    n - 1
                } else {
                    norm(begin[i]).clamp(-1, n - 1)
                };
                let e = if flag(end_mask, i) {
                    -1
                } else {
                    norm(end[i]).clamp(-1, n - 1)
                };
                (b, if b > e { (b - e - s - 1) / -s } else { 0 })
            };
            plan.begin.push(if count == 0 { 0 } else { b as usize });
            plan.stride.push(s as isize);
            plan.count.push(count as usize);
            plan.squeeze.push(sq);
        }
        Ok(plan)
    }

    /// The lowest index the slice reads on `axis`: its start, or its last element when it
    /// walks backwards.
    pub fn lowest(&self, axis: usize) -> usize {
        let (begin, count) = (self.begin[axis], self.count[axis]);
        match self.stride[axis] {
            s if s < 0 && count > 0 => begin - (count - 1) * s.unsigned_abs(),
            _ => begin,
        }
    }

    /// The output shape, squeezed axes removed.
    pub fn output_shape(&self) -> Vec<usize> {
        self.count
            .iter()
            .zip(&self.squeeze)
            .filter(|(_, &s)| !s)
            .map(|(&c, _)| c)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[1, 4, 1, 8], &[4, 3, 1]).unwrap(),
            vec![1, 4, 3, 8]
        );
        assert_eq!(broadcast_shapes(&[], &[2, 2]).unwrap(), vec![2, 2]);
        assert!(broadcast_shapes(&[2, 3], &[3, 2]).is_err());
    }

    #[test]
    fn matmul_shapes_follow_numpy_with_transposes() {
        assert_eq!(
            matmul_shape(&[1, 1, 32, 64], &[1, 1, 64, 96], false, false).unwrap(),
            vec![1, 1, 32, 96]
        );
        assert_eq!(
            matmul_shape(&[2, 64, 32], &[96, 64], true, true).unwrap(),
            vec![2, 32, 96]
        );
        assert_eq!(matmul_shape(&[5], &[5, 3], false, false).unwrap(), vec![3]);
        assert!(matmul_shape(&[4, 5], &[4, 5], false, false).is_err());
    }

    #[test]
    fn reshape_infers_one_dimension() {
        assert_eq!(
            reshape_target(&[1, 64, 1, 32], &[1, 1, 64, -1]).unwrap(),
            vec![1, 1, 64, 32]
        );
        assert!(reshape_target(&[6], &[-1, -1]).is_err());
        assert!(reshape_target(&[6], &[4]).is_err());
    }

    #[test]
    fn conv_output_sizes_match_the_formula() {
        let p = ConvPlan::new(
            &[1, 4, 10, 9],
            &[8, 2, 3, 3],
            Some(vec![2, 1]),
            Some("valid"),
            None,
            Some(vec![1, 2]),
            Some(2),
        )
        .unwrap();
        // valid: (in - dil*(k-1) - 1) / stride + 1
        assert_eq!(p.output_shape(), vec![1, 8, (10 - 2 - 1) / 2 + 1, 9 - 4]);
        let s = ConvPlan::new(
            &[1, 4, 7, 7],
            &[4, 4, 3, 3],
            Some(vec![2, 2]),
            Some("same"),
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.output, vec![4, 4]);
    }

    #[test]
    fn slice_by_index_resolves_masks_and_negatives() {
        let p = SlicePlan::by_index(
            &[4, 10],
            &[1, -4],
            &[0, 10],
            Some(&[1, 2]),
            Some(&[0, 0]),
            Some(&[1, 0]),
            None,
        )
        .unwrap();
        assert_eq!(p.begin, vec![1, 6]);
        assert_eq!(p.count, vec![3, 2]);
    }
}
