//! Type checking of whole functions: every name is defined once before use, every argument
//! matches the op's spec, every declared output type equals what resolution derives, and every
//! returned name exists. Checking yields each op's [`Resolved`] form, which devices evaluate.

use crate::error::{MilError, Result};
use crate::infer::{resolve_op, ArgInfo, Bound, Resolved};
use crate::ops::ArgKind;
use crate::program::{Argument, Function, Operation, Program};
use crate::types::{Literal, Type};
use std::collections::{HashMap, HashSet};

/// A validation failure, with the index of the offending op in [`Function::ops`] when there is one
/// (the parser maps it back to a line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub op_index: Option<usize>,
    pub error: MilError,
}

struct Env<'a> {
    values: HashMap<&'a str, (Type, Option<&'a Literal>)>,
}

/// Resolves each op of `function` on its own, against the declared types of every value, for
/// readers that must tolerate invalid IR (the constraint checker): `None` where an op does not
/// resolve. A name defined twice resolves to its first definition.
pub fn resolve_each(function: &Function) -> Vec<Option<Resolved>> {
    let mut env = Env {
        values: HashMap::new(),
    };
    for (name, ty) in &function.inputs {
        env.values
            .entry(name)
            .or_insert((Type::Tensor(ty.clone()), None));
    }
    for op in &function.ops {
        for out in &op.outputs {
            env.values
                .entry(&out.name)
                .or_insert((out.ty.clone(), const_value(op)));
        }
    }
    function
        .ops
        .iter()
        .map(|op| check_op(op, &env).ok())
        .collect()
}

/// The value a `const` op defines, which later ops may read as a compile-time parameter.
fn const_value(op: &Operation) -> Option<&Literal> {
    if op.op == crate::ops::Op::Const {
        op.attr("val")
    } else {
        None
    }
}

/// Checks one function.
pub fn validate_function(function: &Function) -> std::result::Result<(), Invalid> {
    resolve_function(function).map(drop)
}

/// Checks one function and resolves its ops, one [`Resolved`] per entry of [`Function::ops`].
pub fn resolve_function(function: &Function) -> std::result::Result<Vec<Resolved>, Invalid> {
    let program_err = |msg: String| Invalid {
        op_index: None,
        error: MilError::Program(msg),
    };
    let mut env = Env {
        values: HashMap::new(),
    };
    for (name, ty) in &function.inputs {
        if !ty.dtype.is_tensor_element() {
            return Err(program_err(format!(
                "input `{name}` has non-tensor dtype {}",
                ty.dtype
            )));
        }
        if env
            .values
            .insert(name, (Type::Tensor(ty.clone()), None))
            .is_some()
        {
            return Err(program_err(format!("input `{name}` is declared twice")));
        }
    }
    let mut labels = HashSet::new();
    let mut resolved = Vec::with_capacity(function.ops.len());
    for (index, op) in function.ops.iter().enumerate() {
        let fail = |message: String| Invalid {
            op_index: Some(index),
            error: MilError::Type {
                op: op.op.name().to_string(),
                label: op.label.clone(),
                message,
            },
        };
        if !labels.insert(op.label.as_str()) {
            return Err(fail(format!("the name `{}` labels two ops", op.label)));
        }
        let r = check_op(op, &env).map_err(&fail)?;
        if r.outputs.len() != op.outputs.len() {
            return Err(fail(format!(
                "produces {} values but {} are declared",
                r.outputs.len(),
                op.outputs.len()
            )));
        }
        for (out, ty) in op.outputs.iter().zip(&r.outputs) {
            if &out.ty != ty {
                return Err(fail(format!(
                    "`{}` is declared {} but the op produces {ty}",
                    out.name, out.ty
                )));
            }
            if env
                .values
                .insert(&out.name, (ty.clone(), const_value(op)))
                .is_some()
            {
                return Err(fail(format!("`{}` is defined twice", out.name)));
            }
        }
        resolved.push(r);
    }
    if function.outputs.is_empty() {
        return Err(program_err(format!(
            "function `{}` returns nothing",
            function.name
        )));
    }
    for name in &function.outputs {
        match env.values.get(name.as_str()) {
            None => {
                return Err(program_err(format!(
                    "returned value `{name}` is not defined"
                )))
            }
            Some((Type::Scalar(_), _)) => {
                return Err(program_err(format!(
                    "returned value `{name}` is a scalar; devices return tensors"
                )))
            }
            Some(_) => {}
        }
    }
    Ok(resolved)
}

fn check_op(op: &Operation, env: &Env<'_>) -> std::result::Result<Resolved, String> {
    let lookup = |name: &str| -> std::result::Result<ArgInfo<'_>, String> {
        env.values
            .get(name)
            .map(|(ty, value)| ArgInfo { ty, value: *value })
            .ok_or_else(|| format!("`{name}` is used before it is defined"))
    };
    let tensor = |name: &str, v: &str| -> std::result::Result<ArgInfo<'_>, String> {
        let info = lookup(v)?;
        if info.ty.dtype() == crate::types::DType::String {
            return Err(format!(
                "argument `{name}` = `{v}` is a string; it must be a tensor"
            ));
        }
        Ok(info)
    };
    for spec in op.op.args() {
        if !spec.optional && op.arg(spec.name).is_none() {
            return Err(format!("missing argument `{}`", spec.name));
        }
    }
    for attr in op.op.attrs() {
        if op.attr(attr).is_none() {
            return Err(format!("missing attribute `{attr}`"));
        }
    }
    for (name, _) in &op.attrs {
        if !op.op.attrs().contains(&name.as_str()) {
            return Err(format!("unknown attribute `{name}`"));
        }
    }
    let mut bound = Vec::with_capacity(op.args.len());
    for (name, arg) in &op.args {
        let spec = op
            .op
            .arg(name)
            .ok_or_else(|| format!("{} has no argument `{name}`", op.op))?;
        let b = match (spec.kind, arg) {
            (ArgKind::TensorTuple, Argument::Tuple(names)) => Bound::Tuple(
                names
                    .iter()
                    .map(|n| tensor(name, n))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            (ArgKind::TensorTuple, Argument::Value(_)) => {
                return Err(format!("argument `{name}` must be a tuple `(a, b, ...)`"))
            }
            (_, Argument::Tuple(_)) => {
                return Err(format!("argument `{name}` must be a single value"))
            }
            (ArgKind::Param, Argument::Value(v)) => {
                let info = lookup(v)?;
                if info.value.is_none() {
                    return Err(format!(
                        "argument `{name}` must name a const (the ANE compiler needs it at compile time)"
                    ));
                }
                Bound::One(info)
            }
            (ArgKind::Tensor, Argument::Value(v)) => Bound::One(tensor(name, v)?),
        };
        bound.push((name.as_str(), b));
    }
    resolve_op(op.op, &bound, &op.attrs)
}

/// Checks every function of a program and that it has a `main`.
pub fn validate(program: &Program) -> Result<()> {
    resolve_main(program).map(drop)
}

/// Checks the program as [`validate`] does and resolves the ops of `main`, the function
/// devices run: every device compiles through this, so all reject a program alike.
pub fn resolve_main(program: &Program) -> Result<(&Function, Vec<Resolved>)> {
    let main = program.main().ok_or_else(|| {
        MilError::Program("the program has no function `main`; devices run `main`".into())
    })?;
    let mut resolved = None;
    for f in &program.functions {
        let r = resolve_function(f).map_err(|e| e.error)?;
        if std::ptr::eq(f, main) {
            resolved = Some(r);
        }
    }
    Ok((main, resolved.unwrap_or_default()))
}
