//! `anetrain chat`: talk to a model the way it was fine-tuned: each line of stdin is a user
//! message, rendered with the rest of the chat through the model's chat template, and the
//! reply is printed as it is generated. Works with piped stdin as well as a terminal.

use super::device::{CapabilityArgs, DeviceArgs};
use super::generate::ModelArgs;
use super::sampling::SamplingArgs;
use anetrain_model::generate::{Chat, ChatEvent, ChatOptions, DEFAULT_CHAT_CONTEXT};
use anetrain_model::source::{LoadedModel, ModelTokenizer};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    talk: TalkArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    capabilities: CapabilityArgs,
}

/// The flags of a chat, shared by `chat` and `generate --chat`.
#[derive(Args, Clone, Debug)]
pub struct TalkArgs {
    /// A system message that opens the chat.
    #[arg(long)]
    system: Option<String>,
    /// Print each prompt exactly as the model sees it (rendered template) to stderr.
    #[arg(long)]
    show_prompt: bool,
    /// Tokens of chat (prompt plus reply) the model keeps; older exchanges are dropped
    /// beyond it [default: the model's max_seq_len, at most 2048].
    #[arg(long)]
    context: Option<usize>,
}

impl TalkArgs {
    /// Refuses chat flags given to a command that is not chatting.
    pub fn refuse_without_chat(&self) -> Result<()> {
        let given = [
            ("--system", self.system.is_some()),
            ("--show-prompt", self.show_prompt),
            ("--context", self.context.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
            bail!("{flag} applies to chats only; add --chat MESSAGE or use `anetrain chat`");
        }
        Ok(())
    }
}

/// Where `--show-prompt` frames a prompt on stderr.
pub const PROMPT_START: &str = "--- prompt ---";
/// The end of that frame.
pub const PROMPT_END: &str = "--- end of prompt ---";

/// Runs `anetrain chat`.
pub fn run(args: ChatArgs) -> Result<ExitCode> {
    args.sampling.options()?;
    let (model, tokenizer) = args.model.load(args.sampling.seed)?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("type a message and press Enter; Ctrl-D ends the chat");
    }
    let lines = stdin.lock().lines();
    talk(
        model,
        tokenizer,
        &args.talk,
        &args.sampling,
        args.device,
        args.capabilities.path(),
        lines.map(|l| l.context("reading stdin")),
    )
}

/// Answers each non-empty line of `messages` in one chat, printing each reply on stdout
/// followed by a newline.
pub fn talk(
    model: LoadedModel,
    tokenizer: Option<ModelTokenizer>,
    talk: &TalkArgs,
    sampling: &SamplingArgs,
    device: DeviceArgs,
    capabilities: Option<&Path>,
    messages: impl IntoIterator<Item = Result<String>>,
) -> Result<ExitCode> {
    let Some(tokenizer) = tokenizer else {
        bail!(
            "{} carries no tokenizer, and chatting needs one; pass --tokenizer (a tokenizer.json \
             with its tokenizer_config.json and any chat_template.jinja beside it, or byte)",
            model.description
        );
    };
    let template = tokenizer.source.chat_template()?;
    let context = talk
        .context
        .unwrap_or(model.config.max_seq_len.min(DEFAULT_CHAT_CONTEXT));
    let (device, why) = device.device.device_with(capabilities)?;
    eprintln!("model: {}\ndevice: {why}", model.description);
    eprintln!(
        "chat format: {}",
        if template.is_some() {
            "the model's chat template"
        } else {
            "plain (the tokenizer has no chat_template)"
        }
    );
    let options = ChatOptions {
        template,
        system: talk.system.clone(),
        context,
        max_tokens: sampling.max_tokens,
        sampling: sampling.options()?,
    };
    let mut chat = Chat::new(
        &model.config,
        model.params,
        device,
        tokenizer.tokenizer.as_ref(),
        options,
    )?;
    let mut out = std::io::stdout().lock();
    for message in messages {
        let message = message?;
        if message.trim().is_empty() {
            continue;
        }
        let mut failure: Option<std::io::Error> = None;
        let reply = chat.say(&message, |event| {
            let shown = match event {
                ChatEvent::Prompt(p) => {
                    if p.dropped > 0 {
                        eprintln!(
                            "note: dropped the {} oldest exchanges so the chat fits the context of {context} tokens",
                            p.dropped
                        );
                    }
                    if talk.show_prompt {
                        eprintln!("{PROMPT_START}\n{}\n{PROMPT_END}", p.text);
                    }
                    Ok(())
                }
                ChatEvent::Text(t) => write!(out, "{t}").and_then(|_| out.flush()),
            };
            shown.map_err(|e| failure = Some(e)).is_ok()
        })?;
        if let Some(e) = failure {
            return Err(e).context("printing the reply");
        }
        writeln!(out)?;
        eprintln!(
            "{} tokens, {:.1} tok/s (prompt {} tokens, prefill {:.0} ms)",
            reply.stats.generated_tokens,
            reply.stats.decode_tokens_per_s,
            reply.stats.prompt_tokens,
            reply.stats.prefill_ms
        );
    }
    Ok(ExitCode::SUCCESS)
}
