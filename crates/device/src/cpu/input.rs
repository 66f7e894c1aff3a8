//! Input storage of a CPU kernel. An input that the program reads only through full-height
//! column slices (a dynamic matmul's `[activation | weights]` input) is stored as those
//! slices, each of which may instead read a [`SharedMatrix`] in place: weights the caller
//! already holds then need neither a staged copy nor the columns of one. Any other
//! `[1, C, 1, S]` input may read a shared matrix as a whole, so kernels of different programs
//! read one buffer the caller owns (the generator's KV cache, read by its decode and prefill
//! attention kernels).

use super::elementwise::round_to_f16;
use super::step::Step;
use super::tensor::{copy_slice, Tensor, COPY_PAR_MIN};
use crate::error::{DeviceError, Result};
use crate::{SharedMatrix, TensorSpec};
use anetrain_mil::OpKind;
use rayon::prelude::*;
use std::ops::Range;
use std::sync::Arc;

/// One column slice of a segmented `[1, C, 1, S]` input and the slots its readers defined.
#[derive(Clone, Debug)]
pub(crate) struct SegmentPlan {
    pub columns: Range<usize>,
    pub slots: Vec<usize>,
}

/// Column range of `step` if it is a unit-stride slice of every channel of the `[1, C, 1, S]`
/// value in slot `input`, and nothing else.
fn column_slice(step: &Step, input: usize, shape: &[usize]) -> Option<Range<usize>> {
    let &[1, c, 1, _] = shape else { return None };
    let OpKind::Slice(p) = &step.kind else {
        return None;
    };
    let plain = step.args == [Some(input)]
        && p.stride.iter().all(|&s| s == 1)
        && p.squeeze.iter().all(|&q| !q);
    (plain && p.begin[..3] == [0, 0, 0] && p.count[..3] == [1, c, 1])
        .then(|| p.begin[3]..p.begin[3] + p.count[3])
}

/// Segments every input whose only readers are disjoint column slices (equal slices share a
/// segment) and removes those slices from `steps`; the rest keep `None`.
pub(crate) fn segment_inputs(
    inputs: &[(TensorSpec, usize)],
    steps: &mut Vec<Step>,
    returned: &[bool],
) -> Vec<Option<Vec<SegmentPlan>>> {
    let mut plans = Vec::with_capacity(inputs.len());
    let mut removed = vec![false; steps.len()];
    for (spec, slot) in inputs {
        let readers: Vec<usize> = (0..steps.len())
            .filter(|&i| steps[i].args.contains(&Some(*slot)))
            .collect();
        let ranges: Option<Vec<Range<usize>>> = readers
            .iter()
            .map(|&i| column_slice(&steps[i], *slot, &spec.ty.shape))
            .collect();
        let Some(ranges) = ranges.filter(|r| !r.is_empty() && !returned[*slot]) else {
            plans.push(None);
            continue;
        };
        let mut segments: Vec<SegmentPlan> = Vec::new();
        for (&i, r) in readers.iter().zip(ranges) {
            match segments.iter_mut().find(|s| s.columns == r) {
                Some(s) => s.slots.push(steps[i].outputs[0]),
                None => segments.push(SegmentPlan {
                    columns: r,
                    slots: vec![steps[i].outputs[0]],
                }),
            }
        }
        segments.sort_by_key(|s| s.columns.start);
        if segments
            .windows(2)
            .any(|w| w[0].columns.end > w[1].columns.start)
        {
            plans.push(None);
            continue;
        }
        for i in readers {
            removed[i] = true;
        }
        plans.push(Some(segments));
    }
    let mut i = 0;
    steps.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
    plans
}

/// Copies columns `cols` of each `src_width`-wide row of `src` into the matching
/// `dst_width`-wide row of `dst` from column `at` on, rounding to fp16 when `round`; split over
/// rayon's threads when the copy is large (one core does not saturate memory bandwidth).
fn copy_rows(
    dst: &mut [f32],
    dst_width: usize,
    at: usize,
    (src, src_width): (&[f32], usize),
    cols: Range<usize>,
    round: bool,
) {
    let row = |(d, s): (&mut [f32], &[f32])| {
        let d = &mut d[at..][..cols.len()];
        d.copy_from_slice(&s[cols.clone()]);
        if round {
            round_to_f16(d);
        }
    };
    if dst.len() < COPY_PAR_MIN {
        dst.chunks_mut(dst_width)
            .zip(src.chunks(src_width))
            .for_each(row);
    } else {
        dst.par_chunks_mut(dst_width)
            .zip(src.par_chunks(src_width))
            .for_each(row);
    }
}

/// What a segment holds.
#[derive(Clone, Debug)]
pub(crate) enum Content {
    /// All zeros, not yet allocated (a fresh kernel, or an unshared region).
    Zeros,
    /// The kernel's own packed `[C][width]` values.
    Owned(Arc<Vec<f32>>),
    /// A caller's matrix, read in place.
    Shared(SharedMatrix),
}

#[derive(Clone, Debug)]
pub(crate) struct Segment {
    columns: Range<usize>,
    content: Content,
}

/// One input's storage, kept between runs.
#[derive(Clone, Debug)]
pub(crate) enum InputStore {
    /// The whole tensor of `shape`, packed (a shared matrix is `[C][S]` of `[1, C, 1, S]`).
    Whole { shape: Vec<usize>, content: Content },
    /// Only the column slices the program reads (columns no slice reads are not stored).
    Segments {
        channels: usize,
        parts: Vec<Segment>,
    },
}

impl InputStore {
    /// Zeroed storage for `spec`, segmented when the plan says so.
    pub fn new(spec: &TensorSpec, segments: Option<&[SegmentPlan]>) -> InputStore {
        match segments {
            Some(plans) => InputStore::Segments {
                channels: spec.ty.shape[1],
                parts: plans
                    .iter()
                    .map(|p| Segment {
                        columns: p.columns.clone(),
                        content: Content::Zeros,
                    })
                    .collect(),
            },
            None => InputStore::Whole {
                shape: spec.ty.shape.clone(),
                content: Content::Zeros,
            },
        }
    }

    /// Replaces the whole input of `shape` with `data`, rounding to fp16 when `round`.
    pub fn write_all(&mut self, shape: &[usize], data: &[f32], round: bool) {
        match self {
            InputStore::Whole { shape, content } => {
                let buf = whole_owned(content, shape);
                copy_slice(buf, data);
                if round {
                    round_to_f16(buf);
                }
            }
            InputStore::Segments { channels, .. } => {
                let (c, s) = (*channels, shape[3]);
                self.write_region(s, 0..c, 0..s, data, round);
            }
        }
    }

    /// Writes `data`, laid out `[channels][columns]` with `s` columns per channel of the whole
    /// input, rounding to fp16 when `round`.
    pub fn write_region(
        &mut self,
        s: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        data: &[f32],
        round: bool,
    ) {
        let width = columns.len();
        if width == 0 {
            return;
        }
        match self {
            InputStore::Whole { shape, content } => {
                let buf = whole_owned(content, shape);
                let rows = &mut buf[channels.start * s..channels.end * s];
                copy_rows(rows, s, columns.start, (data, width), 0..width, round);
            }
            InputStore::Segments { channels: c, parts } => {
                for part in parts.iter_mut() {
                    let lo = part.columns.start.max(columns.start);
                    let hi = part.columns.end.min(columns.end);
                    if lo >= hi {
                        continue;
                    }
                    let (start, seg_width) = (part.columns.start, part.columns.len());
                    let buf = part.owned(*c);
                    let rows = &mut buf[channels.start * seg_width..channels.end * seg_width];
                    let cols = lo - columns.start..hi - columns.start;
                    copy_rows(rows, seg_width, lo - start, (data, width), cols, round);
                }
            }
        }
    }

    /// Makes the segment covering exactly `columns` of every channel read `m` in place.
    pub fn share(
        &mut self,
        spec: &TensorSpec,
        channels: Range<usize>,
        columns: Range<usize>,
        m: &SharedMatrix,
    ) -> Result<()> {
        let unavailable = |why: &str| {
            Err(DeviceError::Unavailable(format!(
                "columns {}..{} of `{}` cannot read a shared matrix: {why}",
                columns.start, columns.end, spec.name
            )))
        };
        let (c, parts) = match self {
            InputStore::Segments { channels, parts } => (channels, parts),
            InputStore::Whole { shape, content } => {
                let whole = (shape[1], shape[3]);
                if (channels.len(), columns.len()) != whole {
                    return unavailable(
                        "the program reads that input in pieces other than column slices, \
                         so only the whole input can be shared",
                    );
                }
                if (m.rows(), m.cols()) != whole {
                    return Err(DeviceError::Layout(format!(
                        "a shared {} × {} matrix cannot fill the {} × {} input `{}`",
                        m.rows(),
                        m.cols(),
                        whole.0,
                        whole.1,
                        spec.name
                    )));
                }
                *content = Content::Shared(m.clone());
                return Ok(());
            }
        };
        if channels != (0..*c) {
            return unavailable("only all channels of a slice can be shared");
        }
        let Some(part) = parts.iter_mut().find(|p| p.columns == columns) else {
            return unavailable("the program reads no slice of exactly those columns");
        };
        if (m.rows(), m.cols()) != (*c, columns.len()) {
            return Err(DeviceError::Layout(format!(
                "a shared {} × {} matrix cannot fill {} channels × {} columns of `{}`",
                m.rows(),
                m.cols(),
                c,
                columns.len(),
                spec.name
            )));
        }
        part.content = Content::Shared(m.clone());
        Ok(())
    }

    /// Drops every shared matrix (those segments read as zeros again).
    pub fn unshare(&mut self) {
        let contents: Vec<&mut Content> = match self {
            InputStore::Segments { parts, .. } => {
                parts.iter_mut().map(|p| &mut p.content).collect()
            }
            InputStore::Whole { content, .. } => vec![content],
        };
        for content in contents {
            if matches!(content, Content::Shared(_)) {
                *content = Content::Zeros;
            }
        }
    }

    /// Puts this input's values into the slots of a run: the whole tensor into `slot`, or each
    /// segment into the slots of the slices that read it.
    pub fn place(
        &mut self,
        spec: &TensorSpec,
        slot: usize,
        plans: Option<&[SegmentPlan]>,
        slots: &mut [Option<Tensor>],
    ) {
        match (self, plans) {
            (InputStore::Segments { channels, parts }, Some(plans)) => {
                for (part, plan) in parts.iter_mut().zip(plans) {
                    let t = part.tensor(*channels);
                    for &s in &plan.slots {
                        slots[s] = Some(t.clone());
                    }
                }
            }
            (InputStore::Whole { shape, content }, _) => {
                slots[slot] = Some(match content {
                    Content::Shared(m) => shared_view(m, shape[1], shape[3]),
                    _ => Tensor::from_shared(
                        spec.ty.shape.clone(),
                        Arc::clone(whole_owned_arc(content, shape)),
                    ),
                });
            }
            (InputStore::Segments { .. }, None) => {}
        }
    }
}

impl Segment {
    /// The segment's own packed values, materialising zeros or a copy of a shared matrix.
    fn owned(&mut self, channels: usize) -> &mut Vec<f32> {
        let width = self.columns.len();
        if !matches!(self.content, Content::Owned(_)) {
            let mut data = vec![0.0; channels * width];
            if let Content::Shared(m) = &self.content {
                shared_view(m, channels, width).copy_to(&mut data);
            }
            self.content = Content::Owned(Arc::new(data));
        }
        match &mut self.content {
            Content::Owned(buf) => Arc::make_mut(buf),
            _ => unreachable!("the segment was just made owned"),
        }
    }

    /// The segment as a `[1, C, 1, width]` tensor.
    fn tensor(&mut self, channels: usize) -> Tensor {
        let width = self.columns.len();
        let shape = vec![1, channels, 1, width];
        match &self.content {
            Content::Shared(m) => shared_view(m, channels, width),
            Content::Owned(buf) => Tensor::from_shared(shape, Arc::clone(buf)),
            Content::Zeros => {
                let buf = Arc::new(vec![0.0; channels * width]);
                self.content = Content::Owned(Arc::clone(&buf));
                Tensor::from_shared(shape, buf)
            }
        }
    }
}

/// The whole input's own packed values, materialising zeros or a copy of a shared matrix.
fn whole_owned<'a>(content: &'a mut Content, shape: &[usize]) -> &'a mut Vec<f32> {
    Arc::make_mut(whole_owned_arc(content, shape))
}

/// [`whole_owned`] without claiming the values for writing (a run only reads them).
fn whole_owned_arc<'a>(content: &'a mut Content, shape: &[usize]) -> &'a mut Arc<Vec<f32>> {
    if !matches!(content, Content::Owned(_)) {
        let mut data = vec![0.0; shape.iter().product()];
        if let Content::Shared(m) = content {
            shared_view(m, shape[1], shape[3]).copy_to(&mut data);
        }
        *content = Content::Owned(Arc::new(data));
    }
    match content {
        Content::Owned(buf) => buf,
        _ => unreachable!("the input was just made owned"),
    }
}

/// `m` (checked to be `channels × width`) viewed as a `[1, channels, 1, width]` tensor.
fn shared_view(m: &SharedMatrix, channels: usize, width: usize) -> Tensor {
    let (data, rs, cs) = m.parts();
    Tensor::from_shared(vec![data.len()], Arc::clone(data)).view(
        0,
        vec![1, channels, 1, width],
        vec![0, rs as isize, 0, cs as isize],
    )
}
