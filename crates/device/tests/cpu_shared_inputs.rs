//! Inputs read in place: a dynamic matmul's weight columns bound to a caller's matrix give
//! the same result as a naive product, writes and unsharing behave like an owned copy, and
//! the cases that need a copy say so.

use anetrain_device::{CpuDevice, Device, DeviceError, Kernel, Precision, SharedMatrix};
use anetrain_mil::{Builder, DType};
use std::sync::Arc;

const SWAP_LAST: [usize; 4] = [0, 1, 3, 2];

/// `y = Mᵀ a` from `x = [a | M]`, `[1, ic, 1, s + oc]`, the form the training kernels use.
fn dynamic_matmul(device: &CpuDevice, ic: usize, oc: usize, s: usize) -> Box<dyn Kernel> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, ic, 1, s + oc]).unwrap();
    let a = b.slice(x, &[0, 0, 0, 0], &[1, ic, 1, s]).unwrap();
    let m = b.slice(x, &[0, 0, 0, s], &[1, ic, 1, oc]).unwrap();
    let a = b.reshape(a, &[1, 1, ic, s]).unwrap();
    let m = b.reshape(m, &[1, 1, ic, oc]).unwrap();
    let a = b.transpose(a, &SWAP_LAST).unwrap();
    let y = b.matmul(a, m).unwrap();
    let y = b.transpose(y, &SWAP_LAST).unwrap();
    let y = b.reshape(y, &[1, oc, 1, s]).unwrap();
    b.output(y, "y").unwrap();
    let bundle = b.finish().unwrap();
    device.compile(&bundle.program, &bundle.weights).unwrap()
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

/// `y[o][t] = Σ_i m[i][o] · a[i][t]` with `m(i, o)` given as a function.
fn naive(a: &[f32], m: impl Fn(usize, usize) -> f32, ic: usize, oc: usize, s: usize) -> Vec<f32> {
    let mut y = vec![0.0; oc * s];
    for o in 0..oc {
        for t in 0..s {
            y[o * s + t] = (0..ic).map(|i| m(i, o) * a[i * s + t]).sum();
        }
    }
    y
}

fn run(k: &mut dyn Kernel) -> Vec<f32> {
    k.run().unwrap();
    let mut y = vec![0.0; k.outputs()[0].numel()];
    k.read_output(0, &mut y).unwrap();
    y
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "element {i}: {g} vs {w}");
    }
}

#[test]
fn a_shared_matrix_and_its_transpose_are_read_in_place() {
    let (ic, oc, s) = (24, 40, 8);
    let a = values(ic * s, 1);
    // `w` is `oc × ic` row-major: the forward kernel reads `M = wᵀ`, through a transposed view.
    let w = Arc::new(values(oc * ic, 7));
    let shared = SharedMatrix::row_major(Arc::clone(&w), oc, ic).unwrap();
    let mut k = dynamic_matmul(&CpuDevice::default(), ic, oc, s);
    k.write_input_region(0, 0..ic, 0..s, &a).unwrap();
    k.share_input_region(0, 0..ic, s..s + oc, &shared.transposed())
        .unwrap();
    close(
        &run(k.as_mut()),
        &naive(&a, |i, o| w[o * ic + i], ic, oc, s),
    );

    // The backward kernel reads `M = w` itself, `[oc][ic]` as `ic' = oc`, `oc' = ic`.
    let dy = values(oc * s, 3);
    let mut back = dynamic_matmul(&CpuDevice::default(), oc, ic, s);
    back.write_input_region(0, 0..oc, 0..s, &dy).unwrap();
    back.share_input_region(0, 0..oc, s..s + ic, &shared)
        .unwrap();
    close(
        &run(back.as_mut()),
        &naive(&dy, |r, c| w[r * ic + c], oc, ic, s),
    );
}

#[test]
fn writing_into_a_shared_region_copies_it_and_leaves_the_matrix_alone() {
    let (ic, oc, s) = (4, 6, 3);
    let a = values(ic * s, 2);
    let w = Arc::new(values(ic * oc, 5));
    let mut k = dynamic_matmul(&CpuDevice::default(), ic, oc, s);
    k.write_input_region(0, 0..ic, 0..s, &a).unwrap();
    k.share_input_region(
        0,
        0..ic,
        s..s + oc,
        &SharedMatrix::row_major(Arc::clone(&w), ic, oc).unwrap(),
    )
    .unwrap();
    // Overwrite channel 1's weights only: the other channels keep the shared values.
    let row = vec![2.0; oc];
    k.write_input_region(0, 1..2, s..s + oc, &row).unwrap();
    let m = |i: usize, o: usize| if i == 1 { 2.0 } else { w[i * oc + o] };
    close(&run(k.as_mut()), &naive(&a, m, ic, oc, s));
    assert_eq!(*w, values(ic * oc, 5), "the shared matrix was modified");

    // A whole-input write covers the weight columns too.
    let full = values(ic * (s + oc), 9);
    k.write_input(0, &full).unwrap();
    let act: Vec<f32> = (0..ic)
        .flat_map(|i| full[i * (s + oc)..][..s].to_vec())
        .collect();
    let m = |i: usize, o: usize| full[i * (s + oc) + s + o];
    close(&run(k.as_mut()), &naive(&act, m, ic, oc, s));
}

#[test]
fn unsharing_releases_the_matrix_and_reads_zeros() {
    let (ic, oc, s) = (4, 4, 2);
    let w = Arc::new(values(ic * oc, 4));
    let mut k = dynamic_matmul(&CpuDevice::default(), ic, oc, s);
    k.write_input_region(0, 0..ic, 0..s, &values(ic * s, 1))
        .unwrap();
    k.share_input_region(
        0,
        0..ic,
        s..s + oc,
        &SharedMatrix::row_major(Arc::clone(&w), ic, oc).unwrap(),
    )
    .unwrap();
    run(k.as_mut());
    k.unshare_inputs();
    assert_eq!(
        Arc::strong_count(&w),
        1,
        "the kernel still holds the matrix"
    );
    assert!(run(k.as_mut()).iter().all(|&v| v == 0.0));
}

#[test]
fn regions_that_need_a_copy_are_refused_with_the_reason() {
    let (ic, oc, s) = (4, 4, 2);
    let w = SharedMatrix::row_major(Arc::new(values(ic * oc, 4)), ic, oc).unwrap();
    let unavailable = |r: Result<(), DeviceError>| match r {
        Err(DeviceError::Unavailable(m)) => m,
        other => panic!("expected Unavailable, got {other:?}"),
    };
    let mut f16 = dynamic_matmul(&CpuDevice::new(Precision::F16), ic, oc, s);
    let m = unavailable(f16.share_input_region(0, 0..ic, s..s + oc, &w));
    assert!(m.contains("fp16"), "{m}");

    let mut k = dynamic_matmul(&CpuDevice::default(), ic, oc, s);
    let m = unavailable(k.share_input_region(0, 0..ic, s + 1..s + oc, &w.transposed()));
    assert!(m.contains("no slice of exactly those columns"), "{m}");
    let m = unavailable(k.share_input_region(0, 1..ic, s..s + oc, &w));
    assert!(m.contains("all channels"), "{m}");
    match k.share_input_region(0, 0..ic, 0..s, &w) {
        Err(DeviceError::Layout(m)) => assert!(m.contains("4 × 4"), "{m}"),
        other => panic!("expected a layout error, got {other:?}"),
    }
    assert!(SharedMatrix::row_major(Arc::new(vec![0.0; 5]), 2, 3).is_err());
}

/// `y = x[rows] · scale` for a program reading channel slices of a `[1, c, 1, s]` input, so the
/// input is not column-segmented and can only be shared whole.
fn channel_slicer(c: usize, s: usize, rows: std::ops::Range<usize>, scale: f32) -> Box<dyn Kernel> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, c, 1, s]).unwrap();
    let part = b
        .slice(x, &[0, rows.start, 0, 0], &[1, rows.len(), 1, s])
        .unwrap();
    let y = b.scale(part, scale).unwrap();
    b.output(y, "y").unwrap();
    let bundle = b.finish().unwrap();
    CpuDevice::default()
        .compile(&bundle.program, &bundle.weights)
        .unwrap()
}

#[test]
fn two_programs_read_one_whole_shared_input_and_see_its_updates() {
    let (c, s) = (6, 5);
    let mut data = Arc::new(values(c * s, 3));
    let mut low = channel_slicer(c, s, 0..2, 2.0);
    let mut high = channel_slicer(c, s, 3..6, -1.0);
    for round in 0..2 {
        let m = SharedMatrix::row_major(Arc::clone(&data), c, s).unwrap();
        low.share_input_region(0, 0..c, 0..s, &m).unwrap();
        high.share_input_region(0, 0..c, 0..s, &m).unwrap();
        let want_low: Vec<f32> = data[..2 * s].iter().map(|v| 2.0 * v).collect();
        let want_high: Vec<f32> = data[3 * s..].iter().map(|v| -v).collect();
        close(&run(low.as_mut()), &want_low);
        close(&run(high.as_mut()), &want_high);
        low.unshare_inputs();
        high.unshare_inputs();
        drop(m);
        // Once both kernels let go, the owner writes in place: no copy was kept anywhere.
        let owned = Arc::get_mut(&mut data).expect("a kernel still holds the shared input");
        owned[round] += 1.0;
        owned[4 * s] -= 3.0;
    }
    let m = SharedMatrix::row_major(Arc::clone(&data), c, s).unwrap();
    let unavailable = low.share_input_region(0, 0..c, 1..s, &m);
    assert!(
        matches!(&unavailable, Err(DeviceError::Unavailable(msg)) if msg.contains("whole input")),
        "{unavailable:?}"
    );
}
