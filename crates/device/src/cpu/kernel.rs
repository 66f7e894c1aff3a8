//! The CPU kernel: input storage kept between runs, the run loop over a compiled [`Plan`],
//! and copying results out.

use super::compile::Plan;
use super::elementwise::round_to_f16;
use super::input::InputStore;
use super::pool::Pool;
use super::tensor::Tensor;
use super::Precision;
use crate::error::{DeviceError, Result};
use crate::{Kernel, SharedMatrix, TensorSpec};
use anetrain_mil::DType;
use std::ops::Range;
use std::sync::Arc;

/// A compiled program on the CPU.
pub(crate) struct CpuKernel {
    /// Shared by every fork of this kernel.
    plan: Arc<Plan>,
    precision: Precision,
    input_specs: Vec<TensorSpec>,
    output_specs: Vec<TensorSpec>,
    /// Input storage, kept between runs.
    inputs: Vec<InputStore>,
    /// Results of the last run (views, possibly of each other or of inputs).
    outputs: Vec<Option<Tensor>>,
    /// Value slots of a run; empty between runs.
    slots: Vec<Option<Tensor>>,
    pool: Pool,
}

impl CpuKernel {
    pub fn new(plan: Arc<Plan>, precision: Precision) -> CpuKernel {
        let input_specs: Vec<TensorSpec> = plan.inputs.iter().map(|(s, _)| s.clone()).collect();
        let output_specs = plan.outputs.iter().map(|(s, _)| s.clone()).collect();
        let inputs = input_specs
            .iter()
            .zip(&plan.segments)
            .map(|(s, seg)| InputStore::new(s, seg.as_deref()))
            .collect();
        CpuKernel {
            outputs: vec![None; plan.outputs.len()],
            slots: vec![None; plan.slot_count],
            plan,
            precision,
            input_specs,
            output_specs,
            inputs,
            pool: Pool::default(),
        }
    }

    fn input_spec(&self, index: usize) -> Result<&TensorSpec> {
        self.input_specs.get(index).ok_or_else(|| {
            DeviceError::Layout(format!(
                "input index {index} is out of range; the kernel has {} inputs",
                self.input_specs.len()
            ))
        })
    }

    fn output(&self, index: usize) -> Result<(&TensorSpec, &Tensor)> {
        let spec = self.output_specs.get(index).ok_or_else(|| {
            DeviceError::Layout(format!(
                "output index {index} is out of range; the kernel has {} outputs",
                self.output_specs.len()
            ))
        })?;
        let value = self.outputs[index].as_ref().ok_or_else(|| {
            DeviceError::Runtime(
                "the kernel has not run yet; call run() before reading outputs".to_string(),
            )
        })?;
        Ok((spec, value))
    }

    fn rounds_input(&self, index: usize) -> bool {
        self.precision == Precision::F16 && self.input_specs[index].ty.dtype == DType::Fp16
    }

    fn recycle(pool: &mut Pool, t: Tensor) {
        if let Some(buf) = t.into_storage() {
            pool.put(buf);
        }
    }
}

impl Kernel for CpuKernel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.input_specs
    }

    fn fork(&self) -> Result<Box<dyn Kernel>> {
        Ok(Box::new(CpuKernel::new(
            Arc::clone(&self.plan),
            self.precision,
        )))
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.output_specs
    }

    fn write_input(&mut self, index: usize, data: &[f32]) -> Result<()> {
        let spec = self.input_spec(index)?;
        spec.check_len("input data", data.len())?;
        let round = self.rounds_input(index);
        let shape = spec.ty.shape.clone();
        self.inputs[index].write_all(&shape, data, round);
        Ok(())
    }

    fn write_input_region(
        &mut self,
        index: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        data: &[f32],
    ) -> Result<()> {
        let spec = self.input_spec(index)?;
        let s = spec.check_region(&channels, &columns, data.len())?;
        let round = self.rounds_input(index);
        self.inputs[index].write_region(s, channels, columns, data, round);
        Ok(())
    }

    fn share_input_region(
        &mut self,
        index: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        matrix: &SharedMatrix,
    ) -> Result<()> {
        let spec = self.input_spec(index)?;
        spec.check_region(&channels, &columns, channels.len() * columns.len())?;
        if self.rounds_input(index) {
            return Err(DeviceError::Unavailable(format!(
                "`{}` is rounded to fp16 on the way in, so it needs its own copy",
                spec.name
            )));
        }
        let spec = spec.clone();
        self.inputs[index].share(&spec, channels, columns, matrix)
    }

    fn unshare_inputs(&mut self) {
        for input in &mut self.inputs {
            input.unshare();
        }
    }

    fn run(&mut self) -> Result<()> {
        for old in self.outputs.iter_mut() {
            if let Some(t) = old.take() {
                Self::recycle(&mut self.pool, t);
            }
        }
        let slots = &mut self.slots;
        for (((spec, slot), store), segments) in self
            .plan
            .inputs
            .iter()
            .zip(&mut self.inputs)
            .zip(&self.plan.segments)
        {
            store.place(spec, *slot, segments.as_deref(), slots);
        }
        for (slot, t) in &self.plan.consts {
            slots[*slot] = Some(t.clone());
        }
        let result = run_steps(&self.plan, slots, &mut self.pool);
        for (i, (_, slot)) in self.plan.outputs.iter().enumerate() {
            self.outputs[i] = slots[*slot].clone();
        }
        for s in slots.iter_mut() {
            if let Some(t) = s.take() {
                Self::recycle(&mut self.pool, t);
            }
        }
        result
    }

    fn read_output(&self, index: usize, out: &mut [f32]) -> Result<()> {
        let (spec, value) = self.output(index)?;
        spec.check_len("the output buffer", out.len())?;
        value.copy_to(out);
        Ok(())
    }

    fn read_output_channels(
        &self,
        index: usize,
        channels: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let (spec, value) = self.output(index)?;
        spec.check_channels(&channels, out.len())?;
        let mut shape = value.shape().to_vec();
        shape[1] = channels.len();
        let offset = value.offset() as isize + channels.start as isize * value.strides()[1];
        value
            .view(offset as usize, shape, value.strides().to_vec())
            .copy_to(out);
        Ok(())
    }
}

/// Evaluates every step, freeing each value after its last reader.
fn run_steps(plan: &Plan, slots: &mut [Option<Tensor>], pool: &mut Pool) -> Result<()> {
    for step in &plan.steps {
        let results = {
            let args: Vec<Option<&Tensor>> = step
                .args
                .iter()
                .map(|a| a.and_then(|s| slots[s].as_ref()))
                .collect();
            step.exec(&args, pool)?
        };
        for ((mut t, &slot), shape) in results
            .into_iter()
            .zip(&step.outputs)
            .zip(&step.output_shapes)
        {
            if t.shape() != shape.as_slice() {
                return Err(DeviceError::Runtime(format!(
                    "internal error: op `{}` produced shape {:?} but mil resolved {shape:?}",
                    step.label,
                    t.shape()
                )));
            }
            if step.round_f16 {
                if let Some(buf) = t.storage_mut() {
                    round_to_f16(buf);
                }
            }
            slots[slot] = Some(t);
        }
        for &s in &step.free_after {
            if let Some(t) = slots[s].take() {
                CpuKernel::recycle(pool, t);
            }
        }
    }
    Ok(())
}
