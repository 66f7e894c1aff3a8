//! BLOBFILE weight files (ane-reference §4): a 64-byte file header, then 64-byte-aligned
//! records of a 64-byte header and a payload. MIL references a record by its header's offset.
//!
//! Layout, all integers little-endian (Apple's `MILBlob/Blob/StorageFormat.hpp` in coremltools
//! defines the same structure):
//!
//! ```text
//! 0      u32 record count     4  u32 version = 2     8..64  zeros
//! R+0    u32 0xDEADBEEF       R+4  u32 dtype code    R+8  u64 payload bytes
//! R+16   u64 payload offset (always R+64)            R+24..R+64 zeros
//! R+64   payload, row-major in the declared MIL shape
//! ```
//!
//! Some generations check these fields and others do not (§4.3), so the writer always fills in
//! the real count, sizes and offsets, and the reader rejects anything it would not write.

use crate::error::{MilError, Result};
use crate::program::Program;
use crate::types::{DType, TensorType};
use half::f16;
use std::collections::BTreeMap;
use std::path::Path;

/// Bytes of the file header; the first record starts here, so the first MIL offset is 64.
pub const FILE_HEADER_BYTES: u64 = 64;
/// Bytes of each record header; a record's payload starts this far after its MIL offset.
pub const RECORD_HEADER_BYTES: u64 = 64;
/// Every record starts at a multiple of this (Apple's files and AB pad; §4.1 says pad to 64).
pub const RECORD_ALIGNMENT: u64 = 64;
/// The first word of every record header.
pub const RECORD_SENTINEL: u32 = 0xDEAD_BEEF;
/// The only file version this format has (version 1 is Espresso's older `blob_v1`).
pub const BLOB_VERSION: u32 = 2;
/// Largest finite fp16; fp16 payloads are clamped to ±this.
pub const FP16_MAX: f32 = 65504.0;

/// The record dtype code of `dtype` (§4.2), for the dtypes a record can hold.
///
/// uint8 is code 3 in Apple's `BlobDataType` enum (coremltools `StorageFormat.hpp`), which
/// also gives fp16 1, fp32 2 and int8 4; int32 14 comes from AB.
pub fn dtype_code(dtype: DType) -> Option<u32> {
    match dtype {
        DType::Fp16 => Some(1),
        DType::Fp32 => Some(2),
        DType::Uint8 => Some(3),
        DType::Int8 => Some(4),
        DType::Int32 => Some(14),
        DType::Bool | DType::Uint64 | DType::String => None,
    }
}

/// The dtype a record dtype code stands for, if anetrain supports it.
pub fn dtype_from_code(code: u32) -> Option<DType> {
    [
        DType::Fp16,
        DType::Fp32,
        DType::Uint8,
        DType::Int8,
        DType::Int32,
    ]
    .into_iter()
    .find(|&d| dtype_code(d) == Some(code))
}

/// Rounds `offset` up to the next record boundary.
fn align_up(offset: u64) -> u64 {
    offset.div_ceil(RECORD_ALIGNMENT) * RECORD_ALIGNMENT
}

/// Builds one weight file record by record, handing back the MIL offset of each.
///
/// ```
/// use anetrain_mil::blob::BlobWriter;
/// let mut w = BlobWriter::new();
/// assert_eq!(w.add_fp16(&[1.0, 2.0]), 64);
/// assert_eq!(w.add_int8(&[1, -1]), 192);
/// let bytes = w.finish();
/// assert_eq!(bytes.len(), 192 + 64 + 2);
/// ```
#[derive(Clone, Debug)]
pub struct BlobWriter {
    bytes: Vec<u8>,
    count: u32,
}

impl Default for BlobWriter {
    fn default() -> Self {
        BlobWriter::new()
    }
}

impl BlobWriter {
    /// An empty file: just the 64-byte header, its count patched in by [`BlobWriter::finish`].
    pub fn new() -> BlobWriter {
        BlobWriter {
            bytes: vec![0; FILE_HEADER_BYTES as usize],
            count: 0,
        }
    }

    /// Number of records added so far.
    pub fn records(&self) -> u32 {
        self.count
    }

    /// Appends an fp16 record and returns its MIL offset.
    ///
    /// Each value is clamped to ±65504 and NaN becomes 0 before rounding to nearest even, as OR
    /// does after its NaN incidents (§4.5): the ANE does not propagate NaN or inf the usual way
    /// (§5 #21), so a non-finite weight corrupts results silently instead of failing. Values
    /// that overflow fp16 therefore saturate rather than becoming ±inf.
    pub fn add_fp16(&mut self, values: &[f32]) -> u64 {
        self.add_record(DType::Fp16, values.len(), |out| {
            for &v in values {
                let finite = if v.is_nan() {
                    0.0
                } else {
                    v.clamp(-FP16_MAX, FP16_MAX)
                };
                out.extend_from_slice(&f16::from_f32(finite).to_le_bytes());
            }
        })
    }

    /// Appends an fp32 record (values stored exactly) and returns its MIL offset.
    pub fn add_fp32(&mut self, values: &[f32]) -> u64 {
        self.add_record(DType::Fp32, values.len(), |out| {
            values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()))
        })
    }

    /// Appends an int8 record (quantized weights for `constexpr_affine_dequantize`) and returns
    /// its MIL offset.
    pub fn add_int8(&mut self, values: &[i8]) -> u64 {
        self.add_record(DType::Int8, values.len(), |out| {
            out.extend(values.iter().map(|v| v.to_le_bytes()[0]))
        })
    }

    /// Appends a uint8 record and returns its MIL offset.
    pub fn add_uint8(&mut self, values: &[u8]) -> u64 {
        self.add_record(DType::Uint8, values.len(), |out| {
            out.extend_from_slice(values)
        })
    }

    /// Appends an int32 record and returns its MIL offset.
    pub fn add_int32(&mut self, values: &[i32]) -> u64 {
        self.add_record(DType::Int32, values.len(), |out| {
            values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()))
        })
    }

    /// The finished file, with the real record count in its header (MX writes 1 whatever the
    /// count; §4.3 suggests strict generations check it).
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes[0..4].copy_from_slice(&self.count.to_le_bytes());
        self.bytes[4..8].copy_from_slice(&BLOB_VERSION.to_le_bytes());
        self.bytes
    }

    /// Pads to the next record boundary, writes a record header for `len` elements of `dtype`,
    /// then lets `write` append the payload: one pass over the values into space reserved here,
    /// so the file grows by at most one reallocation per record.
    fn add_record(&mut self, dtype: DType, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> u64 {
        let record = align_up(self.bytes.len() as u64);
        let payload_bytes = (len * dtype.size_bytes()) as u64;
        // Every dtype the public adders pass has a code; 0 would be rejected by any reader.
        let code = dtype_code(dtype).unwrap_or_default();
        self.bytes.resize(record as usize, 0);
        self.bytes
            .reserve(RECORD_HEADER_BYTES as usize + payload_bytes as usize);
        let mut header = [0u8; RECORD_HEADER_BYTES as usize];
        header[0..4].copy_from_slice(&RECORD_SENTINEL.to_le_bytes());
        header[4..8].copy_from_slice(&code.to_le_bytes());
        header[8..16].copy_from_slice(&payload_bytes.to_le_bytes());
        header[16..24].copy_from_slice(&(record + RECORD_HEADER_BYTES).to_le_bytes());
        self.bytes.extend_from_slice(&header);
        write(&mut self.bytes);
        debug_assert_eq!(
            self.bytes.len() as u64,
            record + RECORD_HEADER_BYTES + payload_bytes
        );
        // Four billion records would need at least 256 GiB of headers, so this never saturates.
        self.count = self.count.saturating_add(1);
        record
    }
}

/// One record of a weight file: its dtype and its raw little-endian payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlobRecord<'a> {
    pub dtype: DType,
    pub payload: &'a [u8],
}

impl BlobRecord<'_> {
    /// Number of elements in the payload.
    pub fn len(&self) -> usize {
        self.payload.len() / self.dtype.size_bytes().max(1)
    }

    /// True when the payload holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements widened to f32 (exact for fp16, fp32, int8 and uint8; int32 beyond 2^24
    /// rounds), which is what the CPU interpreter computes with.
    pub fn to_f32(&self) -> Vec<f32> {
        let p = self.payload;
        match self.dtype {
            DType::Fp16 => p
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::Fp32 => p
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::Int32 => p
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            DType::Int8 => p.iter().map(|&b| b as i8 as f32).collect(),
            DType::Uint8 | DType::Bool => p.iter().map(|&b| b as f32).collect(),
            DType::Uint64 | DType::String => Vec::new(),
        }
    }
}

fn blob_error(path: &str, message: String) -> MilError {
    MilError::Blob {
        path: path.to_string(),
        message,
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The file header's record count, after checking the header is whole and of version 2.
fn read_header(path: &str, file: &[u8]) -> Result<u32> {
    if (file.len() as u64) < FILE_HEADER_BYTES {
        return Err(blob_error(
            path,
            format!(
                "file is {} bytes, shorter than the 64-byte file header; it is truncated or not a weight file",
                file.len()
            ),
        ));
    }
    let version = u32_at(file, 4);
    if version != BLOB_VERSION {
        return Err(blob_error(
            path,
            format!("file header has version {version}, expected {BLOB_VERSION}; rewrite the file with BlobWriter"),
        ));
    }
    Ok(u32_at(file, 0))
}

/// Reads the record whose header is at `offset` (the number MIL writes in `BLOBFILE(offset=...)`),
/// checking every header field against the file. `path` only names the file in errors.
pub fn read_record<'a>(path: &str, file: &'a [u8], offset: u64) -> Result<BlobRecord<'a>> {
    read_header(path, file)?;
    let len = file.len() as u64;
    let err = |message: String| blob_error(path, format!("record at offset {offset}: {message}"));
    if offset < FILE_HEADER_BYTES {
        return Err(err(
            "points into the 64-byte file header; the first record is at offset 64".to_string(),
        ));
    }
    if offset >= len {
        return Err(err(format!(
            "is beyond the end of the file ({len} bytes); the offset is wrong or the file is truncated"
        )));
    }
    let payload_start = offset + RECORD_HEADER_BYTES;
    if payload_start > len {
        return Err(err(format!(
            "the 64-byte record header runs past the end of the file ({len} bytes); the file is truncated"
        )));
    }
    // offset < len and len fits in usize, so these conversions are exact.
    let at = offset as usize;
    let sentinel = u32_at(file, at);
    if sentinel != RECORD_SENTINEL {
        return Err(err(format!(
            "no record here: found {sentinel:#010x} where the sentinel 0xdeadbeef belongs; \
             BLOBFILE offsets name the record header (first record at 64), not the payload"
        )));
    }
    let code = u32_at(file, at + 4);
    let dtype = dtype_from_code(code).ok_or_else(|| {
        err(format!(
            "unknown dtype code {code}; supported codes are 1 fp16, 2 fp32, 3 uint8, 4 int8, 14 int32"
        ))
    })?;
    let size = u64_at(file, at + 8);
    let data_offset = u64_at(file, at + 16);
    if data_offset != payload_start {
        return Err(err(format!(
            "payload offset field is {data_offset}, expected {payload_start} (record offset + 64); \
             the header is malformed, rewrite the file with BlobWriter"
        )));
    }
    let end = payload_start.checked_add(size).filter(|&end| end <= len);
    let Some(end) = end else {
        return Err(err(format!(
            "{size}-byte payload starting at {payload_start} runs past the end of the file ({len} bytes); the file is truncated"
        )));
    };
    if !size.is_multiple_of(dtype.size_bytes() as u64) {
        return Err(err(format!(
            "payload of {size} bytes is not a whole number of {dtype} elements ({} bytes each)",
            dtype.size_bytes()
        )));
    }
    Ok(BlobRecord {
        dtype,
        payload: &file[payload_start as usize..end as usize],
    })
}

/// Every record of a file with its MIL offset, in file order, checking the header's count.
///
/// After a record, the next one starts right at the payload end if a sentinel is there (AF's
/// writer does not pad), otherwise at the next multiple of 64 (Apple, AB and [`BlobWriter`]).
pub fn read_all<'a>(path: &str, file: &'a [u8]) -> Result<Vec<(u64, BlobRecord<'a>)>> {
    let count = read_header(path, file)?;
    let len = file.len() as u64;
    let mut records = Vec::new();
    let mut offset = FILE_HEADER_BYTES;
    while offset < len {
        let record = read_record(path, file, offset)?;
        records.push((offset, record));
        let end = offset + RECORD_HEADER_BYTES + record.payload.len() as u64;
        let unpadded = !end.is_multiple_of(RECORD_ALIGNMENT)
            && end + 4 <= len
            && u32_at(file, end as usize) == RECORD_SENTINEL;
        offset = if unpadded { end } else { align_up(end) };
    }
    if records.len() as u64 != u64::from(count) {
        return Err(blob_error(
            path,
            format!(
                "file header says {count} records but {} were found; the file is truncated or its \
                 count field is wrong (MX writes 1 whatever the count)",
                records.len()
            ),
        ));
    }
    Ok(records)
}

/// The weight files a program references, keyed by the exact BLOBFILE path string
/// (`@model_path/weights/w.bin`), each the whole file's bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightFiles {
    files: BTreeMap<String, Vec<u8>>,
}

impl WeightFiles {
    /// No files; add them with [`WeightFiles::insert`].
    pub fn new() -> WeightFiles {
        WeightFiles::default()
    }

    /// Adds or replaces the file at `path`.
    pub fn insert(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(path.into(), bytes);
    }

    /// The bytes of the file at `path`.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Every (path, bytes) pair, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Reads every weight file `program` references from `dir`, where `@model_path/` is `dir`
    /// (the ANE compiler's convention), so a program and its weights load the same everywhere.
    pub fn load_dir(program: &Program, dir: &Path) -> Result<WeightFiles> {
        let mut weights = WeightFiles::new();
        for path in program.weight_paths() {
            let rel = path.strip_prefix("@model_path/").ok_or_else(|| {
                blob_error(
                    path,
                    "BLOBFILE paths must start with @model_path/ (the weights directory)".into(),
                )
            })?;
            let file = dir.join(rel);
            let bytes = std::fs::read(&file).map_err(|e| {
                blob_error(
                    path,
                    format!(
                        "the program references it, but {} cannot be read ({e}); give the \
                         directory that @model_path/ stands for",
                        file.display()
                    ),
                )
            })?;
            weights.insert(path, bytes);
        }
        Ok(weights)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// True when there are no files.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The values of the BLOBFILE constant `tensor<ty>(BLOBFILE(path, offset))`, widened to
    /// f32, after checking the record's dtype and element count against the declared type.
    /// This is how the CPU interpreter loads weight constants.
    pub fn read_tensor(&self, path: &str, offset: u64, ty: &TensorType) -> Result<Vec<f32>> {
        let file = self.get(path).ok_or_else(|| {
            let present: Vec<&str> = self.files.keys().map(String::as_str).collect();
            blob_error(
                path,
                format!(
                    "the program references this file but it was not supplied (files present: {}); \
                     add it to the WeightFiles under exactly this path",
                    if present.is_empty() {
                        "none".to_string()
                    } else {
                        present.join(", ")
                    }
                ),
            )
        })?;
        let record = read_record(path, file, offset)?;
        if record.dtype != ty.dtype {
            return Err(blob_error(
                path,
                format!(
                    "record at offset {offset} holds {} but the MIL declares {ty}",
                    record.dtype
                ),
            ));
        }
        // Checked, because a parsed shape can be absurd; an overflowing count matches no record.
        let declared = ty
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if declared != Some(record.len()) {
            let declared = declared.map_or("more than usize::MAX".to_string(), |n| n.to_string());
            return Err(blob_error(
                path,
                format!(
                    "record at offset {offset} holds {} elements but the MIL declares {ty} ({declared} elements)",
                    record.len(),
                ),
            ));
        }
        Ok(record.to_f32())
    }
}
