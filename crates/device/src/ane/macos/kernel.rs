//! A compiled program bound to its IOSurfaces through one reusable `_ANERequest`.

use super::model::CompiledModel;
use super::runtime::AneRuntime;
use super::surface::Surface;
use crate::ane::pack;
use crate::ane::port_order::PortOrder;
use crate::ane::surface_layout::{RowLayout, SurfaceLayout, WIDE_ROW_BYTES};
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
    /// Whether an evaluation has succeeded; only a first evaluation retries another layout.
    has_run: bool,
}

/// Surfaces of one layout and the request that binds them, in the request's slot order.
struct Bound {
    request: Retained<AnyObject>,
    inputs: Vec<Surface>,
    outputs: Vec<Surface>,
}

impl Bound {
    fn new(runtime: &AneRuntime, layout: &SurfaceLayout, order: &PortOrder) -> Result<Bound> {
        let inputs = (0..order.inputs.len())
            .map(|_| Surface::new(&layout.input_properties()))
            .collect::<Result<Vec<_>>>()?;
        let outputs = (0..order.outputs.len())
            .map(|_| Surface::new(&layout.output_properties()))
            .collect::<Result<Vec<_>>>()?;
        let request = request(runtime, &inputs, &outputs, order)?;
        Ok(Bound {
            request,
            inputs,
            outputs,
        })
    }
}

/// The 7-argument `_ANERequest` with `inputs` and `outputs` (program order) in `order`'s slots.
fn request(
    runtime: &AneRuntime,
    input_surfaces: &[Surface],
    output_surfaces: &[Surface],
    order: &PortOrder,
) -> Result<Retained<AnyObject>> {
    autoreleasepool(|_| {
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
        let in_surfaces = wrap(input_surfaces, &order.inputs)?;
        let out_surfaces = wrap(output_surfaces, &order.outputs)?;
        let in_indices = indices(order.inputs.len());
        let out_indices = indices(order.outputs.len());
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
    })
}

// SAFETY: the request is immutable once built and is only passed to `evaluate` from `&mut self`;
// the model is `Sync` and the surfaces `Send`.
unsafe impl Send for AneKernel {}

impl AneKernel {
    /// Checks the ports the loaded model reports against the program's, sizes the surfaces
    /// of `layout` to hold what they need, and binds them to `model` through one request.
    pub(super) fn new(
        runtime: &AneRuntime,
        model: Arc<CompiledModel>,
        inputs: Vec<TensorSpec>,
        outputs: Vec<TensorSpec>,
        layout: &SurfaceLayout,
    ) -> Result<AneKernel> {
        let names = |specs: &[TensorSpec]| specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let schema = model.ports().map(|p| p.schema());
        let order = PortOrder::resolve(&names(&inputs), &names(&outputs), schema.as_ref());
        let mut layout = layout.clone();
        if let Some(ports) = model.ports() {
            let (in_bytes, out_bytes) =
                ports.check((&inputs, &outputs), (&order.inputs, &order.outputs))?;
            layout.reserve(&in_bytes, &out_bytes);
        }
        let bound = match Bound::new(runtime, &layout, &order) {
            Err(e) => match layout.rows.retry_after(&e.to_string()) {
                Some(rows) => {
                    layout = layout.with_rows(rows);
                    Bound::new(runtime, &layout, &order)?
                }
                None => return Err(e),
            },
            ok => ok?,
        };
        Ok(AneKernel {
            request: bound.request,
            model,
            input_surfaces: bound.inputs,
            output_surfaces: bound.outputs,
            inputs,
            outputs,
            order,
            runtime: runtime.clone(),
            layout,
            has_run: false,
        })
    }

    /// Rebinds the kernel to surfaces in `rows`, keeping what was written to the inputs.
    fn rebind(&mut self, rows: RowLayout) -> Result<()> {
        let layout = self.layout.with_rows(rows);
        let mut bound = Bound::new(&self.runtime, &layout, &self.order)?;
        for (old, new) in self.input_surfaces.iter().zip(&mut bound.inputs) {
            old.read(|src| {
                new.write(|dst| {
                    let n = src.len().min(dst.len());
                    dst[..n].copy_from_slice(&src[..n]);
                    Ok(())
                })
            })?;
        }
        self.request = bound.request;
        self.input_surfaces = bound.inputs;
        self.output_surfaces = bound.outputs;
        self.layout = layout;
        Ok(())
    }

    /// How the request's port order was decided, with any warning about the schema.
    pub fn port_order_note(&self) -> String {
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
        let first = match self.model.evaluate(&self.request) {
            Ok(()) => {
                self.has_run = true;
                return Ok(());
            }
            Err(e) => e,
        };
        // The single-row layout failing with the size error on a first run is the one case
        // where AB's multi-row layout is worth a try (§2.1); anything else is reported as is.
        let retry = (!self.has_run)
            .then(|| self.layout.rows.retry_after(&first.to_string()))
            .flatten();
        let Some(rows) = retry else {
            return Err(first);
        };
        self.rebind(rows)?;
        self.model.evaluate(&self.request).map_err(|second| {
            DeviceError::Runtime(format!(
                "{first}; retried with {WIDE_ROW_BYTES}-byte surface rows: {second}"
            ))
        })?;
        self.has_run = true;
        Ok(())
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
