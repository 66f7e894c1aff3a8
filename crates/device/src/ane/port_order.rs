//! Which surface goes to which slot of an `_ANERequest` (ane-reference §2.5).
//!
//! The framework does not keep the MIL signature or return order. After load it can describe
//! its ports (`modelAttributes` → `NetworkStatusList[0]` → `LiveInputList` / `LiveOutputList`,
//! output names ending in `@output`), and that order is the one to use. A single port needs no
//! name at all (every anetrain kernel has one input and one output). When the schema's names
//! do not match the program's, the request falls back to declaration order, the order every
//! peer that ignores the schema uses, with a warning; without a schema it falls back to
//! Orion's finding, alphabetical by name. The order's source is recorded so the device and the
//! doctor can say which was used.

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

/// Where a [`PortOrder`] came from (the least certain source of its two roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrderSource {
    /// One input and one output: there is nothing to order.
    Single,
    /// The framework's own schema of the loaded model.
    Schema,
    /// Alphabetical by name, because the framework exposed no schema.
    Alphabetical,
    /// Declaration order, because the schema's names did not match the program's.
    Declaration,
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
    /// Why a schema was not followed, when it was not.
    pub warnings: Vec<String>,
}

impl PortOrder {
    /// Orders the MIL ports: a lone port as it is, several by `schema` when it names exactly
    /// the program's ports, in declaration order (with a warning) when it does not, and
    /// alphabetically when there is no schema.
    pub fn resolve<S: AsRef<str>>(
        mil_inputs: &[S],
        mil_outputs: &[S],
        schema: Option<&IoSchema>,
    ) -> PortOrder {
        let mut warnings = Vec::new();
        let (inputs, in_source) = order(
            "input",
            mil_inputs,
            schema.map(|s| s.inputs.as_slice()),
            "",
            &mut warnings,
        );
        let (outputs, out_source) = order(
            "output",
            mil_outputs,
            schema.map(|s| s.outputs.as_slice()),
            OUTPUT_SUFFIX,
            &mut warnings,
        );
        PortOrder {
            inputs,
            outputs,
            source: in_source.max(out_source),
            warnings,
        }
    }

    /// A sentence for logs and the doctor saying how the order was decided.
    pub fn note(&self) -> String {
        let base = match self.source {
            OrderSource::Single => "one input and one output, no port order to decide",
            OrderSource::Schema => "request port order taken from the model's schema",
            OrderSource::Alphabetical => {
                "the framework exposed no port schema; request ports are in alphabetical order \
                 of their MIL names (Orion's finding, unverified on this machine)"
            }
            OrderSource::Declaration => {
                "request ports are in declaration order because the model's schema does not \
                 match the program"
            }
        };
        std::iter::once(base.to_string())
            .chain(self.warnings.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn order<S: AsRef<str>>(
    role: &str,
    mil: &[S],
    schema: Option<&[String]>,
    suffix: &str,
    warnings: &mut Vec<String>,
) -> (Vec<usize>, OrderSource) {
    let declared = || (0..mil.len()).collect::<Vec<_>>();
    if mil.len() <= 1 {
        return (declared(), OrderSource::Single);
    }
    let Some(schema) = schema else {
        return (alphabetical(mil), OrderSource::Alphabetical);
    };
    match match_schema(mil, schema, suffix) {
        Some(order) => (order, OrderSource::Schema),
        None => {
            let mil: Vec<&str> = mil.iter().map(AsRef::as_ref).collect();
            warnings.push(format!(
                "warning: the compiled model lists {role}s {schema:?} but the program declares \
                 {mil:?}; using declaration order (if the doctor's numbers disagree, this is \
                 why: please report it)"
            ));
            (declared(), OrderSource::Declaration)
        }
    }
}

fn alphabetical<S: AsRef<str>>(names: &[S]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].as_ref().cmp(names[b].as_ref()));
    order
}

/// The program index of each schema entry, or `None` unless the schema names every program
/// port exactly once.
fn match_schema<S: AsRef<str>>(mil: &[S], schema: &[String], suffix: &str) -> Option<Vec<usize>> {
    if schema.len() != mil.len() {
        return None;
    }
    let mut taken = vec![false; mil.len()];
    let mut order = Vec::with_capacity(mil.len());
    for listed in schema {
        let name = listed.strip_suffix(suffix).unwrap_or(listed);
        let index = mil
            .iter()
            .position(|m| m.as_ref() == name)
            .filter(|&i| !taken[i])?;
        taken[index] = true;
        order.push(index);
    }
    Some(order)
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
