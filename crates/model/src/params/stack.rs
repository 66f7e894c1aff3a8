//! A block's projections stacked by rows in one buffer: `[q; k; v]`, `o`, `[gate; up]` and
//! `down`, each the matrix `W` one forward and one backward kernel multiply by. Held in this
//! layout, the master weights are what a device that reads host memory in place (the CPU)
//! reads, so no staged copy exists beside them; each projection is a view into its stack.

use std::sync::Arc;

use super::view::{TensorView, TensorViewMut};
use super::Linear;

/// The stacks of a block, in the order of [`Group::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// `q_proj`, `k_proj`, `v_proj` `[q_dim + 2 kv_dim, dim]`.
    Qkv,
    /// `o_proj` `[dim, q_dim]`.
    O,
    /// `gate_proj`, `up_proj` `[2 hidden_dim, dim]`.
    GateUp,
    /// `down_proj` `[dim, hidden_dim]`.
    Down,
}

impl Group {
    /// Every stack of a block.
    pub const ALL: [Group; 4] = [Group::Qkv, Group::O, Group::GateUp, Group::Down];

    /// The projections stacked (by rows, in this order) in the group.
    pub fn linears(self) -> &'static [Linear] {
        match self {
            Group::Qkv => &[Linear::QProj, Linear::KProj, Linear::VProj],
            Group::O => &[Linear::OProj],
            Group::GateUp => &[Linear::GateProj, Linear::UpProj],
            Group::Down => &[Linear::DownProj],
        }
    }

    /// The group of `linear` and its index among the group's blocks.
    pub fn of(linear: Linear) -> (Group, usize) {
        Group::ALL
            .into_iter()
            .find_map(|g| {
                let i = g.linears().iter().position(|&l| l == linear)?;
                Some((g, i))
            })
            .unwrap_or((Group::Down, 0))
    }
}

/// Several `[rows_i, cols]` matrices stacked by rows in one shared buffer. Cloning shares the
/// buffer until one side writes (copy on write), so a clone costs nothing until then.
#[derive(Clone, Debug, PartialEq)]
pub struct Stack {
    /// Row-major `[Σ rows_i, cols]`; empty for a shape-only stack ([`super::Params::shapes`]).
    data: Arc<Vec<f32>>,
    /// `[rows_i, cols]` of each block.
    shapes: Vec<[usize; 2]>,
}

impl Stack {
    /// A stack of blocks of `shapes` (all with the same column count) over `data`.
    pub(crate) fn new(shapes: Vec<[usize; 2]>, data: Vec<f32>) -> Stack {
        Stack {
            data: Arc::new(data),
            shapes,
        }
    }

    /// Rows of the whole stack.
    pub fn rows(&self) -> usize {
        self.shapes.iter().map(|s| s[0]).sum()
    }

    /// Columns of every block.
    pub fn cols(&self) -> usize {
        self.shapes.first().map_or(0, |s| s[1])
    }

    /// Whether the stack holds its values rather than only their shapes.
    pub fn holds_values(&self) -> bool {
        self.data.len() == self.rows() * self.cols()
    }

    /// Frees the values (once no clone shares them), keeping the shapes.
    pub(crate) fn drop_values(&mut self) {
        self.data = Arc::new(Vec::new());
    }

    /// The whole stacked matrix, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The buffer itself, for a device to read in place; while the clone lives, writes to
    /// this stack copy it first, so lend it only for the duration of a pass.
    pub fn shared(&self) -> Arc<Vec<f32>> {
        Arc::clone(&self.data)
    }

    /// Block `i` as a tensor.
    pub fn block(&self, i: usize) -> TensorView<'_> {
        let start: usize = self.shapes[..i].iter().map(|s| s[0] * s[1]).sum();
        let shape = &self.shapes[i];
        let data = self.data.get(start..start + shape[0] * shape[1]);
        TensorView::new(shape, data.unwrap_or_default())
    }

    /// Every block, mutable at once.
    pub fn blocks_mut(&mut self) -> Vec<TensorViewMut<'_>> {
        let mut rest: &mut [f32] = Arc::make_mut(&mut self.data).as_mut_slice();
        let mut out = Vec::with_capacity(self.shapes.len());
        for shape in &self.shapes {
            let n = (shape[0] * shape[1]).min(rest.len());
            let (block, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            out.push(TensorViewMut::new(shape, block));
        }
        out
    }
}
