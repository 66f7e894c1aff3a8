//! The self-test kernel `--device auto` runs before trusting the ANE: one 1×1 conv whose output
//! is known in closed form and exact in fp16, so any wrong layout, port order or conversion
//! shows up as a mismatch rather than as a slightly worse loss curve.
//!
//! `y[o, s] = x[o, s] / 4 + x[(o + 1) mod C, s] / 2` for `x: [1, 64, 1, 32]`; inputs are
//! multiples of 1/8 in [-1, 1], so every product and sum is exact in fp16.

use crate::{Device, DeviceError, Result};
use anetrain_mil::{
    Argument, DType, Function, Literal, Op, Operation, Output, Program, TensorData, TensorType,
    Type, WeightFiles,
};
use half::f16;

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
    /// `main(x) -> y`, the conv above, weights inline (no weight files).
    pub program: Program,
    /// `x`, row-major `[1, 64, 1, 32]`.
    pub input: Vec<f32>,
    /// `y`, from the closed form.
    pub expected: Vec<f32>,
}

impl SelfTest {
    /// Builds the program and data.
    pub fn new() -> SelfTest {
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
        SelfTest {
            program: Program::new(conv_function()),
            input,
            expected,
        }
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
        let mut kernel = device.compile(&self.program, &WeightFiles::new())?;
        kernel.write_input(0, &self.input)?;
        kernel.run()?;
        let mut output = vec![0.0; self.expected.len()];
        kernel.read_output(0, &mut output)?;
        self.check(&output)
    }
}

impl Default for SelfTest {
    fn default() -> SelfTest {
        SelfTest::new()
    }
}

/// `W[o][i] = 1/4 if i == o, 1/2 if i == (o + 1) mod C, else 0`.
fn weight() -> Vec<f16> {
    let mut w = vec![f16::ZERO; CHANNELS * CHANNELS];
    for o in 0..CHANNELS {
        w[o * CHANNELS + o] = f16::from_f32(0.25);
        w[o * CHANNELS + (o + 1) % CHANNELS] = f16::from_f32(0.5);
    }
    w
}

fn conv_function() -> Function {
    let io = TensorType::new(DType::Fp16, [1, CHANNELS, 1, WIDTH]);
    let w_ty = TensorType::new(DType::Fp16, [CHANNELS, CHANNELS, 1, 1]);
    let ops = vec![
        constant(
            "W",
            Literal::Tensor {
                ty: w_ty,
                data: TensorData::Fp16(weight()),
            },
        ),
        constant("strides", Literal::int32_tensor(&[1, 1])),
        constant("pad_type", Literal::string("valid")),
        constant("pad", Literal::int32_tensor(&[0, 0, 0, 0])),
        constant("dilations", Literal::int32_tensor(&[1, 1])),
        constant("groups", Literal::int32(1)),
        Operation {
            op: Op::Conv,
            args: [
                ("dilations", "dilations"),
                ("groups", "groups"),
                ("pad", "pad"),
                ("pad_type", "pad_type"),
                ("strides", "strides"),
                ("weight", "W"),
                ("x", "x"),
            ]
            .into_iter()
            .map(|(arg, value)| (arg.to_string(), Argument::Value(value.to_string())))
            .collect(),
            attrs: Vec::new(),
            label: "y".into(),
            outputs: vec![Output {
                name: "y".into(),
                ty: Type::Tensor(io.clone()),
            }],
        },
    ];
    Function {
        name: "main".into(),
        target: "ios18".into(),
        inputs: vec![("x".into(), io)],
        ops,
        outputs: vec!["y".into()],
    }
}

fn constant(name: &str, value: Literal) -> Operation {
    Operation {
        op: Op::Const,
        args: Vec::new(),
        label: name.into(),
        outputs: vec![Output {
            name: name.into(),
            ty: value.ty(),
        }],
        attrs: vec![("val".into(), value)],
    }
}
