//! Reading and writing kernel inputs and outputs as NumPy `.npy` files (format versions 1–3).
//!
//! Written here rather than taken from a crate: the npy crates pull in a C-compiled stack guard
//! through their Python-literal parser, which breaks the `aarch64-apple-darwin` check, and the
//! header is a one-line dictionary that takes a few lines to read.

use anyhow::{bail, Context, Result};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// A tensor read from a `.npy` file, widened to f32.
#[derive(Debug)]
pub struct NpyTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The value of `key` in the header dictionary, up to the next top-level comma or brace.
fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

/// Reads a C-order fp16 or fp32 little-endian `.npy` file.
pub fn read(path: &Path) -> Result<NpyTensor> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bad = |why: &str| anyhow::anyhow!("{} is not a valid .npy file: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    let data_start = header_start + header_len;
    let header = bytes
        .get(header_start..data_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated or non-text header"))?;
    if header_field(header, "fortran_order") != Some("False") {
        bail!(
            "{} is stored in Fortran order; save it with numpy.ascontiguousarray first",
            path.display()
        );
    }
    let shape_text = header_field(header, "shape").ok_or_else(|| bad("no shape"))?;
    let shape = shape_text
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("malformed shape")))
        .collect::<Result<Vec<_>>>()?;
    let count: usize = shape.iter().product();
    let descr = header_field(header, "descr").ok_or_else(|| bad("no descr"))?;
    let payload = &bytes[data_start..];
    let width = match descr.trim_matches('\'') {
        "<f4" => 4,
        "<f2" => 2,
        other => bail!(
            "{} holds dtype {other}; kernel inputs must be float16 or float32 (little-endian)",
            path.display()
        ),
    };
    if payload.len() != count * width {
        return Err(bad(&format!(
            "shape {shape:?} needs {} bytes of data, found {}",
            count * width,
            payload.len()
        )));
    }
    let data = if width == 4 {
        payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        payload
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()
    };
    Ok(NpyTensor { shape, data })
}

/// Writes `data` with `shape` as a float32 `.npy` file (format version 1).
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so the data starts on a 64-byte boundary, as NumPy does; the header ends with '\n'.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_is_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write(&path, &[1, 2, 3, 4], &data).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            (bytes.len() - data.len() * 4) % 64,
            0,
            "data is 64-byte aligned"
        );
        let t = read(&path).unwrap();
        assert_eq!(t.shape, vec![1, 2, 3, 4]);
        assert_eq!(t.data, data);
    }

    #[test]
    fn reads_fp16_files_as_numpy_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.npy");
        let header = "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        for v in [1.5f32, -2.0, 0.25] {
            bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
        std::fs::write(&path, bytes).unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.shape, vec![3]);
        assert_eq!(t.data, vec![1.5, -2.0, 0.25]);
    }

    #[test]
    fn rejects_other_dtypes_and_truncated_data_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy");
        write(&path, &[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("needs 16 bytes"), "{err}");
        let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
        bytes[at..at + 3].copy_from_slice(b"<i8");
        std::fs::write(&path, &bytes).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("<i8"), "{err}");
    }
}
