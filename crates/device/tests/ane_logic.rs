//! The platform-independent logic of the ANE device, checked against hand-computed numbers and
//! naive reference loops. Nothing here needs a Mac.

use anetrain_device::ane::attributes::{AttrValue, ModelPorts, PortAttributes};
use anetrain_device::ane::budget::{CompileBudget, HARD_LIMIT};
use anetrain_device::ane::cache::{
    instance_id, stamped_text, Fnv128, KernelCache, KernelKey, INSTANCE_KEY, NONCE_KEY,
};
use anetrain_device::ane::capabilities::{Capabilities, Probe};
use anetrain_device::ane::pack::{self, F16_MAX};
use anetrain_device::ane::port_order::{kernel_ports, IoSchema, OrderSource, PortOrder};
use anetrain_device::ane::self_test::{SelfTest, CHANNELS, WIDTH};
use anetrain_device::ane::surface_layout::{
    RowLayout, SurfaceLayout, SurfacePolicy, SurfaceProperties,
};
use anetrain_device::ane::weights_dict::{model_dir_files, weight_entries, ModelDir};
use anetrain_device::ane::ConstraintCheck;
use anetrain_device::{CpuDevice, DeviceError, TensorSpec};
use anetrain_mil::{DType, Literal, Op, Program, TensorType, WeightFiles};
use half::f16;
use std::path::{Path, PathBuf};
use std::slice::from_ref;
use std::sync::atomic::{AtomicUsize, Ordering};

fn spec(name: &str, dtype: DType, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        ty: TensorType::new(dtype, shape),
    }
}

fn message<T: std::fmt::Debug>(r: Result<T, DeviceError>) -> String {
    r.expect_err("expected an error").to_string()
}

/// Deterministic values in [-scale, scale] (a small LCG, so tests need no RNG crate).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A unique scratch directory under the system temp dir.
fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "anetrain-ane-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

// ---------------------------------------------------------------- surface_layout

#[test]
fn small_surfaces_are_raised_to_48_kib_in_one_row() {
    let x = spec("x", DType::Fp16, &[1, 64, 1, 32]); // 4096 bytes of payload
    let layout =
        SurfaceLayout::plan(from_ref(&x), from_ref(&x), &SurfacePolicy::CONSERVATIVE).unwrap();
    assert_eq!(layout.input_payloads, vec![4096]);
    assert_eq!(layout.input_alloc, 49152);
    assert_eq!(layout.rows, RowLayout::SingleRow);
    let p = layout.input_properties();
    assert_eq!(
        p,
        SurfaceProperties {
            width: 49152,
            height: 1,
            bytes_per_element: 1,
            bytes_per_row: 49152,
            alloc_size: 49152,
            pixel_format: 0,
        }
    );
}

#[test]
fn the_multi_row_retry_rounds_up_to_whole_4096_byte_rows() {
    // 100 * 288 * 4 = 115200 bytes = 28.125 rows of 4096 -> 29 rows = 118784 bytes.
    let x = spec("x", DType::Fp32, &[1, 100, 1, 288]);
    let layout =
        SurfaceLayout::plan(from_ref(&x), from_ref(&x), &SurfacePolicy::CONSERVATIVE).unwrap();
    assert_eq!(layout.input_payloads, vec![115200]);
    assert_eq!(layout.input_alloc, 115200);
    assert_eq!(layout.input_properties().height, 1);
    let wide = layout.with_rows(RowLayout::MultiRow);
    assert_eq!(wide.input_alloc, 118784);
    let p = wide.input_properties();
    assert_eq!((p.width, p.height, p.bytes_per_row), (4096, 29, 4096));
    assert_eq!(p.alloc_size, 118784);
}

#[test]
fn every_input_and_every_output_gets_the_largest_allocation_of_its_side() {
    let small = spec("a", DType::Fp16, &[1, 64, 1, 32]); // 4096 B
    let big = spec("b", DType::Fp16, &[1, 768, 1, 256]); // 393216 B = 96 rows
    let mid = spec("c", DType::Fp16, &[1, 256, 1, 128]); // 65536 B
    let layout = SurfaceLayout::plan(
        &[small.clone(), big.clone()],
        &[small, mid],
        &SurfacePolicy::CONSERVATIVE,
    )
    .unwrap();
    assert_eq!(layout.input_payloads, vec![4096, 393216]);
    assert_eq!(layout.input_alloc, 393216);
    assert_eq!(layout.output_payloads, vec![4096, 65536]);
    assert_eq!(layout.output_alloc, 65536);
    assert_eq!(layout.output_properties().height, 1);
    let wide = layout.with_rows(RowLayout::MultiRow);
    assert_eq!(wide.output_properties().height, 16);
}

#[test]
fn surfaces_grow_to_the_batch_stride_the_model_reports() {
    let x = spec("x", DType::Fp16, &[1, 768, 1, 64]); // 98304 B
    let mut layout =
        SurfaceLayout::plan(from_ref(&x), from_ref(&x), &SurfacePolicy::CONSERVATIVE).unwrap();
    layout.reserve(&[100_000], &[50_000]);
    assert_eq!(layout.input_alloc, 100_000);
    assert_eq!(
        layout.output_alloc, 98304,
        "never shrinks below the payload"
    );
    assert_eq!(layout.with_rows(RowLayout::MultiRow).input_alloc, 102_400);
}

#[test]
fn only_a_size_error_on_the_single_row_layout_retries_with_rows() {
    let status = "ANE evaluate failed: ANEProgramProcessRequestDirect() Failed with \
                  status=0x1d : statusType=0x9: Program Inference error";
    assert_eq!(
        RowLayout::SingleRow.retry_after(status),
        Some(RowLayout::MultiRow)
    );
    assert_eq!(
        RowLayout::SingleRow.retry_after("IOSurfaceCreate refused a 9-byte surface"),
        Some(RowLayout::MultiRow)
    );
    assert_eq!(
        RowLayout::MultiRow.retry_after(status),
        None,
        "retried once"
    );
    assert_eq!(
        RowLayout::SingleRow.retry_after("ANECCompile() FAILED: InvalidMILProgram"),
        None
    );
}

#[test]
fn widths_that_are_not_multiples_of_32_are_refused_with_the_padded_width() {
    let p = SurfacePolicy::CONSERVATIVE;
    let ok = spec("ok", DType::Fp16, &[1, 8, 1, 64]);
    let odd = spec("tokens", DType::Fp16, &[1, 100, 1, 100]);
    let msg = message(SurfaceLayout::plan(&[odd], from_ref(&ok), &p));
    assert!(msg.contains("input `tokens`"), "{msg}");
    assert!(msg.contains("pad the sequence to 128"), "{msg}");
    let narrow = spec("y", DType::Fp16, &[1, 8, 1, 16]);
    let msg = message(SurfaceLayout::plan(from_ref(&ok), from_ref(&narrow), &p));
    assert!(
        msg.contains("output `y`") && msg.contains("pad the sequence to 32"),
        "{msg}"
    );
    let relaxed = SurfacePolicy {
        width_multiple: 16,
        min_width: 16,
        ..p
    };
    assert!(SurfaceLayout::plan(&[ok], &[narrow], &relaxed).is_ok());
}

#[test]
fn non_float_ports_and_kernels_without_outputs_are_refused() {
    let p = SurfacePolicy::CONSERVATIVE;
    let ids = spec("ids", DType::Int32, &[1, 1, 1, 64]);
    let ok = spec("ok", DType::Fp16, &[1, 8, 1, 64]);
    assert!(message(SurfaceLayout::plan(&[ids], from_ref(&ok), &p)).contains("fp16 or fp32"));
    assert!(message(SurfaceLayout::plan(&[ok], &[], &p)).contains("no outputs"));
}

// ---------------------------------------------------------------- pack

#[test]
fn fp16_round_trip_matches_per_element_conversion() {
    let s = spec("x", DType::Fp16, &[1, 3, 1, 32]);
    let data = values(96, 1, 10.0);
    let mut buf = vec![f16::from_f32(7.0); 100]; // longer than the payload
    pack::write_tensor(&s, &mut buf, &data).unwrap();
    let mut back = vec![0.0; 96];
    pack::read_tensor(&s, &buf, &mut back).unwrap();
    for i in 0..96 {
        assert_eq!(back[i], f16::from_f32(data[i]).to_f32(), "element {i}");
    }
    assert!(
        buf[96..].iter().all(|v| v.to_f32() == 7.0),
        "padding was touched"
    );
}

#[test]
fn fp16_conversion_saturates_and_keeps_nan() {
    let s = spec("x", DType::Fp16, &[1, 1, 1, 6]);
    let data = [
        1e6,
        -1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65519.0,
    ];
    let mut buf = vec![f16::ZERO; 6];
    pack::write_tensor(&s, &mut buf, &data).unwrap();
    let got: Vec<f32> = buf.iter().map(|v| v.to_f32()).collect();
    assert_eq!(&got[..4], &[F16_MAX, -F16_MAX, F16_MAX, -F16_MAX]);
    assert!(got[4].is_nan());
    assert_eq!(
        got[5], F16_MAX,
        "65519 would round to infinity without the clamp"
    );
}

#[test]
fn region_writes_touch_exactly_the_region() {
    let (c, s) = (6, 64);
    let t = spec("x", DType::Fp16, &[1, c, 1, s]);
    let before = values(c * s, 2, 4.0);
    let mut buf: Vec<f16> = before.iter().map(|&v| f16::from_f32(v)).collect();
    let region = values(3 * 32, 3, 4.0);
    pack::write_region(&t, &mut buf, 2..5, 8..40, &region).unwrap();
    for ch in 0..c {
        for col in 0..s {
            let want = if (2..5).contains(&ch) && (8..40).contains(&col) {
                region[(ch - 2) * 32 + (col - 8)]
            } else {
                before[ch * s + col]
            };
            assert_eq!(buf[ch * s + col], f16::from_f32(want), "({ch}, {col})");
        }
    }
}

#[test]
fn channel_reads_match_a_naive_slice() {
    let t = spec("y", DType::Fp32, &[1, 5, 2, 32]);
    let data = values(5 * 64, 4, 3.0);
    let mut out = vec![0.0; 2 * 64];
    pack::read_channels(&t, &data, 1..3, &mut out).unwrap();
    let want: Vec<f32> = (64..192).map(|i| data[i]).collect();
    assert_eq!(out, want);
}

#[test]
fn byte_buffers_pick_the_element_type_from_the_dtype() {
    let mut raw = vec![0u8; 4 * 64 + 8];
    let off = raw.as_ptr().align_offset(4);
    let bytes = &mut raw[off..off + 4 * 64];
    let data = values(64, 5, 1.0);

    let fp32 = spec("x", DType::Fp32, &[1, 2, 1, 32]);
    pack::write_tensor_bytes(&fp32, bytes, &data).unwrap();
    assert_eq!(&bytes[..4], &data[0].to_le_bytes());
    let mut back = vec![0.0; 64];
    pack::read_tensor_bytes(&fp32, bytes, &mut back).unwrap();
    assert_eq!(back, data, "fp32 I/O is exact");

    let fp16 = spec("x", DType::Fp16, &[1, 2, 1, 32]);
    pack::write_tensor_bytes(&fp16, bytes, &data).unwrap();
    assert_eq!(&bytes[2..4], &f16::from_f32(data[1]).to_le_bytes());
    pack::read_channels_bytes(&fp16, bytes, 1..2, &mut back[..32]).unwrap();
    assert_eq!(back[0], f16::from_f32(data[32]).to_f32());
}

#[test]
fn pack_errors_name_the_problem() {
    let t = spec("x", DType::Fp16, &[1, 4, 1, 32]);
    let mut buf = vec![f16::ZERO; 128];
    assert!(message(pack::write_tensor(&t, &mut buf, &[0.0; 5])).contains("needs 128"));
    assert!(
        message(pack::write_region(&t, &mut buf, 3..5, 0..32, &[0.0; 64]))
            .contains("channel range")
    );
    assert!(
        message(pack::write_region(&t, &mut buf, 0..1, 16..48, &[0.0; 32]))
            .contains("column range")
    );
    let mut short = vec![f16::ZERO; 10];
    assert!(message(pack::write_tensor(&t, &mut short, &[0.0; 128])).contains("holds 10"));
    let rank3 = spec("z", DType::Fp16, &[4, 1, 32]);
    assert!(
        message(pack::write_region(&rank3, &mut buf, 0..1, 0..1, &[0.0])).contains("[1, C, 1, S]")
    );
    let mut raw = vec![0u8; 600];
    let off = raw.as_ptr().align_offset(2) + 1; // deliberately odd
    assert!(message(pack::write_tensor_bytes(
        &t,
        &mut raw[off..off + 256],
        &[0.0; 128]
    ))
    .contains("aligned"));
}

// ---------------------------------------------------------------- weights_dict

fn two_files() -> WeightFiles {
    let mut w = WeightFiles::new();
    w.insert("@model_path/weights/wq.bin", vec![1, 2, 3]);
    w.insert("@model_path/weights/masks/causal.bin", vec![9; 70]);
    w
}

#[test]
fn weight_entries_map_keys_to_relative_files_at_offset_0() {
    let w = two_files();
    let entries = weight_entries(&w).unwrap();
    let got: Vec<(&str, &Path, u64, usize)> = entries
        .iter()
        .map(|e| (e.key, e.relative_path.as_path(), e.offset, e.bytes.len()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "@model_path/weights/masks/causal.bin",
                Path::new("weights/masks/causal.bin"),
                0,
                70
            ),
            (
                "@model_path/weights/wq.bin",
                Path::new("weights/wq.bin"),
                0,
                3
            ),
        ]
    );
    let files = model_dir_files("program(1.3)", &w).unwrap();
    assert_eq!(files[0], (PathBuf::from("model.mil"), &b"program(1.3)"[..]));
    assert_eq!(files.len(), 3);
}

#[test]
fn keys_that_escape_the_model_directory_are_refused() {
    for key in [
        "weights/w.bin",
        "@model_path/",
        "@model_path/../w.bin",
        "@model_path/weights/../../w.bin",
        "@model_path//w.bin",
        "@model_path/./w.bin",
        "@model_path/weights\\w.bin",
        "@model_path/model.mil",
    ] {
        let mut w = WeightFiles::new();
        w.insert(key, vec![0]);
        let msg = message(weight_entries(&w));
        assert!(
            msg.contains(key) && msg.contains("@model_path/weights/name.bin"),
            "{key}: {msg}"
        );
    }
}

#[test]
fn model_dir_holds_exact_files_and_is_removed_on_drop() {
    let w = two_files();
    let path = scratch("dir");
    let files = model_dir_files("MIL TEXT", &w).unwrap();
    let dir = ModelDir::create(path.clone(), &files).unwrap();
    assert_eq!(std::fs::read(path.join("model.mil")).unwrap(), b"MIL TEXT");
    assert_eq!(
        std::fs::read(path.join("weights/wq.bin")).unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(
        std::fs::read(path.join("weights/masks/causal.bin")).unwrap(),
        vec![9; 70]
    );
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn a_model_dir_that_exists_belongs_to_another_compile_and_is_left_alone() {
    let path = scratch("taken");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("model.mil"), b"THEIRS").unwrap();
    let none = WeightFiles::new();
    let files = model_dir_files("MINE", &none).unwrap();
    let msg = message(ModelDir::create(path.clone(), &files));
    assert!(
        msg.contains("already exists") && msg.contains("another"),
        "{msg}"
    );
    assert_eq!(std::fs::read(path.join("model.mil")).unwrap(), b"THEIRS");
    std::fs::remove_dir_all(&path).unwrap();
}

#[test]
fn two_compiles_of_one_program_get_their_own_text_and_directory() {
    // The framework names the directory after a hash of the MIL text, so distinct texts mean
    // distinct directories; the cache key stays the same, so one device still compiles once.
    let program = SelfTest::new().unwrap().bundle.program;
    let w = two_files();
    let (a, b) = (instance_id(), instance_id());
    assert_ne!(a, b);
    let (key_a, text_a) = stamped_text(&program, &w, &a, fake_print);
    let (key_b, text_b) = stamped_text(&program, &w, &b, fake_print);
    assert_eq!(key_a, key_b);
    assert_ne!(text_a, text_b);
    assert!(
        text_a.contains(&format!("(\"{INSTANCE_KEY}\", \"{a}\")")),
        "{text_a}"
    );
    // Each instance's directory goes when it is dropped, never the other's.
    let files = model_dir_files("MIL", &w).unwrap();
    let (pa, pb) = (scratch(&key_a.to_string()), scratch(&key_b.to_string()));
    let dir_a = ModelDir::create(pa.clone(), &files).unwrap();
    let dir_b = ModelDir::create(pb.clone(), &files).unwrap();
    drop(dir_a);
    assert!(!pa.exists() && pb.join("model.mil").is_file());
    drop(dir_b);
}

// ---------------------------------------------------------------- budget

#[test]
fn restart_is_needed_only_when_upcoming_compiles_pass_the_limit() {
    let b = CompileBudget::new(100);
    for _ in 0..98 {
        b.charge().unwrap();
    }
    assert_eq!((b.used(), b.remaining()), (98, 2));
    assert!(!b.needs_restart(2));
    assert!(b.needs_restart(3));
    b.set_limit(500);
    assert_eq!(
        b.limit(),
        HARD_LIMIT,
        "the soft limit never exceeds the hard one"
    );
}

#[test]
fn compiles_past_the_hard_limit_are_refused() {
    let b = CompileBudget::new(100);
    for n in 1..=HARD_LIMIT {
        assert_eq!(b.charge().unwrap(), n);
    }
    let msg = message(b.charge());
    assert!(
        msg.contains("new process") && msg.contains(&HARD_LIMIT.to_string()),
        "{msg}"
    );
    assert_eq!(b.used(), HARD_LIMIT);
}

// ---------------------------------------------------------------- cache

#[test]
fn fnv128_matches_published_test_vectors() {
    let hex = |b: &[u8]| {
        let mut h = Fnv128::new();
        h.update(b);
        format!("{:032x}", h.finish())
    };
    assert_eq!(hex(b""), "6c62272e07bb014262b821756295c58d");
    assert_eq!(hex(b"a"), "d228cb696f1a8caf78912b704e4a8964");
    assert_eq!(hex(b"foobar"), "343e1662793c64bf6f0d3597ba446f18");
}

#[test]
fn kernel_keys_cover_text_weight_names_and_weight_bytes() {
    let w = two_files();
    let base = KernelKey::new("text", &w);
    assert_eq!(base, KernelKey::new("text", &w.clone()));
    assert_ne!(base, KernelKey::new("text2", &w));
    let mut other_bytes = w.clone();
    other_bytes.insert("@model_path/weights/wq.bin", vec![1, 2, 4]);
    assert_ne!(base, KernelKey::new("text", &other_bytes));
    // Framing: moving a byte from the text into a weight file must change the key.
    let mut a = WeightFiles::new();
    a.insert("k", vec![b'x']);
    let mut b = WeightFiles::new();
    b.insert("k", vec![]);
    assert_ne!(KernelKey::new("t", &a), KernelKey::new("tx", &b));
    assert_eq!(base.to_string().len(), 32);
}

/// A stand-in printer that shows the build info, so stamping can be observed.
fn fake_print(p: &Program) -> String {
    format!("{:?}", p.build_info)
}

#[test]
fn stamping_adds_one_nonce_keyed_by_content() {
    let program = SelfTest::new().unwrap().bundle.program;
    let w = two_files();
    let (key, text) = stamped_text(&program, &w, "i", fake_print);
    assert!(
        text.contains(&format!("(\"{NONCE_KEY}\", \"{key}\")")),
        "{text}"
    );
    // Restamping a stamped program changes nothing.
    let mut stamped = program.clone();
    stamped.build_info.push((NONCE_KEY.into(), key.to_string()));
    assert_eq!(
        stamped_text(&stamped, &w, "i", fake_print),
        (key, text.clone())
    );
    // The same program with other weights gets other text, so the compiles never collide.
    let (key2, text2) = stamped_text(&program, &WeightFiles::new(), "i", fake_print);
    assert_ne!(key, key2);
    assert_ne!(text, text2);
    assert_eq!(
        program
            .build_info
            .iter()
            .filter(|(k, _)| k == NONCE_KEY)
            .count(),
        0
    );
}

#[test]
fn the_cache_builds_each_key_once_and_forgets_failures() {
    let mut cache = KernelCache::new();
    let builds = AtomicUsize::new(0);
    let build = |v: u32| {
        builds.fetch_add(1, Ordering::SeqCst);
        Ok(v)
    };
    assert_eq!(
        cache.get_or_try_insert(KernelKey(1), || build(10)).unwrap(),
        10
    );
    assert_eq!(
        cache.get_or_try_insert(KernelKey(1), || build(99)).unwrap(),
        10
    );
    assert_eq!(
        cache.get_or_try_insert(KernelKey(2), || build(20)).unwrap(),
        20
    );
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    let failed = cache.get_or_try_insert(KernelKey(3), || Err(DeviceError::Runtime("no".into())));
    assert!(failed.is_err());
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.get_or_try_insert(KernelKey(3), || build(30)).unwrap(),
        30
    );
}

// ---------------------------------------------------------------- capabilities

fn probe(op: &str, width: usize, ran: bool) -> Probe {
    Probe {
        op: op.into(),
        dtype: "fp16".into(),
        width,
        compiled: true,
        ran,
        error: (!ran).then(|| "status=0x1d".to_string()),
    }
}

#[test]
fn capability_files_round_trip() {
    let mut caps = Capabilities::new("H16G", "Version 15.3 (Build 24D60)");
    caps.record(probe("gelu", 64, false));
    caps.record(probe("conv", 32, true));
    assert_eq!(caps.probes[0].op, "conv", "probes are kept sorted");
    let text = caps.to_json().unwrap();
    assert_eq!(Capabilities::from_json(&text, "mem").unwrap(), caps);
    let path = scratch("caps.json");
    caps.write(&path).unwrap();
    assert_eq!(Capabilities::read(&path).unwrap(), caps);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        caps.probe("gelu", DType::Fp16, 64).map(|p| p.ran),
        Some(false)
    );
    assert!(caps.probe("gelu", DType::Fp32, 64).is_none());
}

#[test]
fn malformed_capability_files_are_explained() {
    let cases = [
        ("{ not json", "malformed"),
        (r#"{"chip": "H16G"}"#, "version"),
        (
            r#"{"version": 2, "chip": "x", "macos": "y", "probes": []}"#,
            "format version 2",
        ),
        (r#"{"version": 1, "chip": "x", "macos": "y"}"#, "probes"),
        (
            r#"{"version": 1, "chip": "x", "macos": "y", "probes": [{"op": "add", "dtype": "fp64", "width": 32, "compiled": true, "ran": true}]}"#,
            "fp64",
        ),
        (
            r#"{"version": 1, "chip": "x", "macos": "y", "probes": [{"op": "add", "dtype": "fp16", "width": 32, "compiled": true}]}"#,
            "ran",
        ),
    ];
    for (text, needle) in cases {
        let msg = message(Capabilities::from_json(text, "caps.json"));
        assert!(
            msg.contains("caps.json") && msg.contains(needle),
            "{text}: {msg}"
        );
    }
}

#[test]
fn merging_keeps_newer_results_and_refuses_other_machines() {
    let mut a = Capabilities::new("H16G", "15.3");
    a.record(probe("gelu", 64, false));
    a.record(probe("add", 32, true));
    let mut b = Capabilities::new("H16G", "15.3");
    b.record(probe("gelu", 64, true));
    b.record(probe("exp", 32, true));
    a.merge(&b).unwrap();
    let got: Vec<(&str, bool)> = a.probes.iter().map(|p| (p.op.as_str(), p.ran)).collect();
    assert_eq!(got, vec![("add", true), ("exp", true), ("gelu", true)]);
    let other = Capabilities::new("H13", "15.3");
    assert!(message(a.merge(&other)).contains("H13"));
}

// ---------------------------------------------------------------- port_order

#[test]
fn without_a_schema_ports_are_alphabetical() {
    let order = PortOrder::resolve(&["x", "a", "m"], &["wo_out", "k"], None);
    assert_eq!(order.inputs, vec![1, 2, 0]);
    assert_eq!(order.outputs, vec![1, 0]);
    assert_eq!(order.source, OrderSource::Alphabetical);
    assert!(order.note().contains("alphabetical"));
}

#[test]
fn a_schema_decides_the_order_and_output_suffixes_are_ignored() {
    let schema = IoSchema {
        inputs: vec!["b".into(), "a".into()],
        outputs: vec!["power@output".into(), "audio@output".into()],
    };
    let order = PortOrder::resolve(&["a", "b"], &["audio", "power"], Some(&schema));
    assert_eq!(order.inputs, vec![1, 0]);
    assert_eq!(order.outputs, vec![1, 0]);
    assert_eq!(order.source, OrderSource::Schema);
    assert!(order.warnings.is_empty());
}

#[test]
fn a_single_port_needs_no_name_match() {
    // The framework may rename a lone port (`x` → `x_1`); there is only one slot for it.
    let schema = IoSchema {
        inputs: vec!["x_1".into()],
        outputs: vec!["renamed@output".into()],
    };
    for schema in [Some(&schema), None] {
        let order = PortOrder::resolve(&["x"], &["y"], schema);
        assert_eq!((order.inputs, order.outputs), (vec![0], vec![0]));
        assert_eq!(order.source, OrderSource::Single);
        assert!(order.warnings.is_empty());
    }
}

#[test]
fn a_schema_that_does_not_match_falls_back_to_declaration_order_with_a_warning() {
    let schema = |i: &[&str], o: &[&str]| IoSchema {
        inputs: i.iter().map(|s| s.to_string()).collect(),
        outputs: o.iter().map(|s| s.to_string()).collect(),
    };
    for s in [
        schema(&["b"], &["z@output", "y@output"]),
        schema(&["b", "c"], &["z@output", "y@output"]),
        schema(&["b", "b"], &["z@output", "y@output"]),
        schema(&["b", "a", "c"], &["z@output", "y@output"]),
    ] {
        let order = PortOrder::resolve(&["b", "a"], &["z", "y"], Some(&s));
        assert_eq!(order.inputs, vec![0, 1], "{s:?}");
        assert_eq!(order.source, OrderSource::Declaration, "{s:?}");
        assert_eq!(order.warnings.len(), 1, "{s:?}");
        assert!(
            order.note().contains("declaration order") && order.note().contains("[\"b\", \"a\"]"),
            "{}",
            order.note()
        );
        // The outputs matched, so they follow the schema.
        assert_eq!(order.outputs, vec![0, 1], "{s:?}");
    }
}

#[test]
fn kernel_ports_follow_the_signature_and_return_list() {
    let (inputs, outputs) = kernel_ports(&SelfTest::new().unwrap().bundle.program).unwrap();
    assert_eq!(
        inputs,
        vec![spec("x", DType::Fp16, &[1, CHANNELS, 1, WIDTH])]
    );
    assert_eq!(
        outputs,
        vec![spec("y", DType::Fp16, &[1, CHANNELS, 1, WIDTH])]
    );
}

// ---------------------------------------------------------------- self_test and platform

#[test]
fn the_self_test_expectation_is_the_conv_of_its_own_weights() {
    let t = SelfTest::new().unwrap();
    anetrain_mil::validate(&t.bundle.program).unwrap();
    // The weight lives in the one BLOBFILE, as the last C·C fp16 values of the file (one
    // record, payload after the 64-byte header and the 64-byte record).
    let files: Vec<(&str, &[u8])> = t.bundle.weights.iter().collect();
    assert_eq!(files.len(), 1, "one weight file");
    let bytes = files[0].1;
    let payload = &bytes[bytes.len() - 2 * CHANNELS * CHANNELS..];
    let w: Vec<f16> = payload
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert!(
        !t.bundle.program.main().unwrap().ops.iter().any(|o| o.op == Op::Const
            && matches!(o.attr("val"), Some(Literal::Tensor { ty, .. }) if ty.shape.len() == 4)),
        "no inline weight tensor"
    );
    // Naive 1x1 conv: y[o][s] = sum_i W[o][i] x[i][s].
    for o in 0..CHANNELS {
        for s in 0..WIDTH {
            let y: f32 = (0..CHANNELS)
                .map(|i| w[o * CHANNELS + i].to_f32() * t.input[i * WIDTH + s])
                .sum();
            assert_eq!(y, t.expected[o * WIDTH + s], "({o}, {s})");
            assert_eq!(f16::from_f32(y).to_f32(), y, "exact in fp16");
        }
    }
}

#[test]
fn the_self_test_check_rejects_wrong_and_nan_outputs() {
    let t = SelfTest::new().unwrap();
    assert!(t.check(&t.expected).is_ok());
    let mut wrong = t.expected.clone();
    wrong[3 * WIDTH + 5] += 0.5;
    let msg = message(t.check(&wrong));
    assert!(
        msg.contains("channel 3, column 5") && msg.contains("1 of 2048"),
        "{msg}"
    );
    wrong[0] = f32::NAN;
    assert!(message(t.check(&wrong)).contains("2 of 2048"));
    assert!(t.check(&t.expected[1..]).is_err());
}

#[test]
fn the_self_test_passes_on_the_cpu_device() {
    SelfTest::new().unwrap().run(&CpuDevice::default()).unwrap();
}

#[cfg(not(all(target_os = "macos", target_arch = "aarch64")))]
#[test]
fn off_apple_silicon_the_ane_is_unavailable_with_the_fix() {
    let msg = message(anetrain_device::AneDevice::new());
    assert!(
        msg.contains("aarch64-apple-darwin") && msg.contains("--device cpu"),
        "{msg}"
    );
    assert!(matches!(
        anetrain_device::AneDevice::probe(),
        Err(DeviceError::Unavailable(_))
    ));
}

// ---------------------------------------------------------------- attributes

fn num(n: i64) -> AttrValue {
    AttrValue::Int(n)
}

fn text_value(s: &str) -> AttrValue {
    AttrValue::Str(s.into())
}

fn dict(entries: &[(&str, AttrValue)]) -> AttrValue {
    AttrValue::Dict(
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// One `LiveInputList` entry shaped like the ones AB and libane print for `[1, C, 1, W]`.
fn port_entry(name: &str, ty: &str, c: i64, w: i64, row: i64, plane: i64, batch: i64) -> AttrValue {
    dict(&[
        ("Batches", num(1)),
        ("BatchStride", num(batch)),
        ("Channels", num(c)),
        ("Depth", num(1)),
        ("Height", num(1)),
        ("Name", text_value(name)),
        ("PlaneStride", num(plane)),
        ("RowStride", num(row)),
        ("Symbol", text_value(name)),
        ("Type", text_value(ty)),
        ("Width", num(w)),
    ])
}

fn attributes(key: &str, inputs: Vec<AttrValue>, outputs: Vec<AttrValue>) -> AttrValue {
    dict(&[
        ("ModelIdentifier", text_value("0A1B")),
        (
            key,
            AttrValue::List(vec![dict(&[
                ("LiveInputList", AttrValue::List(inputs)),
                ("LiveOutputList", AttrValue::List(outputs)),
                ("ProcedureName", text_value("main")),
            ])]),
        ),
    ])
}

#[test]
fn port_attributes_are_read_from_either_spelling_of_the_procedure_list() {
    for key in ["NetworkStatusList", "networkStatusList"] {
        let attrs = attributes(
            key,
            vec![port_entry("x", "Float16", 768, 288, 576, 576, 442368)],
            vec![port_entry("y@output", "Float16", 288, 32, 64, 64, 18432)],
        );
        let ports = ModelPorts::parse(&attrs).unwrap();
        assert_eq!(
            ports.inputs,
            vec![PortAttributes {
                name: "x".into(),
                ty: Some("Float16".into()),
                batches: Some(1),
                channels: Some(768),
                depth: Some(1),
                height: Some(1),
                width: Some(288),
                row_stride: Some(576),
                plane_stride: Some(576),
                batch_stride: Some(442368),
            }]
        );
        assert_eq!(ports.outputs[0].name, "y@output");
        assert_eq!(ports.schema().outputs, vec!["y@output".to_string()]);
    }
}

#[test]
fn numbers_given_as_strings_are_read_and_missing_levels_give_no_ports() {
    let entry = dict(&[
        ("Name", text_value("x")),
        ("Width", text_value("64")),
        ("RowStride", text_value(" 128 ")),
    ]);
    let ports = ModelPorts::parse(&attributes("NetworkStatusList", vec![entry], vec![])).unwrap();
    assert_eq!(ports.inputs[0].width, Some(64));
    assert_eq!(ports.inputs[0].row_stride, Some(128));
    assert_eq!(ports.inputs[0].channels, None);
    assert!(ModelPorts::parse(&dict(&[("ModelIdentifier", text_value("0A"))])).is_none());
    let no_outputs = dict(&[(
        "NetworkStatusList",
        AttrValue::List(vec![dict(&[("LiveInputList", AttrValue::List(vec![]))])]),
    )]);
    assert!(ModelPorts::parse(&no_outputs).is_none());
    let nameless = attributes(
        "NetworkStatusList",
        vec![dict(&[("Width", num(3))])],
        vec![],
    );
    assert!(ModelPorts::parse(&nameless).is_none());
}

#[test]
fn packed_ports_pass_and_padded_rows_fail_naming_the_port() {
    let x = spec("x", DType::Fp16, &[1, 768, 1, 288]);
    let packed = |row, plane, batch| {
        let ports = ModelPorts::parse(&attributes(
            "NetworkStatusList",
            vec![port_entry("x", "Float16", 768, 288, row, plane, batch)],
            vec![],
        ))
        .unwrap();
        ports.inputs[0].clone()
    };
    packed(576, 576, 442368).check_packed("input", &x).unwrap();
    // AB's M5 finding: a width that is not a multiple of 32 comes back with rows padded to the
    // next multiple, which a dense packer would misread.
    let odd = spec("x", DType::Fp16, &[1, 100, 1, 4082]);
    let padded = ModelPorts::parse(&attributes(
        "NetworkStatusList",
        vec![port_entry("x", "Float16", 100, 4082, 8192, 8192, 819200)],
        vec![],
    ))
    .unwrap();
    let msg = message(padded.inputs[0].check_packed("input", &odd));
    assert!(
        msg.contains("input `x`") && msg.contains("RowStride 8192") && msg.contains("8164"),
        "{msg}"
    );
    let msg = message(packed(576, 640, 491520).check_packed("input", &x));
    assert!(msg.contains("PlaneStride 640"), "{msg}");
    let msg = message(packed(576, 576, 1000).check_packed("input", &x));
    assert!(msg.contains("BatchStride 1000"), "{msg}");
    let as_fp32 = spec("x", DType::Fp32, &[1, 768, 1, 288]);
    let msg = message(packed(1152, 1152, 884736).check_packed("input", &as_fp32));
    assert!(
        msg.contains("type Float16") && msg.contains("Float32"),
        "{msg}"
    );
    let narrower = spec("x", DType::Fp16, &[1, 768, 1, 320]);
    let msg = message(packed(640, 640, 491520).check_packed("input", &narrower));
    assert!(msg.contains("Width 288"), "{msg}");
}

#[test]
fn surfaces_are_sized_from_the_batch_stride_of_the_port_they_are_bound_to() {
    let a = spec("a", DType::Fp16, &[1, 64, 1, 32]); // 4096 B
    let b = spec("b", DType::Fp16, &[1, 64, 1, 64]); // 8192 B
    let y = spec("y", DType::Fp16, &[1, 64, 1, 32]);
    // The framework lists b before a, and reports a larger batch stride for a.
    let ports = ModelPorts::parse(&attributes(
        "NetworkStatusList",
        vec![
            port_entry("b", "Float16", 64, 64, 128, 128, 8192),
            port_entry("a", "Float16", 64, 32, 64, 64, 6000),
        ],
        vec![port_entry("y@output", "Float16", 64, 32, 64, 64, 4096)],
    ))
    .unwrap();
    let order = PortOrder::resolve(&["a", "b"], &["y"], Some(&ports.schema()));
    assert_eq!(order.inputs, vec![1, 0]);
    let (inputs, outputs) = ports
        .check(
            (&[a.clone(), b.clone()], from_ref(&y)),
            (&order.inputs, &order.outputs),
        )
        .unwrap();
    assert_eq!((inputs, outputs), (vec![6000, 8192], vec![4096]));
    // Bound the wrong way round, the shapes disagree and the port is named.
    let msg = message(ports.check((&[a, b], from_ref(&y)), (&[0, 1], &[0])));
    assert!(
        msg.contains("input `a`") && msg.contains("Width 64"),
        "{msg}"
    );
}

// ---------------------------------------------------------------- constraints

/// A conv-anchored program with a gelu, whose rule is disputed (unknown in the M4 catalog).
fn gelu_program() -> Program {
    let mut b = anetrain_mil::Builder::new();
    let x = b.input("x", DType::Fp16, [1, 384, 1, 64]).unwrap();
    let w = b
        .weight("w", DType::Fp16, [384, 384, 1, 1], &vec![0.01; 384 * 384])
        .unwrap();
    let h = b.conv(x, w, &anetrain_mil::ConvOptions::default()).unwrap();
    let y = b.gelu(h, "EXACT").unwrap();
    b.output(y, "y").unwrap();
    b.finish().unwrap().program
}

/// The same conv computed in fp32, which every chip rejects.
fn fp32_program() -> Program {
    let mut b = anetrain_mil::Builder::new();
    let x = b.input("x", DType::Fp32, [1, 384, 1, 64]).unwrap();
    let w = b
        .weight("w", DType::Fp32, [384, 384, 1, 1], &vec![0.01; 384 * 384])
        .unwrap();
    let y = b.conv(x, w, &anetrain_mil::ConvOptions::default()).unwrap();
    b.output(y, "y").unwrap();
    b.finish().unwrap().program
}

#[test]
fn the_compile_check_refuses_violations_with_rule_and_fix_before_compiling() {
    let catalog = ConstraintCheck::for_chip("H16G");
    assert_eq!(catalog, ConstraintCheck::Catalog(anetrain_mil::Chip::M4));
    catalog
        .check(&SelfTest::new().unwrap().bundle.program)
        .unwrap();
    catalog.check(&gelu_program()).unwrap();
    let msg = message(catalog.check(&fp32_program()));
    assert!(
        msg.contains("not sent to Apple's compiler") && msg.contains("fp16"),
        "{msg}"
    );
    ConstraintCheck::Off.check(&fp32_program()).unwrap();
}

#[test]
fn measured_rules_turn_a_disputed_rule_into_a_refusal() {
    let mut measured = anetrain_mil::check::MeasuredRules::new(anetrain_mil::Chip::M4);
    measured.observe("gelu", true).unwrap();
    let msg = message(ConstraintCheck::Measured(measured).check(&gelu_program()));
    assert!(msg.contains("gelu"), "{msg}");
    // A chip this build does not know is checked as the newest it does.
    assert_eq!(
        ConstraintCheck::for_chip("H99X"),
        ConstraintCheck::Catalog(anetrain_mil::Chip::M5)
    );
}
