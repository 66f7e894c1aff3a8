//! BLOBFILE weight files: byte layout against ane-reference §4.1, write→read identity, and every
//! kind of corruption reported as an error that names the record.

use anetrain_mil::blob::{read_all, read_record, BlobRecord, BlobWriter};
use anetrain_mil::{DType, MilError, TensorType, WeightFiles};
use half::f16;
use proptest::prelude::*;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn message(err: MilError) -> String {
    match err {
        MilError::Blob { message, .. } => message,
        other => panic!("expected a Blob error, got {other:?}"),
    }
}

/// A hand-built 64-byte record header (independent of the writer).
fn record_header(code: u32, size: u64, data_offset: u64) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[0..4].copy_from_slice(&[0xEF, 0xBE, 0xAD, 0xDE]);
    h[4..8].copy_from_slice(&code.to_le_bytes());
    h[8..16].copy_from_slice(&size.to_le_bytes());
    h[16..24].copy_from_slice(&data_offset.to_le_bytes());
    h
}

fn file_header(count: u32) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[0..4].copy_from_slice(&count.to_le_bytes());
    h[4..8].copy_from_slice(&2u32.to_le_bytes());
    h
}

/// fp16 [1, -2, 0.5], fp32 [1.5], int8 [-3, 7]: three records with hand-computed positions.
fn three_records() -> (Vec<u8>, [u64; 3]) {
    let mut w = BlobWriter::new();
    let a = w.add_fp16(&[1.0, -2.0, 0.5]);
    let b = w.add_fp32(&[1.5]);
    let c = w.add_int8(&[-3, 7]);
    (w.finish(), [a, b, c])
}

#[test]
fn layout_matches_reference_section_4_1() {
    let (bytes, offsets) = three_records();
    // Record 0 at 64 (payload 128..134), record 1 at the next multiple of 64 after 134 = 192
    // (payload 256..260), record 2 at 320 (payload 384..386).
    assert_eq!(offsets, [64, 192, 320]);
    assert_eq!(bytes.len(), 386);

    assert_eq!(u32_at(&bytes, 0), 3, "count is the real record count");
    assert_eq!(u32_at(&bytes, 4), 2, "version");
    assert!(bytes[8..64].iter().all(|&b| b == 0));

    assert_eq!(&bytes[64..68], &[0xEF, 0xBE, 0xAD, 0xDE]);
    assert_eq!(u32_at(&bytes, 68), 1, "fp16 code");
    assert_eq!(u64_at(&bytes, 72), 6);
    assert_eq!(u64_at(&bytes, 80), 128);
    assert!(bytes[88..128].iter().all(|&b| b == 0));
    // fp16 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, little-endian.
    assert_eq!(&bytes[128..134], &[0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38]);
    assert!(bytes[134..192].iter().all(|&b| b == 0), "padding is zeros");

    assert_eq!(u32_at(&bytes, 196), 2, "fp32 code");
    assert_eq!(u64_at(&bytes, 200), 4);
    assert_eq!(u64_at(&bytes, 208), 256);
    assert_eq!(
        &bytes[256..260],
        &[0x00, 0x00, 0xC0, 0x3F],
        "1.5f32 = 0x3FC00000"
    );

    assert_eq!(u32_at(&bytes, 324), 4, "int8 code");
    assert_eq!(u64_at(&bytes, 328), 2);
    assert_eq!(u64_at(&bytes, 336), 384);
    assert_eq!(&bytes[384..386], &[0xFD, 0x07]);
}

#[test]
fn writer_dtype_codes_for_int32_and_uint8() {
    let mut w = BlobWriter::new();
    let a = w.add_int32(&[-1, 70000]);
    let b = w.add_uint8(&[200]);
    let bytes = w.finish();
    assert_eq!(u32_at(&bytes, a as usize + 4), 14);
    assert_eq!(u32_at(&bytes, b as usize + 4), 3);
    let all = read_all("w.bin", &bytes).unwrap();
    assert_eq!(all[0].1.to_f32(), vec![-1.0, 70000.0]);
    assert_eq!(all[1].1.to_f32(), vec![200.0]);
}

#[test]
fn empty_writer_is_a_valid_file_with_no_records() {
    let bytes = BlobWriter::new().finish();
    assert_eq!(bytes, file_header(0));
    assert!(read_all("w.bin", &bytes).unwrap().is_empty());
}

#[test]
fn fp16_saturates_and_zeroes_nan_like_orion() {
    let input = [
        1e6,
        -1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65519.0,
        65520.0,
        1e-8,
    ];
    let mut w = BlobWriter::new();
    let at = w.add_fp16(&input);
    let bytes = w.finish();
    let got = read_record("w.bin", &bytes, at).unwrap().to_f32();
    // 65519 rounds down to 65504; 65520 would round to inf without the clamp; 1e-8 is below the
    // smallest fp16 subnormal (5.96e-8) by more than half and rounds to 0.
    assert_eq!(
        got,
        vec![65504.0, -65504.0, 65504.0, -65504.0, 0.0, 65504.0, 65504.0, 0.0]
    );
}

#[test]
fn reads_unpadded_records_as_af_writes_them() {
    // AF's writer starts the next record right after the previous payload.
    let mut file = file_header(2);
    file.extend(record_header(1, 6, 128));
    file.extend([0x00, 0x3C, 0x00, 0x40, 0x00, 0x42]); // 1, 2, 3
    file.extend(record_header(4, 1, 134 + 64));
    file.push(0xFF);
    let all = read_all("af.bin", &file).unwrap();
    let offsets: Vec<u64> = all.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, vec![64, 134]);
    assert_eq!(all[0].1.to_f32(), vec![1.0, 2.0, 3.0]);
    assert_eq!(all[1].1.to_f32(), vec![-1.0]);
}

#[derive(Clone, Debug)]
enum Data {
    Fp16Exact(Vec<u16>),
    Fp16Any(Vec<f32>),
    Fp32(Vec<f32>),
    Int8(Vec<i8>),
    Int32(Vec<i32>),
}

fn finite_f16_bits() -> impl Strategy<Value = u16> {
    // Exponent 0x1F is inf/NaN; every other bit pattern is a finite fp16.
    any::<u16>().prop_filter("finite", |b| (b >> 10) & 0x1F != 0x1F)
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        prop::collection::vec(finite_f16_bits(), 0..80).prop_map(Data::Fp16Exact),
        prop::collection::vec(any::<f32>(), 0..80).prop_map(Data::Fp16Any),
        prop::collection::vec(any::<f32>(), 0..80).prop_map(Data::Fp32),
        prop::collection::vec(any::<i8>(), 0..80).prop_map(Data::Int8),
        prop::collection::vec(any::<i32>(), 0..80).prop_map(Data::Int32),
    ]
}

/// What a reader must see for one record: dtype and exact payload bytes.
fn expected(d: &Data) -> (DType, Vec<u8>) {
    match d {
        Data::Fp16Exact(bits) => (
            DType::Fp16,
            bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
        ),
        Data::Fp16Any(v) => (
            DType::Fp16,
            v.iter()
                .map(|&x| {
                    if x.is_nan() {
                        0.0
                    } else {
                        x.clamp(-65504.0, 65504.0)
                    }
                })
                .flat_map(|x| f16::from_f32(x).to_le_bytes())
                .collect(),
        ),
        Data::Fp32(v) => (
            DType::Fp32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        Data::Int8(v) => (DType::Int8, v.iter().map(|&x| x as u8).collect()),
        Data::Int32(v) => (
            DType::Int32,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn write_then_read_is_identity(records in prop::collection::vec(data(), 0..8)) {
        let mut w = BlobWriter::new();
        let mut offsets = Vec::new();
        for d in &records {
            offsets.push(match d {
                Data::Fp16Exact(bits) => {
                    let v: Vec<f32> = bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
                    w.add_fp16(&v)
                }
                Data::Fp16Any(v) => w.add_fp16(v),
                Data::Fp32(v) => w.add_fp32(v),
                Data::Int8(v) => w.add_int8(v),
                Data::Int32(v) => w.add_int32(v),
            });
        }
        let bytes = w.finish();
        let all = read_all("w.bin", &bytes).unwrap();
        prop_assert_eq!(all.len(), records.len());
        for ((d, &offset), (got_offset, rec)) in records.iter().zip(&offsets).zip(&all) {
            prop_assert_eq!(offset % 64, 0);
            prop_assert_eq!(offset, *got_offset);
            let (dtype, payload) = expected(d);
            prop_assert_eq!(rec.dtype, dtype);
            prop_assert_eq!(rec.payload, payload.as_slice());
            prop_assert_eq!(read_record("w.bin", &bytes, offset).unwrap(), *rec);
        }
        // Widening: int32 and fp32 compare by value (NaN payloads compare by bits).
        for (d, (_, rec)) in records.iter().zip(&all) {
            let wide = rec.to_f32();
            match d {
                Data::Fp16Exact(bits) => {
                    let back: Vec<u16> = wide.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
                    prop_assert_eq!(&back, bits);
                }
                Data::Fp32(v) => {
                    let a: Vec<u32> = wide.iter().map(|x| x.to_bits()).collect();
                    let b: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
                    prop_assert_eq!(a, b);
                }
                Data::Int8(v) => prop_assert_eq!(wide, v.iter().map(|&x| x as f32).collect::<Vec<_>>()),
                Data::Int32(v) => prop_assert_eq!(wide, v.iter().map(|&x| x as f32).collect::<Vec<_>>()),
                Data::Fp16Any(_) => prop_assert!(wide.iter().all(|x| x.is_finite())),
            }
        }
    }
}

#[test]
fn short_file_is_an_error() {
    let err = message(read_record("w.bin", &[1, 0, 0, 0, 2], 64).unwrap_err());
    assert!(
        err.contains("5 bytes") && err.contains("64-byte file header"),
        "{err}"
    );
}

#[test]
fn wrong_version_is_an_error() {
    let (mut bytes, _) = three_records();
    bytes[4] = 1;
    let err = message(read_all("w.bin", &bytes).unwrap_err());
    assert!(err.contains("version 1"), "{err}");
}

#[test]
fn offset_beyond_end_names_the_offset() {
    let (bytes, _) = three_records();
    let err = message(read_record("w.bin", &bytes, 9999).unwrap_err());
    assert!(
        err.contains("offset 9999") && err.contains("beyond the end"),
        "{err}"
    );
}

#[test]
fn offset_inside_file_header_is_an_error() {
    let (bytes, _) = three_records();
    let err = message(read_record("w.bin", &bytes, 0).unwrap_err());
    assert!(
        err.contains("offset 0") && err.contains("file header"),
        "{err}"
    );
}

#[test]
fn payload_offset_used_as_record_offset_is_not_a_record() {
    // OR constraint #8: using 128 instead of 64 reads garbage; here it must be an error.
    let (bytes, _) = three_records();
    let err = message(read_record("w.bin", &bytes, 128).unwrap_err());
    assert!(
        err.contains("offset 128") && err.contains("sentinel"),
        "{err}"
    );
}

#[test]
fn bad_sentinel_is_an_error() {
    let (mut bytes, _) = three_records();
    bytes[192] = 0;
    let err = message(read_record("w.bin", &bytes, 192).unwrap_err());
    assert!(
        err.contains("offset 192") && err.contains("0xdeadbe00"),
        "{err}"
    );
    assert!(read_all("w.bin", &bytes).is_err());
}

#[test]
fn unknown_dtype_code_is_an_error() {
    let (mut bytes, _) = three_records();
    bytes[196] = 11; // uint4: a real code, but not one anetrain reads
    let err = message(read_record("w.bin", &bytes, 192).unwrap_err());
    assert!(
        err.contains("offset 192") && err.contains("dtype code 11"),
        "{err}"
    );
}

#[test]
fn payload_offset_field_must_be_record_plus_64() {
    // MX's benchmarks leave this field at zero (§4.3).
    let (mut bytes, _) = three_records();
    bytes[80..88].copy_from_slice(&0u64.to_le_bytes());
    let err = message(read_record("w.bin", &bytes, 64).unwrap_err());
    assert!(
        err.contains("offset 64") && err.contains("is 0, expected 128"),
        "{err}"
    );
}

#[test]
fn payload_size_past_end_is_truncation_even_when_huge() {
    let (mut bytes, _) = three_records();
    for size in [1000u64, u64::MAX, u64::MAX - 100] {
        bytes[72..80].copy_from_slice(&size.to_le_bytes());
        let err = message(read_record("w.bin", &bytes, 64).unwrap_err());
        assert!(
            err.contains("offset 64") && err.contains("truncated"),
            "{err}"
        );
    }
}

#[test]
fn payload_must_hold_whole_elements() {
    let (mut bytes, _) = three_records();
    bytes[72..80].copy_from_slice(&5u64.to_le_bytes());
    let err = message(read_record("w.bin", &bytes, 64).unwrap_err());
    assert!(
        err.contains("offset 64") && err.contains("5 bytes"),
        "{err}"
    );
}

#[test]
fn header_count_must_match_records_found() {
    // MX writes count = 1 whatever the number of records (§4.3).
    let (mut bytes, _) = three_records();
    bytes[0] = 1;
    let err = message(read_all("w.bin", &bytes).unwrap_err());
    assert!(err.contains("says 1 records but 3"), "{err}");
}

#[test]
fn every_truncation_is_an_error_and_never_panics() {
    let (bytes, offsets) = three_records();
    let payload_ends = [134usize, 260, 386];
    for len in 0..bytes.len() {
        let cut = &bytes[..len];
        assert!(
            read_all("w.bin", cut).is_err(),
            "read_all accepted {len} bytes"
        );
        for (&offset, &end) in offsets.iter().zip(&payload_ends) {
            let result = read_record("w.bin", cut, offset);
            if len >= end {
                assert!(result.is_ok(), "record {offset} is whole in {len} bytes");
            } else if len >= 64 {
                let err = message(result.unwrap_err());
                assert!(err.contains(&format!("offset {offset}")), "{len}: {err}");
            } else {
                assert!(result.is_err());
            }
        }
    }
}

#[test]
fn record_reports_length() {
    let rec = BlobRecord {
        dtype: DType::Fp16,
        payload: &[0, 0, 0, 0, 0, 0],
    };
    assert_eq!(rec.len(), 3);
    assert!(!rec.is_empty());
}

fn weights_with(path: &str) -> (WeightFiles, u64, u64) {
    let mut w = BlobWriter::new();
    let a = w.add_fp16(&[0.25, -4.0, 3.0, 1.0, 0.0, 8.0]);
    let b = w.add_int8(&[5, -5]);
    let mut files = WeightFiles::new();
    files.insert(path, w.finish());
    (files, a, b)
}

#[test]
fn read_tensor_returns_widened_values() {
    let path = "@model_path/weights/w.bin";
    let (files, a, b) = weights_with(path);
    let ty = TensorType::new(DType::Fp16, [2, 3, 1, 1]);
    assert_eq!(
        files.read_tensor(path, a, &ty).unwrap(),
        vec![0.25, -4.0, 3.0, 1.0, 0.0, 8.0]
    );
    let ty8 = TensorType::new(DType::Int8, [2]);
    assert_eq!(files.read_tensor(path, b, &ty8).unwrap(), vec![5.0, -5.0]);
}

#[test]
fn read_tensor_missing_file_lists_present_files() {
    let (files, a, _) = weights_with("@model_path/weights/a.bin");
    let ty = TensorType::new(DType::Fp16, [6]);
    let err = files
        .read_tensor("@model_path/weights/b.bin", a, &ty)
        .unwrap_err();
    let MilError::Blob { path, message } = err else {
        panic!("expected a Blob error")
    };
    assert_eq!(path, "@model_path/weights/b.bin");
    assert!(message.contains("@model_path/weights/a.bin"), "{message}");
}

#[test]
fn read_tensor_checks_dtype_and_count() {
    let path = "w.bin";
    let (files, a, _) = weights_with(path);
    let err = message(
        files
            .read_tensor(path, a, &TensorType::new(DType::Fp32, [6]))
            .unwrap_err(),
    );
    assert!(
        err.contains("offset 64") && err.contains("holds fp16"),
        "{err}"
    );
    let err = message(
        files
            .read_tensor(path, a, &TensorType::new(DType::Fp16, [2, 4]))
            .unwrap_err(),
    );
    assert!(
        err.contains("6 elements") && err.contains("(8 elements)"),
        "{err}"
    );
}
