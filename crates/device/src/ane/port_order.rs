//! Which surface goes to which slot of an `_ANERequest` (ane-reference §2.5).
//!
//! The framework does not keep the MIL signature or return order. After load it can describe
//! its ports (`modelAttributes` → `NetworkStatusList[0]` → `LiveInputList` / `LiveOutputList`,
//! output names ending in `@output`), and that order is the one to use. Without a schema the
//! fallback is Orion's finding, alphabetical by name, which is right for every case it tested
//! but not proven: the order's source is recorded so the device can say which it used.

use crate::{DeviceError, Result, TensorSpec};
use anetrain_mil::{MilError, Program, Type};

/// The suffix the framework appends to output names in its schema.
pub const OUTPUT_SUFFIX: &str = "@output";

/// Port names in the order the framework lists them for procedure 0.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoSchema {
    /// `LiveInputList[i].Name`.
    pub inputs: Vec<String>,
    /// `LiveOutputList[i].Name`, with or without the `@output` suffix.
    pub outputs: Vec<String>,
}

/// Where a [`PortOrder`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderSource {
    /// The framework's own schema of the loaded model.
    Schema,
    /// Alphabetical by name, because the framework exposed no schema.
    Alphabetical,
}

/// The request slot of every port: `inputs[slot]` is the index of the MIL input (signature
/// order) whose surface goes to request slot `slot`; likewise for outputs (return order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortOrder {
    /// Request input slot → MIL input index.
    pub inputs: Vec<usize>,
    /// Request output slot → MIL output index.
    pub outputs: Vec<usize>,
    /// How the order was decided.
    pub source: OrderSource,
}

impl PortOrder {
    /// Orders the MIL ports by `schema` when there is one, else alphabetically. A schema that
    /// does not name exactly the program's ports is an error (the slots would be guesses).
    pub fn resolve<S: AsRef<str>>(
        mil_inputs: &[S],
        mil_outputs: &[S],
        schema: Option<&IoSchema>,
    ) -> Result<PortOrder> {
        match schema {
            Some(schema) => Ok(PortOrder {
                inputs: match_schema("input", mil_inputs, &schema.inputs, "")?,
                outputs: match_schema("output", mil_outputs, &schema.outputs, OUTPUT_SUFFIX)?,
                source: OrderSource::Schema,
            }),
            None => Ok(PortOrder {
                inputs: alphabetical(mil_inputs),
                outputs: alphabetical(mil_outputs),
                source: OrderSource::Alphabetical,
            }),
        }
    }

    /// A sentence for logs and the doctor saying how the order was decided.
    pub fn note(&self) -> &'static str {
        match self.source {
            OrderSource::Schema => "request port order taken from the model's schema",
            OrderSource::Alphabetical => {
                "the framework exposed no port schema; request ports are in alphabetical order \
                 of their MIL names (Orion's finding, unverified on this machine)"
            }
        }
    }
}

fn alphabetical<S: AsRef<str>>(names: &[S]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].as_ref().cmp(names[b].as_ref()));
    order
}

fn match_schema<S: AsRef<str>>(
    role: &str,
    mil: &[S],
    schema: &[String],
    suffix: &str,
) -> Result<Vec<usize>> {
    let listed: Vec<&str> = schema
        .iter()
        .map(|n| n.strip_suffix(suffix).unwrap_or(n))
        .collect();
    let mismatch = || {
        let mil: Vec<&str> = mil.iter().map(AsRef::as_ref).collect();
        DeviceError::Runtime(format!(
            "the compiled model lists {role}s {listed:?} but the program declares {mil:?}; \
             the surfaces cannot be matched to request slots (is a port unused and optimised \
             away? every {role} must be used)"
        ))
    };
    if listed.len() != mil.len() {
        return Err(mismatch());
    }
    let mut taken = vec![false; mil.len()];
    let mut order = Vec::with_capacity(mil.len());
    for name in &listed {
        let index = mil
            .iter()
            .position(|m| m.as_ref() == *name)
            .filter(|&i| !taken[i])
            .ok_or_else(mismatch)?;
        taken[index] = true;
        order.push(index);
    }
    Ok(order)
}

/// The kernel's ports from `main`'s signature and return list, the specs every device exposes.
pub fn kernel_ports(program: &Program) -> Result<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let main = program
        .main()
        .ok_or_else(|| MilError::Program("the program has no function `main`".into()))?;
    let inputs = main
        .inputs
        .iter()
        .map(|(name, ty)| TensorSpec {
            name: name.clone(),
            ty: ty.clone(),
        })
        .collect();
    let outputs = main
        .outputs
        .iter()
        .map(|name| match main.value_type(name) {
            Some(Type::Tensor(ty)) => Ok(TensorSpec {
                name: name.clone(),
                ty,
            }),
            _ => Err(DeviceError::from(MilError::Program(format!(
                "returned value `{name}` is not a tensor defined in `main`"
            )))),
        })
        .collect::<Result<_>>()?;
    Ok((inputs, outputs))
}
