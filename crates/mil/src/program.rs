//! The typed in-memory MIL program: a program holds functions, a function holds ops.

use crate::ops::Op;
use crate::types::{Literal, TensorType, Type};

/// The `buildInfo` every public project sends to the ANE compiler (ane-reference §3.2).
pub const DEFAULT_BUILD_INFO: [(&str, &str); 4] = [
    ("coremlc-component-MIL", "3510.2.1"),
    ("coremlc-version", "3505.4.1"),
    ("coremltools-component-milinternal", ""),
    ("coremltools-version", "9.0"),
];

/// A whole MIL program: `program(1.3) [buildInfo = ...] { func main<ios18>(...) {...} -> (...); }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The version in `program(1.3)`.
    pub version: String,
    /// The one-line `buildInfo` dictionary, in order.
    pub build_info: Vec<(String, String)>,
    pub functions: Vec<Function>,
}

impl Program {
    /// A program with the standard header and one function.
    pub fn new(function: Function) -> Program {
        Program {
            version: "1.3".to_string(),
            build_info: DEFAULT_BUILD_INFO
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            functions: vec![function],
        }
    }

    /// The function named `main`, which is what devices run.
    pub fn main(&self) -> Option<&Function> {
        self.functions.iter().find(|f| f.name == "main")
    }

    /// Every BLOBFILE path the program references (`@model_path/weights/w.bin`), sorted.
    pub fn weight_paths(&self) -> Vec<&str> {
        let mut paths: Vec<&str> = self
            .functions
            .iter()
            .flat_map(|f| f.ops.iter())
            .flat_map(|op| op.attrs.iter())
            .filter_map(|(_, lit)| match lit {
                Literal::Blob { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        paths.sort_unstable();
        paths.dedup();
        paths
    }
}

/// A function: typed inputs, a straight-line list of ops, and the returned value names.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    /// The deployment target in `func main<ios18>`.
    pub target: String,
    pub inputs: Vec<(String, TensorType)>,
    pub ops: Vec<Operation>,
    pub outputs: Vec<String>,
}

impl Function {
    /// The type of value `name`: a function input or an op output.
    pub fn value_type(&self, name: &str) -> Option<Type> {
        if let Some((_, t)) = self.inputs.iter().find(|(n, _)| n == name) {
            return Some(Type::Tensor(t.clone()));
        }
        self.ops
            .iter()
            .flat_map(|op| op.outputs.iter())
            .find(|o| o.name == name)
            .map(|o| o.ty.clone())
    }

    /// The op that produces `name`.
    pub fn producer(&self, name: &str) -> Option<&Operation> {
        self.ops
            .iter()
            .find(|op| op.outputs.iter().any(|o| o.name == name))
    }
}

/// A value an op produces: `tensor<fp16, [1, 64, 1, 32]> h`.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub ty: Type,
}

/// A parenthesised op argument: a value name, or a tuple of names (`values = (a, b)`).
#[derive(Clone, Debug, PartialEq)]
pub enum Argument {
    Value(String),
    Tuple(Vec<String>),
}

impl Argument {
    /// Every value name this argument references.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Argument::Value(n) => vec![n.as_str()],
            Argument::Tuple(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// One statement: `TYPE out = op(arg = value, ...)[name = string("label"), attr = literal];`.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub op: Op,
    /// Arguments in the order they are printed (the builder sorts them by name, as Apple's tools do).
    pub args: Vec<(String, Argument)>,
    /// Bracket attributes other than `name`, e.g. `val` of a const.
    pub attrs: Vec<(String, Literal)>,
    /// The `name` attribute. Usually the output's name; unique within the function.
    pub label: String,
    pub outputs: Vec<Output>,
}

impl Operation {
    /// A `const` op binding `name` to `literal` (typed by it), as the parser reads one.
    pub fn constant(name: &str, literal: Literal) -> Operation {
        Operation {
            op: Op::Const,
            args: vec![],
            label: name.to_string(),
            outputs: vec![Output {
                name: name.to_string(),
                ty: literal.ty(),
            }],
            attrs: vec![("val".to_string(), literal)],
        }
    }

    /// The argument named `name`.
    pub fn arg(&self, name: &str) -> Option<&Argument> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// The single value name of argument `name` (None for a missing or tuple argument).
    pub fn arg_value(&self, name: &str) -> Option<&str> {
        match self.arg(name)? {
            Argument::Value(v) => Some(v),
            Argument::Tuple(_) => None,
        }
    }

    /// The bracket attribute named `name`.
    pub fn attr(&self, name: &str) -> Option<&Literal> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, l)| l)
    }
}
