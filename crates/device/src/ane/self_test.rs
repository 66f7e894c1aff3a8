//! The self-test kernel `--device auto` runs before trusting the ANE: one 1×1 conv whose output
//! is known in closed form and exact in fp16, so any wrong layout, port order or conversion
//! shows up as a mismatch rather than as a slightly worse loss curve.
//!
//! `y[o, s] = x[o, s] / 4 + x[(o + 1) mod C, s] / 2` for `x: [1, 64, 1, 32]`; inputs are
//! multiples of 1/8 in [-1, 1], so every product and sum is exact in fp16.

use crate::{Device, DeviceError, Result};
use anetrain_mil::{Builder, Bundle, ConvOptions, DType};

/// Channels of the self-test tensors.
pub const CHANNELS: usize = 64;
/// Width (sequence) of the self-test tensors: the smallest the conservative policy allows.
pub const WIDTH: usize = 32;
/// Largest allowed |device − expected|; the true error is 0, this only absorbs a device that
/// accumulates in a different order.
pub const TOLERANCE: f32 = 1e-3;

/// The self-test program, its input and its expected output.
#[derive(Clone, Debug)]
pub struct SelfTest {
    /// `main(x) -> y`, the conv above, its weight in a BLOBFILE as every peer's conv has it.
    pub bundle: Bundle,
    /// `x`, row-major `[1, 64, 1, 32]`.
    pub input: Vec<f32>,
    /// `y`, from the closed form.
    pub expected: Vec<f32>,
}

impl SelfTest {
    /// Builds the program and data.
    pub fn new() -> Result<SelfTest> {
        let input: Vec<f32> = (0..CHANNELS * WIDTH)
            .map(|i| {
                let (c, s) = (i / WIDTH, i % WIDTH);
                ((c * 7 + s * 3) % 17) as f32 / 8.0 - 1.0
            })
            .collect();
        let expected = (0..CHANNELS * WIDTH)
            .map(|i| {
                let (o, s) = (i / WIDTH, i % WIDTH);
                input[o * WIDTH + s] / 4.0 + input[((o + 1) % CHANNELS) * WIDTH + s] / 2.0
            })
            .collect();
        Ok(SelfTest {
            bundle: conv_bundle()?,
            input,
            expected,
        })
    }

    /// Compares a device's output with the expected one, naming the first wrong element.
    pub fn check(&self, output: &[f32]) -> Result<()> {
        if output.len() != self.expected.len() {
            return Err(DeviceError::Layout(format!(
                "self-test output has {} elements, expected {}",
                output.len(),
                self.expected.len()
            )));
        }
        let wrong = |(got, want): &(&f32, &f32)| {
            let err = (**got - **want).abs();
            err.is_nan() || err > TOLERANCE
        };
        let pairs = || output.iter().zip(&self.expected);
        let Some(first) = pairs().position(|p| wrong(&p)) else {
            return Ok(());
        };
        Err(DeviceError::Runtime(format!(
            "self-test kernel gave {} at channel {}, column {} where {} is expected \
             ({} of {} elements wrong); the device computes wrong results (layout, port order \
             or conversion), so it is not used",
            output[first],
            first / WIDTH,
            first % WIDTH,
            self.expected[first],
            pairs().filter(wrong).count(),
            output.len()
        )))
    }

    /// Compiles and runs the self-test on `device` and checks the result.
    pub fn run(&self, device: &dyn Device) -> Result<()> {
        let mut kernel = device.compile(&self.bundle.program, &self.bundle.weights)?;
        kernel.write_input(0, &self.input)?;
        kernel.run()?;
        let mut output = vec![0.0; self.expected.len()];
        kernel.read_output(0, &mut output)?;
        self.check(&output)
    }
}

/// `W[o][i] = 1/4 if i == o, 1/2 if i == (o + 1) mod C, else 0`, row-major `[C][C]`.
pub fn weight() -> Vec<f32> {
    let mut w = vec![0.0; CHANNELS * CHANNELS];
    for o in 0..CHANNELS {
        w[o * CHANNELS + o] = 0.25;
        w[o * CHANNELS + (o + 1) % CHANNELS] = 0.5;
    }
    w
}

fn conv_bundle() -> Result<Bundle> {
    let mut b = Builder::new();
    let x = b.input("x", DType::Fp16, [1, CHANNELS, 1, WIDTH])?;
    let w = b.weight("W", DType::Fp16, [CHANNELS, CHANNELS, 1, 1], &weight())?;
    let y = b.conv(x, w, &ConvOptions::default())?;
    b.output(y, "y")?;
    Ok(b.finish()?)
}
