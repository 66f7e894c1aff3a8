//! Reading and writing kernel inputs and outputs as NumPy `.npy` files.

use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;
use std::path::Path;

/// A tensor read from a `.npy` file, widened to f32.
pub struct NpyTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a C-order fp16 or fp32 `.npy` file.
pub fn read(path: &Path) -> Result<NpyTensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not a valid .npy file", path.display()))?;
    if npy.order() != npyz::Order::C {
        bail!(
            "{} is stored in Fortran order; save it with numpy.ascontiguousarray first",
            path.display()
        );
    }
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let data = match descr.as_str() {
        "'<f4'" | "<f4" => npy.into_vec::<f32>()?,
        "'<f2'" | "<f2" => npy
            .into_vec::<half::f16>()?
            .into_iter()
            .map(half::f16::to_f32)
            .collect(),
        other => bail!(
            "{} holds dtype {other}; kernel inputs must be float16 or float32 (little-endian)",
            path.display()
        ),
    };
    Ok(NpyTensor { shape, data })
}

/// Writes `data` with `shape` as a float32 `.npy` file.
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    Ok(())
}
