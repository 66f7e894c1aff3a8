//! Borrowed views of one named tensor, so a tensor that lives inside a larger buffer (a
//! block's stacked projections, see [`super::stack`]) reads and writes like an owned one.

use super::Tensor;

/// A read-only view of a dense fp32 tensor, row-major.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TensorView<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

/// A mutable view of a dense fp32 tensor, row-major.
#[derive(Debug)]
pub struct TensorViewMut<'a> {
    shape: &'a [usize],
    data: &'a mut [f32],
}

impl<'a> TensorView<'a> {
    /// `data` viewed as a tensor of `shape` (`shape.iter().product()` values, or none for a
    /// shape-only view).
    pub(crate) fn new(shape: &'a [usize], data: &'a [f32]) -> Self {
        TensorView { shape, data }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// An owned copy.
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_parts(self.shape.to_vec(), self.data.to_vec())
    }
}

impl<'a> TensorViewMut<'a> {
    /// `data` viewed as a tensor of `shape` (`shape.iter().product()` values, or none for a
    /// shape-only view).
    pub(crate) fn new(shape: &'a [usize], data: &'a mut [f32]) -> Self {
        TensorViewMut { shape, data }
    }

    /// The shape, outermost dimension first.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        self.data
    }

    /// The values, row-major, for in-place updates.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }

    /// The values for the whole borrow, e.g. to hand to another thread.
    pub fn into_data(self) -> &'a mut [f32] {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// A read-only view of the same values.
    pub fn view(&self) -> TensorView<'_> {
        TensorView::new(self.shape, self.data)
    }
}
