//! A compiled program bound to its IOSurfaces through one reusable `_ANERequest`.

use super::model::CompiledModel;
use super::runtime::AneRuntime;
use super::surface::Surface;
use crate::ane::pack;
use crate::ane::port_order::PortOrder;
use crate::ane::surface_layout::SurfaceLayout;
use crate::{DeviceError, Kernel, Result, TensorSpec};
use objc2::msg_send;
use objc2::rc::{autoreleasepool, Retained};
use objc2::runtime::AnyObject;
use objc2_foundation::{NSArray, NSNumber};
use std::ops::Range;
use std::sync::Arc;

/// A kernel on the ANE. Surfaces are in signature / return order; the request maps them to
/// the framework's slots by [`PortOrder`].
///
/// Fields drop in declaration order: the request (which holds the surface wrappers), then the
/// model (unloaded, and its directory removed, if this was its last user), then the surfaces.
#[derive(Debug)]
pub struct AneKernel {
    request: Retained<AnyObject>,
    model: Arc<CompiledModel>,
    input_surfaces: Vec<Surface>,
    output_surfaces: Vec<Surface>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    order: PortOrder,
    /// Kept so [`Kernel::fork`] can bind new surfaces to the same compiled model.
    runtime: AneRuntime,
    layout: SurfaceLayout,
}

// SAFETY: the request is immutable once built and is only passed to `evaluate` from `&mut self`;
// the model is `Sync` and the surfaces `Send`.
unsafe impl Send for AneKernel {}

impl AneKernel {
    /// Creates the surfaces of `layout` and the request binding them to `model`.
    pub(super) fn new(
        runtime: &AneRuntime,
        model: Arc<CompiledModel>,
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
        layout: &SurfaceLayout,
    ) -> Result<AneKernel> {
        let names = |specs: &[TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let order = PortOrder::resolve(&names(&inputs), &names(&outputs), model.schema())?;
        let input_surfaces = (0..inputs.len())
            .map(|_| Surface::new(&layout.input_properties()))
            .collect::<Result<Vec<_>>>()?;
        let output_surfaces = (0..outputs.len())
            .map(|_| Surface::new(&layout.output_properties()))
            .collect::<Result<Vec<_>>>()?;
        let request = autoreleasepool(|_| {
            let wrap = |surfaces: &[Surface], slots: &[usize]| -> Result<Retained<NSArray>> {
                let wrapped = slots
                    .iter()
                    .map(|&i| wrap_surface(runtime, &surfaces[i]))
                    .collect::<Result<Vec<_>>>()?;
                Ok(NSArray::from_retained_slice(&wrapped))
            };
            let indices = |n: usize| {
                let numbers: Vec<Retained<NSNumber>> = (0..n).map(NSNumber::new_usize).collect();
                NSArray::from_retained_slice(&numbers)
            };
            let in_surfaces = wrap(&input_surfaces, &order.inputs)?;
            let out_surfaces = wrap(&output_surfaces, &order.outputs)?;
            let in_indices = indices(inputs.len());
            let out_indices = indices(outputs.len());
            let procedure = NSNumber::new_u32(0);
            // SAFETY: selector checked at load; arrays of surface wrappers and NSNumber indices,
            // nil weights buffer and perf stats, an NSNumber procedure index (§1.2).
            let request: Option<Retained<AnyObject>> = unsafe {
                msg_send![
                    runtime.request,
                    requestWithInputs: &*in_surfaces,
                    inputIndices: &*in_indices,
                    outputs: &*out_surfaces,
                    outputIndices: &*out_indices,
                    weightsBuffer: None::<&AnyObject>,
                    perfStats: None::<&AnyObject>,
                    procedureIndex: &*procedure
                ]
            };
            request.ok_or_else(|| {
                DeviceError::Runtime("the ANE framework refused to build a request".into())
            })
        })?;
        Ok(AneKernel {
            request,
            model,
            input_surfaces,
            output_surfaces,
            inputs,
            outputs,
            order,
            runtime: runtime.clone(),
            layout: layout.clone(),
        })
    }

    /// How the request's port order was decided (schema or alphabetical fallback).
    pub fn port_order_note(&self) -> &'static str {
        self.order.note()
    }

    fn input_port(&mut self, index: usize) -> Result<(&TensorSpec, &mut Surface)> {
        match (self.inputs.get(index), self.input_surfaces.get_mut(index)) {
            (Some(spec), Some(surface)) => Ok((spec, surface)),
            _ => Err(bad_index("input", index, self.inputs.len())),
        }
    }

    fn output_port(&self, index: usize) -> Result<(&TensorSpec, &Surface)> {
        match (self.outputs.get(index), self.output_surfaces.get(index)) {
            (Some(spec), Some(surface)) => Ok((spec, surface)),
            _ => Err(bad_index("output", index, self.outputs.len())),
        }
    }
}

impl Kernel for AneKernel {
    fn fork(&self) -> Result<Box<dyn Kernel>> {
        let kernel = AneKernel::new(
            &self.runtime,
            Arc::clone(&self.model),
            self.inputs.clone(),
            self.outputs.clone(),
            &self.layout,
        )?;
        Ok(Box::new(kernel))
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn write_input(&mut self, index: usize, data: &[f32]) -> Result<()> {
        let (spec, surface) = self.input_port(index)?;
        surface.write(|bytes| pack::write_tensor_bytes(spec, bytes, data))
    }

    fn write_input_region(
        &mut self,
        index: usize,
        channels: Range<usize>,
        columns: Range<usize>,
        data: &[f32],
    ) -> Result<()> {
        let (spec, surface) = self.input_port(index)?;
        surface.write(|bytes| pack::write_region_bytes(spec, bytes, channels, columns, data))
    }

    fn run(&mut self) -> Result<()> {
        self.model.evaluate(&self.request)
    }

    fn read_output(&self, index: usize, out: &mut [f32]) -> Result<()> {
        let (spec, surface) = self.output_port(index)?;
        surface.read(|bytes| pack::read_tensor_bytes(spec, bytes, out))
    }

    fn read_output_channels(
        &self,
        index: usize,
        channels: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let (spec, surface) = self.output_port(index)?;
        surface.read(|bytes| pack::read_channels_bytes(spec, bytes, channels, out))
    }
}

/// `+[_ANEIOSurfaceObject objectWithIOSurface:]`.
fn wrap_surface(runtime: &AneRuntime, surface: &Surface) -> Result<Retained<AnyObject>> {
    // SAFETY: selector checked at load; the argument is a live IOSurfaceRef.
    let wrapped: Option<Retained<AnyObject>> =
        unsafe { msg_send![runtime.surface_object, objectWithIOSurface: surface.as_ptr()] };
    wrapped.ok_or_else(|| {
        DeviceError::Runtime("the ANE framework refused to wrap an IOSurface".into())
    })
}

fn bad_index(role: &str, index: usize, len: usize) -> DeviceError {
    DeviceError::Layout(format!(
        "{role} index {index} is out of range; the kernel has {len} {role}s"
    ))
}
