//! Chat templates: a model's own Jinja `chat_template` (its `chat_template.jinja` or the
//! field of its `tokenizer_config.json`), rendered like `transformers`' `apply_chat_template`,
//! or a documented plain format for models without one.
//!
//! The template sees `messages`, `tools` (when given), `add_generation_prompt`, every
//! `*_token` of the tokenizer config (`bos_token`, `eos_token`, ...) and `raise_exception(msg)`.
//! As in `transformers`, blocks are trimmed (`trim_blocks`, `lstrip_blocks`), `break` and
//! `continue` work, and Python string and dict methods (`.strip()`, `.startswith()`,
//! `.items()`, ...) are available. Not provided: `strftime_now` (templates that test
//! `strftime_now is defined` fall back to their fixed date) and the `{% generation %}` tag.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value};

use crate::error::{DataError, Result};
use crate::source::{CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG_FILE};

/// The format used when the model has no chat template: each message as `role: content` and
/// a newline, assistant messages followed by the end-of-sequence token, the whole preceded by
/// the beginning-of-sequence token; the generation prompt is `assistant: `.
pub const PLAIN_TEMPLATE: &str =
    "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n\
{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}\
{% if add_generation_prompt %}assistant: {% endif %}";

const NAME: &str = "chat_template";

/// A compiled chat template with the special-token spellings it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, ... as the template sees them.
    special_tokens: BTreeMap<String, String>,
    origin: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special_tokens", &self.special_tokens)
            .field("origin", &self.origin)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` with the given special tokens (`("bos_token", "<s>")`, ...); a syntax
    /// error names the line.
    pub fn new(source: &str, special_tokens: BTreeMap<String, String>) -> Result<Self> {
        Self::compile(source.to_string(), special_tokens, String::new())
    }

    /// The chat template of the tokenizer in `dir`, found as `transformers` finds it:
    /// [`CHAT_TEMPLATE_FILE`] when present (what `save_pretrained` writes since transformers
    /// 4.50; it takes priority), else the `chat_template` of [`TOKENIZER_CONFIG_FILE`], whose
    /// `*_token` entries are the special tokens either way. `None` when neither has one. A list
    /// of named templates (the newer form) gives its `default` one.
    pub fn from_tokenizer_dir(dir: &Path) -> Result<Option<Self>> {
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        let origin = format!(" in {}", config_path.display());
        let bad = |message: String| DataError::Template {
            origin: origin.clone(),
            message,
        };
        let config: Map<String, Value> = if config_path.is_file() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| DataError::io(&config_path, e))?;
            serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "{TOKENIZER_CONFIG_FILE} is not a JSON object ({e})"
                ))
            })?
        } else {
            Map::new()
        };
        let file = dir.join(CHAT_TEMPLATE_FILE);
        if file.is_file() {
            let source = std::fs::read_to_string(&file).map_err(|e| DataError::io(&file, e))?;
            let origin = format!(" in {}", file.display());
            return Self::compile(source, special_tokens_of(&config), origin).map(Some);
        }
        let source = match config.get("chat_template") {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .ok_or_else(|| {
                    bad("`chat_template` is a list without a \"default\" entry; add one".into())
                })?
                .to_string(),
            Some(_) => return Err(bad("`chat_template` must be a string".into())),
        };
        Self::compile(source, special_tokens_of(&config), origin).map(Some)
    }

    /// The plain format ([`PLAIN_TEMPLATE`]) with the given special tokens.
    pub fn plain(special_tokens: BTreeMap<String, String>) -> Self {
        Self::compile(
            PLAIN_TEMPLATE.to_string(),
            special_tokens,
            " (plain format)".into(),
        )
        .expect("the built-in plain template compiles")
    }

    fn compile(
        source: String,
        special_tokens: BTreeMap<String, String>,
        origin: String,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(NAME, source)
            .map_err(|e| DataError::Template {
                origin: origin.clone(),
                message: format!("does not compile: {e:#}; fix the template"),
            })?;
        Ok(ChatTemplate {
            env,
            special_tokens,
            origin,
        })
    }

    /// The special-token spellings the template is rendered with.
    pub fn special_tokens(&self) -> &BTreeMap<String, String> {
        &self.special_tokens
    }

    /// Renders `messages` (and `tools`), ending with the assistant header when
    /// `add_generation_prompt`. A `raise_exception` in the template becomes an error with its
    /// message (e.g. a template that requires alternating roles).
    pub fn render(
        &self,
        messages: &[Map<String, Value>],
        tools: Option<&Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut ctx: BTreeMap<&str, minijinja::Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.as_str(), minijinja::Value::from(v.as_str())))
            .collect();
        ctx.insert("messages", minijinja::Value::from_serialize(messages));
        ctx.insert("add_generation_prompt", add_generation_prompt.into());
        if let Some(tools) = tools {
            ctx.insert("tools", minijinja::Value::from_serialize(tools));
        }
        let template = self.env.get_template(NAME).map_err(|e| self.error(e))?;
        template.render(ctx).map_err(|e| self.error(e))
    }

    fn error(&self, e: minijinja::Error) -> DataError {
        let message = match e.kind() {
            ErrorKind::InvalidOperation => format!(
                "refused the conversation: {}; change the messages to what the template accepts",
                e.detail().unwrap_or("no reason given")
            ),
            _ => format!("failed to render: {e:#}"),
        };
        DataError::Template {
            origin: self.origin.clone(),
            message,
        }
    }
}

/// The `*_token` entries of a tokenizer config, as plain strings (`{"content": ...}` objects
/// are unwrapped, as `transformers` does).
fn special_tokens_of(config: &Map<String, Value>) -> BTreeMap<String, String> {
    config
        .iter()
        .filter(|(k, _)| k.ends_with("_token"))
        .filter_map(|(k, v)| {
            let spelling = match v {
                Value::String(s) => s.as_str(),
                Value::Object(o) => o.get("content")?.as_str()?,
                _ => return None,
            };
            Some((k.clone(), spelling.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(v: Value) -> Vec<Map<String, Value>> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn plain_format_is_role_colon_content() {
        let specials = BTreeMap::from([
            ("bos_token".to_string(), "<s>".to_string()),
            ("eos_token".to_string(), "</s>".to_string()),
        ]);
        let t = ChatTemplate::plain(specials);
        let m = messages(
            json!([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]),
        );
        assert_eq!(
            t.render(&m, None, false).unwrap(),
            "<s>user: hi\nassistant: yo\n</s>"
        );
        assert_eq!(
            t.render(&m[..1], None, true).unwrap(),
            "<s>user: hi\nassistant: "
        );
    }

    #[test]
    fn tokenizer_config_gives_template_and_unwrapped_special_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        let config = json!({
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['content'] | trim }}{% endfor %}{{ eos_token }}"
        });
        std::fs::write(&path, config.to_string()).unwrap();
        let t = ChatTemplate::from_tokenizer_dir(dir.path())
            .unwrap()
            .unwrap();
        let m = messages(json!([{"role": "user", "content": "  a  "}]));
        assert_eq!(t.render(&m, None, false).unwrap(), "<s>a</s>");
        std::fs::write(&path, "{\"eos_token\": \"</s>\"}").unwrap();
        assert!(ChatTemplate::from_tokenizer_dir(dir.path())
            .unwrap()
            .is_none());
    }

    /// transformers' `save_pretrained` writes the template to its own file, which wins over
    /// the config's field; the special tokens still come from the config.
    #[test]
    fn chat_template_jinja_wins_over_the_config_field() {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({"eos_token": "</s>", "chat_template": "from the config"});
        std::fs::write(dir.path().join("tokenizer_config.json"), config.to_string()).unwrap();
        std::fs::write(
            dir.path().join(CHAT_TEMPLATE_FILE),
            "{% for m in messages %}[{{ m.content }}]{% endfor %}{{ eos_token }}",
        )
        .unwrap();
        let t = ChatTemplate::from_tokenizer_dir(dir.path())
            .unwrap()
            .unwrap();
        let m = messages(json!([{"role": "user", "content": "a"}]));
        assert_eq!(t.render(&m, None, false).unwrap(), "[a]</s>");
        std::fs::remove_file(dir.path().join("tokenizer_config.json")).unwrap();
        let t = ChatTemplate::from_tokenizer_dir(dir.path())
            .unwrap()
            .unwrap();
        assert_eq!(t.render(&m, None, false).unwrap(), "[a]");
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_clear() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user') }}{% endif %}ok",
            BTreeMap::new(),
        )
        .unwrap();
        let m = messages(json!([{"role": "assistant", "content": "x"}]));
        let err = t.render(&m, None, false).unwrap_err().to_string();
        assert!(
            err.contains("Conversation roles must start with user"),
            "{err}"
        );
        let err = ChatTemplate::new("{% for %}", BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not compile"), "{err}");
    }

    #[test]
    fn python_string_methods_and_loop_controls_work() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}{{ m.content.strip().upper() }}{% if m.content.startswith(' x') %}!{% endif %}{% endfor %}{{ tools | length }}",
            BTreeMap::new(),
        )
        .unwrap();
        let m = messages(
            json!([{"role": "user", "content": " xa "}, {"role": "user", "content": "b"}, {"role": "user", "content": "c"}]),
        );
        let tools = json!([{"type": "function"}]);
        assert_eq!(t.render(&m, Some(&tools), false).unwrap(), "XA!B1");
    }
}
