//! The platform-independent logic of the ANE device, checked against hand-computed numbers and
//! naive reference loops. Nothing here needs a Mac.

use anetrain_device::ane::budget::{restart_command, CompileBudget, HARD_LIMIT};
use anetrain_device::ane::cache::{stamped_text, Fnv128, KernelCache, KernelKey, NONCE_KEY};
use anetrain_device::ane::capabilities::{Capabilities, Probe};
use anetrain_device::ane::pack::{self, F16_MAX};
use anetrain_device::ane::port_order::{kernel_ports, IoSchema, OrderSource, PortOrder};
use anetrain_device::ane::self_test::{SelfTest, CHANNELS, WIDTH};
use anetrain_device::ane::surface_layout::{SurfaceLayout, SurfacePolicy, SurfaceProperties};
use anetrain_device::ane::weights_dict::{model_dir_files, weight_entries, ModelDir};
use anetrain_device::{CpuDevice, DeviceError, TensorSpec};
use anetrain_mil::{DType, Literal, Op, Program, TensorData, TensorType, WeightFiles};
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
fn small_surfaces_are_raised_to_48_kib_in_4096_byte_rows() {
    let x = spec("x", DType::Fp16, &[1, 64, 1, 32]); // 4096 bytes of payload
    let layout =
        SurfaceLayout::plan(from_ref(&x), from_ref(&x), &SurfacePolicy::CONSERVATIVE).unwrap();
    assert_eq!(layout.input_payloads, vec![4096]);
    assert_eq!(layout.input_alloc, 49152);
    let p = layout.input_properties();
    assert_eq!(
        p,
        SurfaceProperties {
            width: 4096,
            height: 12,
            bytes_per_element: 1,
            bytes_per_row: 4096,
            alloc_size: 49152,
            pixel_format: 0,
        }
    );
}

#[test]
fn large_surfaces_round_up_to_whole_rows() {
    // 100 * 288 * 4 = 115200 bytes = 28.125 rows of 4096 -> 29 rows = 118784 bytes.
    let x = spec("x", DType::Fp32, &[1, 100, 1, 288]);
    let layout =
        SurfaceLayout::plan(from_ref(&x), from_ref(&x), &SurfacePolicy::CONSERVATIVE).unwrap();
    assert_eq!(layout.input_payloads, vec![115200]);
    assert_eq!(layout.input_alloc, 118784);
    assert_eq!(layout.input_properties().height, 29);
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
    assert_eq!(layout.output_properties().height, 16);
}

#[test]
fn without_a_minimum_small_surfaces_are_one_row() {
    let policy = SurfacePolicy {
        min_bytes: 0,
        ..SurfacePolicy::CONSERVATIVE
    };
    let x = spec("x", DType::Fp16, &[1, 4, 1, 32]); // 256 bytes
    let layout = SurfaceLayout::plan(from_ref(&x), from_ref(&x), &policy).unwrap();
    let p = layout.output_properties();
    assert_eq!(
        (p.width, p.height, p.bytes_per_row, p.alloc_size),
        (256, 1, 256, 256)
    );
    // 16 KiB is still one row; one byte more switches to 4096-byte rows.
    assert_eq!(SurfaceProperties::for_allocation(16384).height, 1);
    assert_eq!(policy.allocation(16385), 20480);
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
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("stale.txt"), b"old").unwrap();
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
    assert!(
        !path.join("stale.txt").exists(),
        "leftovers of a crashed run are cleared"
    );
    drop(dir);
    assert!(!path.exists());
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
        msg.contains("--resume") && msg.contains(&HARD_LIMIT.to_string()),
        "{msg}"
    );
    assert_eq!(b.used(), HARD_LIMIT);
}

#[test]
fn restart_command_adds_resume_exactly_once() {
    let args = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(
        restart_command(&args(&["anetrain", "train", "--steps", "10"])),
        args(&["anetrain", "train", "--steps", "10", "--resume"])
    );
    let already = args(&["anetrain", "train", "--resume", "--steps", "10"]);
    assert_eq!(restart_command(&already), already);
    let valued = args(&["anetrain", "train", "--resume=ckpt"]);
    assert_eq!(restart_command(&valued), valued);
    assert_eq!(
        restart_command(&args(&["anetrain", "run", "--", "--resume"])),
        args(&["anetrain", "run", "--resume", "--", "--resume"]),
        "a positional `--resume` after `--` is not the flag"
    );
    assert_eq!(
        restart_command(&restart_command(&args(&["a"]))),
        args(&["a", "--resume"])
    );
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
    let program = SelfTest::new().program;
    let w = two_files();
    let (key, text) = stamped_text(&program, &w, fake_print);
    assert!(
        text.contains(&format!("(\"{NONCE_KEY}\", \"{key}\")")),
        "{text}"
    );
    // Restamping a stamped program changes nothing.
    let mut stamped = program.clone();
    stamped.build_info.push((NONCE_KEY.into(), key.to_string()));
    assert_eq!(stamped_text(&stamped, &w, fake_print), (key, text.clone()));
    // The same program with other weights gets other text, so the compiles never collide.
    let (key2, text2) = stamped_text(&program, &WeightFiles::new(), fake_print);
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
    let order = PortOrder::resolve(&["x", "a", "m"], &["wo_out", "k"], None).unwrap();
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
    let order = PortOrder::resolve(&["a", "b"], &["audio", "power"], Some(&schema)).unwrap();
    assert_eq!(order.inputs, vec![1, 0]);
    assert_eq!(order.outputs, vec![1, 0]);
    assert_eq!(order.source, OrderSource::Schema);
}

#[test]
fn a_schema_that_does_not_match_the_program_is_an_error() {
    let schema = |i: &[&str], o: &[&str]| IoSchema {
        inputs: i.iter().map(|s| s.to_string()).collect(),
        outputs: o.iter().map(|s| s.to_string()).collect(),
    };
    for s in [
        schema(&["a"], &["y@output"]),
        schema(&["a", "c"], &["y@output"]),
        schema(&["a", "a"], &["y@output"]),
        schema(&["a", "b"], &["z@output"]),
    ] {
        let msg = message(PortOrder::resolve(&["a", "b"], &["y"], Some(&s)));
        assert!(msg.contains("cannot be matched"), "{s:?}: {msg}");
    }
}

#[test]
fn kernel_ports_follow_the_signature_and_return_list() {
    let (inputs, outputs) = kernel_ports(&SelfTest::new().program).unwrap();
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
    let t = SelfTest::new();
    anetrain_mil::validate(&t.program).unwrap();
    let main = t.program.main().unwrap();
    let w_op = main
        .ops
        .iter()
        .find(|o| o.op == Op::Const && o.label == "W")
        .unwrap();
    let Some(Literal::Tensor {
        data: TensorData::Fp16(w),
        ..
    }) = w_op.attr("val")
    else {
        panic!("W is not an inline fp16 tensor");
    };
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
    let t = SelfTest::new();
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
    SelfTest::new().run(&CpuDevice::default()).unwrap();
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
