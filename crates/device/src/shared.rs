//! [`SharedMatrix`]: a read-only matrix in host memory that a kernel may read in place of a
//! copy staged into its input, so weights a caller already holds are not held twice.

use crate::error::{DeviceError, Result};
use std::sync::Arc;

/// A read-only `rows × cols` f32 matrix over shared storage: element `(r, c)` is
/// `data[r · row_stride + c · col_stride]`. Cloning shares the storage.
#[derive(Clone, Debug)]
pub struct SharedMatrix {
    data: Arc<Vec<f32>>,
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl SharedMatrix {
    /// `data` read as a packed row-major `rows × cols` matrix.
    pub fn row_major(data: Arc<Vec<f32>>, rows: usize, cols: usize) -> Result<SharedMatrix> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(DeviceError::Layout(format!(
                "a shared {rows} × {cols} matrix needs {} values but its storage holds {}",
                rows.saturating_mul(cols),
                data.len()
            )));
        }
        Ok(SharedMatrix {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        })
    }

    /// The transpose, over the same storage (no copy).
    pub fn transposed(&self) -> SharedMatrix {
        SharedMatrix {
            data: Arc::clone(&self.data),
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Storage and `(row, column)` strides, for devices that read the matrix in place.
    pub(crate) fn parts(&self) -> (&Arc<Vec<f32>>, usize, usize) {
        (&self.data, self.row_stride, self.col_stride)
    }
}
