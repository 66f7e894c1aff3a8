//! Every parse error names the offending token's line and column and says what to change.

use super::parse_program;
use crate::error::MilError;
use crate::ops::Op;
use crate::types::{DType, Literal, Scalar};

/// Wraps statements in a one-function program whose input is `x: [1, 4, 1, 8]`. The body
/// starts on line 4.
fn program(body: &str, returns: &str) -> String {
    format!(
        "program(1.3)\n{{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 8]> x) {{\n{body}    }} -> ({returns});\n}}\n"
    )
}

/// Parses `text`, expecting an error at the first occurrence of `needle` on line `line`
/// whose message contains `message`.
fn assert_error_at(text: &str, line: usize, needle: &str, message: &str) {
    let source_line = text
        .split('\n')
        .nth(line - 1)
        .unwrap_or_else(|| panic!("no line {line} in\n{text}"));
    let byte = source_line
        .find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not on line {line}: {source_line}"));
    let column = source_line[..byte].chars().count() + 1;
    match parse_program(text) {
        Err(MilError::Parse {
            line: l,
            column: c,
            message: m,
        }) => {
            assert_eq!((l, c), (line, column), "wrong position for: {m}\n{text}");
            assert!(m.contains(message), "message `{m}` lacks `{message}`");
        }
        other => panic!("expected a parse error containing `{message}`, got {other:?}\n{text}"),
    }
}

const RELU: &str = "        tensor<fp16, [1, 4, 1, 8]> y = relu(x = x)[name = string(\"y\")];\n";

#[test]
fn accepts_a_minimal_program() {
    let p = parse_program(&program(RELU, "y")).unwrap();
    assert!(p.build_info.is_empty());
    assert_eq!(p.version, "1.3");
    let main = p.main().unwrap();
    assert_eq!(main.ops[0].op, Op::Relu);
    assert_eq!(main.ops[0].label, "y");
    assert_eq!(main.outputs, ["y"]);
}

#[test]
fn accepts_an_empty_build_info() {
    let text = program(RELU, "y").replace(
        "program(1.3)\n",
        "program(1.3)\n[buildInfo = dict<string, string>({})]\n",
    );
    assert!(parse_program(&text).unwrap().build_info.is_empty());
}

#[test]
fn unknown_op_suggests_the_closest_name() {
    let body =
        "        tensor<fp16, [1, 4, 1, 8]> y = matmull(x = x, y = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "matmull",
        "unknown op `matmull`; did you mean `matmul`?",
    );
}

#[test]
fn unknown_and_duplicate_arguments() {
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = relu(input = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "input",
        "unknown argument `input` of relu; `relu` takes `x`",
    );
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = add(x = x, yy = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "yy",
        "unknown argument `yy` of add; did you mean `y`?",
    );
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = relu(x = x, x = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "x = x)",
        "argument `x` of relu is given twice",
    );
}

#[test]
fn missing_required_argument() {
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = add(x = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "add",
        "add is missing required argument `y`",
    );
}

#[test]
fn param_arguments_must_name_consts() {
    let body =
        "        tensor<fp16, [1, 4, 1, 8]> y = softmax(axis = x, x = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "x, x",
        "argument `axis` of softmax must name a const, but `x` is a function input",
    );
    let body =
        "        tensor<fp16, [1, 4, 1, 8]> r = relu(x = x)[name = string(\"r\")];\n        \
                tensor<fp16, [1, 4, 1, 8]> y = softmax(axis = r, x = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        5,
        "r, x",
        "but `r` is computed by relu",
    );
}

#[test]
fn inline_literals_are_rejected_with_the_reason() {
    let body = "        tensor<fp16, [1, 1, 4, 4]> y = matmul(transpose_x = bool(false), x = x, y = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "bool(false)",
        "argument `transpose_x` of matmul must name a const (the ANE compiler rejects inline literals)",
    );
    let body =
        "        tensor<fp16, [1, 4, 1, 8]> y = add(x = x, y = fp16(1.0))[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "fp16(1.0)",
        "argument `y` of add must name a value, not an inline literal",
    );
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = matmul(transpose_x = true, x = x, y = x)[name = string(\"y\")];\n";
    assert_error_at(&program(body, "y"), 4, "true", "must name a const");
}

#[test]
fn tuples_only_where_the_op_takes_them() {
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = relu(x = (x, x))[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "(x, x)",
        "argument `x` of relu takes one value, not a tuple",
    );
    let body = "        int32 ax = const()[name = string(\"ax\"), val = int32(1)];\n        \
                tensor<fp16, [1, 8, 1, 8]> y = concat(axis = ax, values = x)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        5,
        "x)",
        "argument `values` of concat takes a tuple; write `values = (a, b)`",
    );
    let body = "        int32 ax = const()[name = string(\"ax\"), val = int32(1)];\n        \
                tensor<fp16, [1, 8, 1, 8]> y = concat(axis = ax, values = ())[name = string(\"y\")];\n";
    assert_error_at(&program(body, "y"), 5, "()", "is an empty tuple");
}

#[test]
fn undefined_names() {
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = relu(x = xx)[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        4,
        "xx",
        "argument `x` of relu names value `xx` is not defined; did you mean `x`?",
    );
    // A statement cannot use its own output.
    let body = "        tensor<fp16, [1, 4, 1, 8]> y = relu(x = y)[name = string(\"y\")];\n";
    assert_error_at(&program(body, "y"), 4, "y)", "value `y` is not defined");
    let body = "        int32 ax = const()[name = string(\"ax\"), val = int32(1)];\n        \
                tensor<fp16, [1, 8, 1, 8]> y = concat(axis = ax, values = (x, q))[name = string(\"y\")];\n";
    assert_error_at(
        &program(body, "y"),
        5,
        "q)",
        "names value `q` is not defined",
    );
}

#[test]
fn duplicate_values_and_labels() {
    let body = "        tensor<fp16, [1, 4, 1, 8]> x = relu(x = x)[name = string(\"r\")];\n";
    assert_error_at(
        &program(body, "x"),
        4,
        "x =",
        "value `x` is already defined at line 3, column 49",
    );
    let body = format!(
        "{RELU}        tensor<fp16, [1, 4, 1, 8]> z = relu(x = x)[name = string(\"y\")];\n"
    );
    assert_error_at(
        &program(&body, "z"),
        5,
        "string(\"y\")",
        "label \"y\" is already used by the op at line 4, column 59",
    );
}

#[test]
fn literal_types_must_agree_with_declarations() {
    let body = "        tensor<int32, [4]> s = const()[name = string(\"s\"), val = tensor<int32, [4]>([1, 2])];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "[1, 2]",
        "tensor<int32, [4]> needs 4 elements, but the list has 2",
    );
    let body = "        tensor<int32, [4]> s = const()[name = string(\"s\"), val = tensor<int32, [2]>([1, 2])];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "tensor<int32, [2]>",
        "`val` has type tensor<int32, [2]>, but `s` is declared as tensor<int32, [4]>",
    );
    let body = "        tensor<fp16, [4, 8]> w = const()[name = string(\"w\"), val = tensor<fp32, [4, 8]>(BLOBFILE(path = string(\"w.bin\"), offset = uint64(64)))];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "tensor<fp32",
        "`val` has type tensor<fp32, [4, 8]>, but `w` is declared as tensor<fp16, [4, 8]>",
    );
    let body = "        int32 g = const()[name = string(\"g\"), val = fp16(1)];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "fp16(1)",
        "`val` has type fp16, but `g` is declared as int32",
    );
    let body = "        int8 z = const()[name = string(\"z\"), val = int8(200)];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "200",
        "int8 literal `200` is out of range -128..=127",
    );
}

#[test]
fn attributes_are_checked() {
    let body = "        int32 g = const()[name = string(\"g\")];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "const",
        "const \"g\" is missing attribute `val`",
    );
    let body = "        int32 g = const()[val = int32(1)];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "const",
        "const has no `name` attribute",
    );
    let body = "        int32 g = const()[name = string(\"g\"), vall = int32(1)];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "vall",
        "unknown attribute `vall` of const; did you mean `val`?",
    );
    let body = "        int32 g = const()[name = string(\"g\"), val = int32(1), val = int32(2)];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "val = int32(2)",
        "attribute `val` of const is given twice",
    );
    let body = "        int32 g = const()[name = int32(3), val = int32(1)];\n";
    assert_error_at(
        &program(&format!("{body}{RELU}"), "y"),
        4,
        "int32(3)",
        "attribute `name` must be a string",
    );
}

#[test]
fn returned_names_must_exist() {
    let text = program(RELU, "y, yy");
    assert_error_at(
        &text,
        5,
        "yy",
        "returned value `yy` is not defined; did you mean `y`?",
    );
    assert_error_at(
        &program(RELU, ""),
        5,
        "()",
        "function `main` returns nothing",
    );
}

#[test]
fn shapes_must_be_static() {
    let text = program(RELU, "y").replace("[1, 4, 1, 8]> x", "[1, ?, 1, 8]> x");
    assert_error_at(
        &text,
        3,
        "?",
        "dimension `?` is not allowed: the ANE compiles static shapes only",
    );
}

#[test]
fn function_inputs_must_be_tensors() {
    let text = program(RELU, "y").replace(
        "tensor<fp16, [1, 4, 1, 8]> x)",
        "fp16 s, tensor<fp16, [1, 4, 1, 8]> x)",
    );
    assert_error_at(&text, 3, "fp16 s", "function input `s` must be a tensor");
}

#[test]
fn type_errors_from_validation_point_at_the_statement() {
    // The syntax is fine, but relu cannot change the shape: the type checker rejects it and
    // the parser reports the statement's position.
    let body = "        tensor<fp16, [1, 4, 1, 4]> y = relu(x = x)[name = string(\"y\")];\n";
    let text = program(body, "y");
    match parse_program(&text) {
        Err(MilError::Parse {
            line,
            column,
            message,
        }) => {
            assert_eq!((line, column), (4, 9), "{message}");
            assert!(message.starts_with("op `y` (relu): "), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn program_structure_errors() {
    let text = program(RELU, "y").replace("program(1.3)", "programme(1.3)");
    assert_error_at(
        &text,
        1,
        "programme",
        "expected `program` at the start of the text",
    );
    let text = program(RELU, "y") + "extra";
    assert_error_at(
        &text,
        7,
        "extra",
        "expected end of input after the closing `}` of the program",
    );
    let func = "    func main<ios18>(tensor<fp16, [4]> a) {\n        tensor<fp16, [4]> b = relu(x = a)[name = string(\"b\")];\n    } -> (b);\n";
    let text = format!("program(1.3)\n{{\n{func}{func}}}\n");
    assert_error_at(&text, 6, "func", "function `main` is defined twice");
    let text = program(RELU, "y")
        .replace("(name", "name")
        .replace("[name = string(\"y\")];", "[name = string(\"y\")]");
    assert_error_at(
        &text,
        5,
        "}",
        "expected `;` to end the statement, found `}`",
    );
}

#[test]
fn labels_may_differ_from_value_names_and_attributes_come_in_any_order() {
    let body = "        fp16 e = const()[val = fp16(0x1p-3), name = string(\"eps\")];\n\
                \x20       tensor<fp16, [1, 4, 1, 8]> y = mul(y = e, x = x)[name = string(\"scaled\")];\n";
    let p = parse_program(&program(body, "y")).unwrap();
    let ops = &p.functions[0].ops;
    assert_eq!(ops[0].label, "eps");
    assert_eq!(
        ops[0].attrs,
        [(
            "val".to_string(),
            Literal::Scalar(Scalar::Fp16(half::f16::from_f32(0.125)))
        )]
    );
    assert_eq!(
        ops[0].outputs[0].ty,
        crate::types::Type::Scalar(DType::Fp16)
    );
    let names: Vec<&str> = ops[1].args.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["y", "x"], "arguments keep their written order");
}
