//! The grammar of one function and its statements, with the name and argument checks that
//! need positions (everything the type checker in `validate` cannot point at by itself).

use super::cursor::Cursor;
use super::lexer::{Pos, Tok};
use super::scope::{Scope, ValueInfo};
use super::suggest::did_you_mean;
use crate::error::Result;
use crate::ops::{ArgKind, ArgSpec, Op};
use crate::program::{Argument, Function, Operation, Output};
use crate::types::{Literal, Scalar, TensorType, Type};

/// A parsed function plus where its parts start, for mapping validation errors back to text.
pub(crate) struct ParsedFunction {
    pub function: Function,
    /// Position of the `func` keyword.
    pub pos: Pos,
    /// Start of each statement, parallel to `function.ops`.
    pub op_positions: Vec<Pos>,
}

impl Cursor {
    /// `func NAME<TARGET>(INPUTS) { STATEMENTS } -> (OUTPUTS);`
    pub fn parse_function(&mut self) -> Result<ParsedFunction> {
        let pos =
            self.expect_keyword("func", "to start a function, as in `func main<ios18>(...)`")?;
        let (name, _) = self.expect_ident("a function name such as `main`")?;
        self.expect_punct('<', "after the function name, as in `main<ios18>`")?;
        let (target, _) = self.expect_ident("a deployment target such as `ios18`")?;
        self.expect_punct('>', "after the deployment target")?;

        let mut scope = Scope::default();
        let inputs = self.parse_inputs(&mut scope)?;

        self.expect_punct('{', "to open the function body")?;
        let mut ops = Vec::new();
        let mut op_positions = Vec::new();
        while !self.at_punct('}') {
            op_positions.push(self.pos());
            ops.push(self.parse_statement(&mut scope)?);
        }
        self.next();

        let outputs = self.parse_returns(&name, &scope)?;

        let function = Function {
            name,
            target,
            inputs,
            ops,
            outputs,
        };
        Ok(ParsedFunction {
            function,
            pos,
            op_positions,
        })
    }

    /// `(tensor<...> a, tensor<...> b)`: the function inputs, defined in `scope`.
    fn parse_inputs(&mut self, scope: &mut Scope) -> Result<Vec<(String, TensorType)>> {
        let mut inputs = Vec::new();
        self.expect_punct('(', "to open the function inputs")?;
        while !self.at_punct(')') {
            if !inputs.is_empty() {
                self.expect_punct(',', "between function inputs")?;
            }
            let type_pos = self.pos();
            let ty = self.parse_type()?;
            let (input, input_pos) = self.expect_ident("an input name after its type")?;
            let Type::Tensor(ty) = ty else {
                return Err(type_pos.error(format!(
                    "function input `{input}` must be a tensor, as in `tensor<fp16, [1, 64, 1, 32]> {input}`"
                )));
            };
            scope.define(
                &input,
                ValueInfo {
                    producer: None,
                    pos: input_pos,
                },
            )?;
            inputs.push((input, ty));
        }
        self.next();
        Ok(inputs)
    }

    /// `-> (a, b);` after the body of function `name`: at least one defined value.
    fn parse_returns(&mut self, name: &str, scope: &Scope) -> Result<Vec<String>> {
        self.expect_arrow("after the function body, as in `} -> (y);`")?;
        let open = self.expect_punct('(', "to open the list of returned values")?;
        let mut outputs = Vec::new();
        while !self.at_punct(')') {
            if !outputs.is_empty() {
                self.expect_punct(',', "between returned values")?;
            }
            let (output, output_pos) = self.expect_ident("the name of a returned value")?;
            scope.lookup(&output, output_pos, "returned value")?;
            outputs.push(output);
        }
        self.next();
        if outputs.is_empty() {
            return Err(open.error(format!(
                "function `{name}` returns nothing; list at least one value, as in `-> (y);`"
            )));
        }
        self.expect_punct(';', "after the returned values")?;
        Ok(outputs)
    }

    /// `TYPE a[, TYPE b] = op(arg = value, ...)[name = string("label"), attr = literal];`
    fn parse_statement(&mut self, scope: &mut Scope) -> Result<Operation> {
        let mut outputs: Vec<(Output, Pos)> = Vec::new();
        loop {
            let ty = self.parse_type()?;
            let (name, pos) = self.expect_ident("the name of the value this statement defines")?;
            outputs.push((Output { name, ty }, pos));
            if !self.eat_punct(',') {
                break;
            }
        }
        self.expect_punct('=', "after the declared outputs")?;

        let (op_name, op_pos) = self.expect_ident("an op name such as `conv` or `const`")?;
        let Some(op) = Op::from_name(&op_name) else {
            let names: Vec<&str> = Op::ALL.iter().map(|op| op.name()).collect();
            let hint = did_you_mean(
                &op_name,
                &names,
                "; see ane-reference §3.7 for the supported ops",
            );
            return Err(op_pos.error(format!("unknown op `{op_name}`{hint}")));
        };

        let args = self.parse_args(op, op_pos, scope)?;
        let Brackets {
            label,
            label_pos,
            attrs,
        } = self.parse_attrs(op, op_pos)?;
        self.expect_punct(';', "to end the statement")?;

        if op == Op::Const {
            check_const_type(&outputs, &attrs, op_pos)?;
        }
        let attrs = attrs.into_iter().map(|a| (a.key, a.literal)).collect();
        scope.define_label(&label, label_pos)?;
        for (output, pos) in &outputs {
            scope.define(
                &output.name,
                ValueInfo {
                    producer: Some(op),
                    pos: *pos,
                },
            )?;
        }
        let outputs = outputs.into_iter().map(|(o, _)| o).collect();
        Ok(Operation {
            op,
            args,
            attrs,
            label,
            outputs,
        })
    }

    /// `(arg = value, arg = (a, b), ...)`, checked against the op's argument table.
    fn parse_args(
        &mut self,
        op: Op,
        op_pos: Pos,
        scope: &Scope,
    ) -> Result<Vec<(String, Argument)>> {
        self.expect_punct(
            '(',
            &format!("after `{op}`; ops without arguments are written `{op}()`"),
        )?;
        let mut args: Vec<(String, Argument)> = Vec::new();
        while !self.at_punct(')') {
            if !args.is_empty() {
                self.expect_punct(',', "between arguments")?;
            }
            let (arg_name, arg_pos) = self.expect_ident("an argument name")?;
            let Some(spec) = op.arg(&arg_name) else {
                let names: Vec<&str> = op.args().iter().map(|a| a.name).collect();
                let otherwise = if names.is_empty() {
                    format!("; `{op}` takes no arguments in parentheses")
                } else {
                    format!("; `{op}` takes {}", quoted_list(&names))
                };
                let hint = did_you_mean(&arg_name, &names, &otherwise);
                return Err(arg_pos.error(format!("unknown argument `{arg_name}` of {op}{hint}")));
            };
            if args.iter().any(|(n, _)| *n == arg_name) {
                return Err(arg_pos.error(format!(
                    "argument `{arg_name}` of {op} is given twice; keep one"
                )));
            }
            self.expect_punct('=', &format!("after argument `{arg_name}`"))?;
            let argument = self.parse_arg_value(op, spec, scope)?;
            args.push((arg_name, argument));
        }
        self.next();
        for spec in op.args().iter().filter(|s| !s.optional) {
            if !args.iter().any(|(n, _)| n == spec.name) {
                return Err(op_pos.error(format!(
                    "{op} is missing required argument `{0}`; add `{0} = ...`",
                    spec.name
                )));
            }
        }
        Ok(args)
    }

    /// The value of argument `spec` of `op`: a defined name, or a tuple of them where the op
    /// takes one. Inline literals are rejected: the ANE compiler wants named consts.
    fn parse_arg_value(&mut self, op: Op, spec: &ArgSpec, scope: &Scope) -> Result<Argument> {
        let arg = spec.name;
        let pos = self.pos();
        let context = format!("argument `{arg}` of {op} names value");
        if self.at_literal() {
            return Err(pos.error(match spec.kind {
                ArgKind::Param => format!(
                    "argument `{arg}` of {op} must name a const (the ANE compiler rejects inline literals); declare the literal with const() and pass its name"
                ),
                _ => format!(
                    "argument `{arg}` of {op} must name a value, not an inline literal; declare the literal with const() and pass its name"
                ),
            }));
        }
        match (spec.kind, self.at_punct('(')) {
            (ArgKind::TensorTuple, false) => Err(pos.error(format!(
                "argument `{arg}` of {op} takes a tuple; write `{arg} = (a, b)`"
            ))),
            (ArgKind::Tensor | ArgKind::Param, true) => Err(pos.error(format!(
                "argument `{arg}` of {op} takes one value, not a tuple; remove the parentheses"
            ))),
            (ArgKind::TensorTuple, true) => {
                self.next();
                let mut names = Vec::new();
                while !self.at_punct(')') {
                    if !names.is_empty() {
                        self.expect_punct(',', "between tuple elements")?;
                    }
                    let (name, name_pos) = self.expect_ident("a value name in the tuple")?;
                    scope.lookup(&name, name_pos, &context)?;
                    names.push(name);
                }
                self.next();
                if names.is_empty() {
                    return Err(pos.error(format!(
                        "argument `{arg}` of {op} is an empty tuple; list at least one value"
                    )));
                }
                Ok(Argument::Tuple(names))
            }
            (ArgKind::Tensor | ArgKind::Param, false) => {
                let (name, name_pos) = self.expect_ident(&format!("a value name for `{arg}`"))?;
                let info = scope.lookup(&name, name_pos, &context)?;
                if spec.kind == ArgKind::Param && info.producer != Some(Op::Const) {
                    let source = match info.producer {
                        Some(producer) => format!("is computed by {producer}"),
                        None => "is a function input".to_string(),
                    };
                    return Err(name_pos.error(format!(
                        "argument `{arg}` of {op} must name a const, but `{name}` {source}; pass a value declared with const()"
                    )));
                }
                Ok(Argument::Value(name))
            }
        }
    }

    /// True if the next tokens start a literal rather than a value name.
    fn at_literal(&self) -> bool {
        match &self.peek().tok {
            Tok::Number(..) | Tok::Str(_) | Tok::Punct('-' | '+') => true,
            Tok::Ident(word) => {
                matches!(word.as_str(), "true" | "false" | "inf" | "nan")
                    || matches!(self.peek_at(1).tok, Tok::Punct('(' | '<'))
            }
            _ => false,
        }
    }

    /// `[name = string("label"), key = literal, ...]`, checked against the op's attribute table.
    fn parse_attrs(&mut self, op: Op, op_pos: Pos) -> Result<Brackets> {
        self.expect_punct(
            '[',
            &format!("after the arguments of {op}, as in `[name = string(\"h\")]`"),
        )?;
        let mut label: Option<(String, Pos)> = None;
        let mut attrs: Vec<Attr> = Vec::new();
        while !self.at_punct(']') {
            if label.is_some() || !attrs.is_empty() {
                self.expect_punct(',', "between attributes")?;
            }
            let (key, key_pos) = self.expect_ident("an attribute name such as `name`")?;
            let duplicate = match key.as_str() {
                "name" => label.is_some(),
                _ => attrs.iter().any(|a| a.key == key),
            };
            if duplicate {
                return Err(key_pos.error(format!(
                    "attribute `{key}` of {op} is given twice; keep one"
                )));
            }
            if key != "name" && !op.attrs().contains(&key.as_str()) {
                let mut names = vec!["name"];
                names.extend_from_slice(op.attrs());
                let otherwise = format!("; `{op}` takes {}", quoted_list(&names));
                let hint = did_you_mean(&key, &names, &otherwise);
                return Err(key_pos.error(format!("unknown attribute `{key}` of {op}{hint}")));
            }
            self.expect_punct('=', &format!("after attribute `{key}`"))?;
            let (literal, literal_pos) = self.parse_literal()?;
            if key == "name" {
                let Literal::Scalar(Scalar::String(text)) = literal else {
                    return Err(literal_pos
                        .error("attribute `name` must be a string, as in `name = string(\"h\")`"));
                };
                label = Some((text, literal_pos));
            } else {
                attrs.push(Attr {
                    key,
                    literal,
                    pos: literal_pos,
                });
            }
        }
        self.next();
        let Some((label, label_pos)) = label else {
            return Err(op_pos.error(format!(
                "{op} has no `name` attribute; add `name = string(\"...\")` inside the brackets"
            )));
        };
        if let Some(missing) = op
            .attrs()
            .iter()
            .find(|name| !attrs.iter().any(|a| a.key == **name))
        {
            return Err(op_pos.error(format!(
                "{op} {label:?} is missing attribute `{missing}`; add `{missing} = ...` inside the brackets"
            )));
        }
        attrs.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Brackets {
            label,
            label_pos,
            attrs,
        })
    }
}

/// The bracket attributes of a statement.
struct Brackets {
    /// The `name` attribute and where its value starts.
    label: String,
    label_pos: Pos,
    /// The other attributes, sorted by key (the order the printer writes them).
    attrs: Vec<Attr>,
}

/// One attribute other than `name`, with where its value starts.
struct Attr {
    key: String,
    literal: Literal,
    pos: Pos,
}

/// A const declares one value whose type is exactly the type of its `val`.
fn check_const_type(outputs: &[(Output, Pos)], attrs: &[Attr], op_pos: Pos) -> Result<()> {
    let [(output, _)] = outputs else {
        return Err(op_pos.error(format!(
            "const produces exactly one value, but {} are declared; split it into one const per value",
            outputs.len()
        )));
    };
    if let Some(val) = attrs.iter().find(|a| a.key == "val") {
        let actual = val.literal.ty();
        if actual != output.ty {
            return Err(val.pos.error(format!(
                "`val` has type {actual}, but `{}` is declared as {}; make the two types agree",
                output.name, output.ty
            )));
        }
    }
    Ok(())
}

/// `` `a`, `b` or `c` `` for messages.
fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}
