//! What a loaded model says about its ports (ane-reference §1.9, §2.5): `modelAttributes` →
//! `NetworkStatusList[0]` → `LiveInputList` / `LiveOutputList`, one dictionary per port with
//! `Name`, `Type`, `Batches`, `Channels`, `Depth`, `Height`, `Width`, `RowStride`,
//! `PlaneStride` and `BatchStride`.
//!
//! The dictionary is converted into plain [`AttrValue`] data on the Mac, so the parsing and
//! every decision drawn from it (surface sizes, whether the packer's layout is the port's, the
//! request order) is ordinary Rust, tested on any platform.

use crate::ane::port_order::IoSchema;
use crate::{DeviceError, Result, TensorSpec};
use anetrain_mil::DType;

/// A property-list value as the framework returns it, with numbers and strings kept apart
/// because some keys come back as either.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    /// An `NSNumber` (integers and booleans).
    Int(i64),
    /// An `NSString`.
    Str(String),
    /// An `NSArray`.
    List(Vec<AttrValue>),
    /// An `NSDictionary`, in the framework's key order.
    Dict(Vec<(String, AttrValue)>),
    /// Anything else (data, dates, nested objects the parser never reads).
    Other,
}

impl AttrValue {
    /// The value at `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        match self {
            AttrValue::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The first of `keys` present, for keys whose spelling varies between releases.
    fn get_any(&self, keys: &[&str]) -> Option<&AttrValue> {
        keys.iter().find_map(|k| self.get(k))
    }

    fn as_usize(&self) -> Option<usize> {
        match self {
            AttrValue::Int(n) => usize::try_from(*n).ok(),
            AttrValue::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One port as the loaded model reports it. Sizes and strides are `None` when not reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortAttributes {
    /// `Name` (outputs carry the `@output` suffix).
    pub name: String,
    /// `Type`: `Float16`, `Float32`, ...
    pub ty: Option<String>,
    /// `Batches`.
    pub batches: Option<usize>,
    /// `Channels`.
    pub channels: Option<usize>,
    /// `Depth`.
    pub depth: Option<usize>,
    /// `Height`.
    pub height: Option<usize>,
    /// `Width`.
    pub width: Option<usize>,
    /// `RowStride`, bytes between rows (consecutive `h`).
    pub row_stride: Option<usize>,
    /// `PlaneStride`, bytes between channels.
    pub plane_stride: Option<usize>,
    /// `BatchStride`, bytes of one batch: the least the surface must hold.
    pub batch_stride: Option<usize>,
}

/// The ports of procedure 0, in the order the framework lists them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelPorts {
    /// `LiveInputList`.
    pub inputs: Vec<PortAttributes>,
    /// `LiveOutputList`.
    pub outputs: Vec<PortAttributes>,
}

impl ModelPorts {
    /// Reads `modelAttributes`; `None` when it lacks the procedure list or either port list,
    /// which older releases do (the device then falls back on the program's own ports).
    pub fn parse(attributes: &AttrValue) -> Option<ModelPorts> {
        let procedures = attributes.get_any(&["NetworkStatusList", "networkStatusList"])?;
        let AttrValue::List(procedures) = procedures else {
            return None;
        };
        let first = procedures.first()?;
        let ports = |keys: &[&str]| -> Option<Vec<PortAttributes>> {
            match first.get_any(keys)? {
                AttrValue::List(items) => items.iter().map(port).collect(),
                _ => None,
            }
        };
        Some(ModelPorts {
            inputs: ports(&["LiveInputList", "liveInputList"])?,
            outputs: ports(&["LiveOutputList", "liveOutputList"])?,
        })
    }

    /// The port names, in the framework's order, for [`PortOrder`](crate::ane::port_order::PortOrder).
    pub fn schema(&self) -> IoSchema {
        let names = |ports: &[PortAttributes]| ports.iter().map(|p| p.name.clone()).collect();
        IoSchema {
            inputs: names(&self.inputs),
            outputs: names(&self.outputs),
        }
    }

    /// Checks every port the framework lists against the program's port it is bound to
    /// (`order[slot]` is the program index of framework slot `slot`), and returns the bytes
    /// each program port's surface must hold, in program order.
    pub fn check(
        &self,
        specs: (&[TensorSpec], &[TensorSpec]),
        order: (&[usize], &[usize]),
    ) -> Result<(Vec<usize>, Vec<usize>)> {
        let side =
            |role: &str, listed: &[PortAttributes], specs: &[TensorSpec], order: &[usize]| {
                let mut bytes: Vec<usize> = specs.iter().map(|s| s.ty.size_bytes()).collect();
                for (attrs, &index) in listed.iter().zip(order) {
                    let Some(spec) = specs.get(index) else {
                        continue;
                    };
                    attrs.check_packed(role, spec)?;
                    bytes[index] = attrs.required_bytes(spec);
                }
                Ok::<_, DeviceError>(bytes)
            };
        Ok((
            side("input", &self.inputs, specs.0, order.0)?,
            side("output", &self.outputs, specs.1, order.1)?,
        ))
    }
}

fn port(item: &AttrValue) -> Option<PortAttributes> {
    let size = |key: &str| item.get(key).and_then(AttrValue::as_usize);
    Some(PortAttributes {
        name: item.get("Name")?.as_str()?.to_string(),
        ty: item
            .get("Type")
            .and_then(AttrValue::as_str)
            .map(str::to_string),
        batches: size("Batches"),
        channels: size("Channels"),
        depth: size("Depth"),
        height: size("Height"),
        width: size("Width"),
        row_stride: size("RowStride"),
        plane_stride: size("PlaneStride"),
        batch_stride: size("BatchStride"),
    })
}

/// The framework's `Type` spelling of a MIL dtype.
pub fn type_name(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::Fp16 => Some("Float16"),
        DType::Fp32 => Some("Float32"),
        _ => None,
    }
}

impl PortAttributes {
    /// Checks that the port is the tensor `spec` declares, laid out as the packer writes it:
    /// `[1, C, H, W]` row-major with `RowStride = W·size`, `PlaneStride = H·RowStride`. Any
    /// other layout would be read or written wrong, so it is an error naming the port.
    /// Attributes the framework did not report are not checked.
    pub fn check_packed(&self, role: &str, spec: &TensorSpec) -> Result<()> {
        let elem = spec.ty.dtype.size_bytes();
        let (c, h, w) = nchw(spec);
        let fail = |what: String| {
            Err(DeviceError::Layout(format!(
                "the compiled model reports {role} `{}` ({}) with {what}; anetrain packs it as a \
                 dense row-major {} and would read or write it wrong, so it refuses to run it: \
                 please report this with `anetrain doctor --json`",
                spec.name, self.name, spec.ty
            )))
        };
        if let (Some(ty), Some(want)) = (&self.ty, type_name(spec.ty.dtype)) {
            if ty != want {
                return fail(format!("type {ty} where the program declares {want}"));
            }
        }
        for (key, got, want) in [
            ("Channels", self.channels, c),
            ("Height", self.height, h),
            ("Width", self.width, w),
        ] {
            if got.is_some_and(|g| g != want) {
                return fail(format!(
                    "{key} {} where the program declares {want}",
                    got.unwrap_or(0)
                ));
            }
        }
        let row = w * elem;
        if let Some(rs) = self.row_stride.filter(|&rs| rs != row) {
            return fail(format!("RowStride {rs} bytes, not the packed {row}"));
        }
        let plane = h * self.row_stride.unwrap_or(row);
        if let Some(ps) = self.plane_stride.filter(|&ps| ps != plane) {
            return fail(format!("PlaneStride {ps} bytes, not the packed {plane}"));
        }
        let batch = c * self.plane_stride.unwrap_or(plane);
        if let Some(bs) = self.batch_stride.filter(|&bs| bs < batch) {
            return fail(format!(
                "BatchStride {bs} bytes, less than the {batch} it holds"
            ));
        }
        Ok(())
    }

    /// The bytes the port's surface must hold at least: `BatchStride` × batches when
    /// reported, else the packed size of `spec`.
    pub fn required_bytes(&self, spec: &TensorSpec) -> usize {
        let packed = spec.ty.size_bytes();
        match self.batch_stride {
            Some(bs) => packed.max(bs * self.batches.unwrap_or(1).max(1)),
            None => packed,
        }
    }
}

/// `(C, H, W)` of a `[1, C, H, W]` (or lower-rank, right-aligned) tensor.
fn nchw(spec: &TensorSpec) -> (usize, usize, usize) {
    let s = &spec.ty.shape;
    let at = |from_end: usize| s.len().checked_sub(from_end).map_or(1, |i| s[i]);
    (at(3), at(2), at(1))
}
