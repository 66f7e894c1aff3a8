//! Fine-tuning examples from JSON Lines, in the three forms mlx-lm accepts:
//! `{"text": ...}`, `{"prompt": ..., "completion": ...}` and
//! `{"messages": [{"role": ..., "content": ...}, ...], "tools": [...]}`.
//!
//! As in mlx-lm, the first line of a file decides its form (prompt/completion wins over
//! messages, messages over text) and every other line must have the same fields; other keys
//! are ignored. A data directory holds `train.jsonl`, `valid.jsonl` and `test.jsonl`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{DataError, Result};

/// One fine-tuning example.
#[derive(Clone, Debug, PartialEq)]
pub enum Example {
    /// Plain text; every token counts in the loss.
    Text(String),
    /// A prompt and its completion; `--mask-prompt` counts only the completion.
    Completion {
        /// What the model is given.
        prompt: String,
        /// What it should answer.
        completion: String,
    },
    /// A conversation rendered with the chat template; `--mask-prompt` counts only assistant
    /// turns.
    Chat {
        /// The messages, each an object with a string `role` and a string `content` (or `null`
        /// content with `tool_calls`), passed to the template as they are.
        messages: Vec<Map<String, Value>>,
        /// The `tools` the template may describe, as given.
        tools: Option<Value>,
    },
}

/// The form of a file's examples, fixed by its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExampleKind {
    /// `{"text": ...}`.
    Text,
    /// `{"prompt": ..., "completion": ...}`.
    Completion,
    /// `{"messages": [...]}`.
    Chat,
}

impl ExampleKind {
    /// The kind of a record, by the keys it has (in mlx-lm's order of preference).
    fn of(record: &Map<String, Value>) -> Option<Self> {
        if record.contains_key("prompt") && record.contains_key("completion") {
            Some(ExampleKind::Completion)
        } else if record.contains_key("messages") {
            Some(ExampleKind::Chat)
        } else if record.contains_key("text") {
            Some(ExampleKind::Text)
        } else {
            None
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ExampleKind::Text => "a {\"text\"} example",
            ExampleKind::Completion => "a {\"prompt\", \"completion\"} example",
            ExampleKind::Chat => "a {\"messages\"} example",
        }
    }
}

/// The examples of one `.jsonl` file, all of one [`ExampleKind`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleFile {
    /// Where they came from.
    pub path: PathBuf,
    /// Their form.
    pub kind: ExampleKind,
    /// The examples, in file order (blank lines skipped).
    pub examples: Vec<Example>,
}

impl ExampleFile {
    /// Reads `path`; a malformed line is an error naming the file, line and field.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(path, &text)
    }

    /// Parses JSON Lines `text` read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let mut kind = None;
        let mut examples = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| DataError::Jsonl {
                path: path.to_path_buf(),
                line: i + 1,
                message,
            };
            let record = match serde_json::from_str::<Value>(line) {
                Ok(Value::Object(map)) => map,
                Ok(_) => {
                    return Err(bad(
                        "is not a JSON object; each line must be one {...} example".into(),
                    ))
                }
                Err(e) => return Err(bad(format!("is not valid JSON ({e})"))),
            };
            let kind =
                *match &mut kind {
                    Some(k) => k,
                    slot @ None => slot.insert(ExampleKind::of(&record).ok_or_else(|| {
                        bad("has none of the fields `text`, `prompt` + `completion` or `messages`; \
                         write {\"text\": ...}, {\"prompt\": ..., \"completion\": ...} or \
                         {\"messages\": [...]}"
                        .into())
                    })?),
                };
            examples.push(parse_record(&record, kind).map_err(bad)?);
        }
        let kind = kind.ok_or_else(|| DataError::Jsonl {
            path: path.to_path_buf(),
            line: 0,
            message: "holds no examples; add one JSON object per line".into(),
        })?;
        Ok(ExampleFile {
            path: path.to_path_buf(),
            kind,
            examples,
        })
    }
}

/// One record as an example of `kind`, or what is wrong with which field.
fn parse_record(
    record: &Map<String, Value>,
    kind: ExampleKind,
) -> std::result::Result<Example, String> {
    let string = |field: &str| match record.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("field `{field}` must be a string")),
        None => Err(format!(
            "has no field `{field}`; the file's first line is {}, so every line must be",
            kind.describe()
        )),
    };
    match kind {
        ExampleKind::Text => Ok(Example::Text(string("text")?)),
        ExampleKind::Completion => Ok(Example::Completion {
            prompt: string("prompt")?,
            completion: string("completion")?,
        }),
        ExampleKind::Chat => {
            let items = match record.get("messages") {
                Some(Value::Array(items)) if !items.is_empty() => items,
                Some(Value::Array(_)) => {
                    return Err("field `messages` is empty; give at least one message".into())
                }
                Some(_) => {
                    return Err(
                        "field `messages` must be a list of {\"role\", \"content\"} objects".into(),
                    )
                }
                None => {
                    return Err(format!(
                    "has no field `messages`; the file's first line is {}, so every line must be",
                    kind.describe()
                ))
                }
            };
            let mut messages = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                let Value::Object(m) = item else {
                    return Err(format!(
                        "field `messages[{j}]` must be an object with `role` and `content`"
                    ));
                };
                if !matches!(m.get("role"), Some(Value::String(_))) {
                    return Err(format!("field `messages[{j}].role` must be a string such as \"user\" or \"assistant\""));
                }
                match m.get("content") {
                    Some(Value::String(_)) => {}
                    Some(Value::Null) | None if m.contains_key("tool_calls") => {}
                    _ => return Err(format!("field `messages[{j}].content` must be a string")),
                }
                messages.push(m.clone());
            }
            let tools = match record.get("tools") {
                None | Some(Value::Null) => None,
                Some(t @ Value::Array(_)) => Some(t.clone()),
                Some(_) => return Err("field `tools` must be a list of tool descriptions".into()),
            };
            Ok(Example::Chat { messages, tools })
        }
    }
}

/// The splits of an mlx-lm style data directory.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleSplits {
    /// `train.jsonl` (required).
    pub train: ExampleFile,
    /// `valid.jsonl`, if present.
    pub valid: Option<ExampleFile>,
}

impl ExampleSplits {
    /// Reads `dir/train.jsonl` and, when present, `valid.jsonl`; `test.jsonl` is for a final
    /// test and is not read, so a problem in it cannot stop a training run.
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let train = dir.join("train.jsonl");
        if !train.is_file() {
            return Err(DataError::Config(format!(
                "{} has no train.jsonl; a fine-tuning data directory holds train.jsonl and \
                 optionally valid.jsonl and test.jsonl, one JSON example per line",
                dir.display()
            )));
        }
        let optional = |name: &str| {
            let path = dir.join(name);
            path.is_file().then(|| ExampleFile::read(&path)).transpose()
        };
        Ok(ExampleSplits {
            train: ExampleFile::read(&train)?,
            valid: optional("valid.jsonl")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExampleFile> {
        ExampleFile::parse(Path::new("data/train.jsonl"), text)
    }

    #[test]
    fn the_first_line_fixes_the_form() {
        let f = parse("{\"prompt\": \"2+2=\", \"completion\": \"4\", \"text\": \"x\"}\n\n{\"prompt\": \"a\", \"completion\": \"b\"}\n").unwrap();
        assert_eq!(f.kind, ExampleKind::Completion);
        assert_eq!(f.examples.len(), 2);
        let f = parse("{\"text\": \"hello\"}").unwrap();
        assert_eq!(f.examples, vec![Example::Text("hello".into())]);
        let f = parse(
            r#"{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}"#,
        )
        .unwrap();
        let Example::Chat { messages, tools } = &f.examples[0] else {
            panic!()
        };
        assert_eq!(messages[0]["content"], "hi");
        assert!(tools.is_some());
    }

    #[test]
    fn a_bad_line_names_file_line_and_field() {
        let err = parse("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("data/train.jsonl") && err.contains("line 2") && err.contains("`text`"),
            "{err}"
        );
        let err = parse("{\"text\": \"a\"}\n{\"text\": 3}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("must be a string"),
            "{err}"
        );
        let err = parse("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n{\"messages\": [{\"role\": \"user\"}]}").unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("messages[0].content"),
            "{err}"
        );
        let err = parse("not json").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("not valid JSON"),
            "{err}"
        );
        let err = parse("{\"input\": 1}").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("prompt"), "{err}");
        assert!(parse("\n").unwrap_err().to_string().contains("no examples"));
    }

    #[test]
    fn a_data_dir_needs_train_and_may_have_valid_and_test() {
        let dir = tempfile::tempdir().unwrap();
        let err = ExampleSplits::read_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("train.jsonl"), "{err}");
        std::fs::write(dir.path().join("train.jsonl"), "{\"text\": \"a\"}\n").unwrap();
        std::fs::write(dir.path().join("valid.jsonl"), "{\"text\": \"b\"}\n").unwrap();
        let splits = ExampleSplits::read_dir(dir.path()).unwrap();
        assert_eq!(
            splits.valid.unwrap().examples,
            vec![Example::Text("b".into())]
        );
    }
}
