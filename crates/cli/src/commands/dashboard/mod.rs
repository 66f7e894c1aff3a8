//! `anetrain dashboard`: a full-screen terminal view of one or more runs, following their
//! `metrics.jsonl` live; also shown by `anetrain train --dashboard` while it trains.

mod state;
mod view;

#[cfg(test)]
mod tests;

pub use state::SAMPLE_FILE;

use anyhow::{bail, Context, Result};
use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use state::{App, Key, KeyAction, RunView};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How long the loop waits for a key before polling the metrics again.
const FRAME: Duration = Duration::from_millis(250);

#[derive(Args)]
pub struct DashboardArgs {
    /// Run directories (the --out of `anetrain train`); tab switches between them.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
}

/// Runs `anetrain dashboard`.
pub fn run(args: DashboardArgs) -> Result<ExitCode> {
    let runs = args
        .runs
        .iter()
        .map(|dir| RunView::open(dir))
        .collect::<Result<Vec<_>>>()?;
    require_terminal()?;
    let mut app = App::new(runs);
    with_terminal(|terminal| event_loop(terminal, &mut app, &AtomicBool::new(false)))?;
    Ok(ExitCode::SUCCESS)
}

/// The dashboard drawn on this terminal from a thread, while the caller trains.
pub struct LiveDashboard {
    /// Set by the trainer when it is done, to close the view.
    done: Arc<AtomicBool>,
    /// Set by the view when the user pressed q or Ctrl-C.
    quit: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl LiveDashboard {
    /// Starts following `run_dir` on this terminal, or says why it cannot.
    pub fn start(run_dir: &Path) -> Result<Self> {
        require_terminal()?;
        let run = RunView::open(run_dir)?;
        let done = Arc::new(AtomicBool::new(false));
        let quit = Arc::new(AtomicBool::new(false));
        let (thread_done, thread_quit) = (done.clone(), quit.clone());
        let thread = std::thread::spawn(move || {
            let mut app = App::new(vec![run]);
            with_terminal(|terminal| event_loop(terminal, &mut app, &thread_done))?;
            thread_quit.store(true, Ordering::SeqCst);
            Ok(())
        });
        Ok(LiveDashboard {
            done,
            quit,
            thread: Some(thread),
        })
    }

    /// Whether the user asked to stop (q or Ctrl-C in the view).
    pub fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }
}

impl Drop for LiveDashboard {
    /// Closes the view and gives the terminal back, so what is printed next is seen.
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("warning: the dashboard failed: {e:#}"),
                Err(_) => eprintln!("warning: the dashboard failed"),
            }
        }
    }
}

fn require_terminal() -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "the dashboard needs a terminal, but standard input or output is not one; run it in a \
             terminal (over SSH use `ssh -t`), or draw a picture with `anetrain plot RUN --out loss.png`"
        );
    }
    Ok(())
}

/// Runs `body` in the full-screen terminal, restoring the terminal afterwards whatever happens.
fn with_terminal(body: impl FnOnce(&mut DefaultTerminal) -> Result<()>) -> Result<()> {
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let result = body(&mut terminal);
    ratatui::restore();
    result
}

/// Redraws on every change, key or resize until q, or until `done` is set.
fn event_loop(terminal: &mut DefaultTerminal, app: &mut App, done: &AtomicBool) -> Result<()> {
    let mut dirty = true;
    while !done.load(Ordering::SeqCst) {
        dirty |= app.refresh();
        if dirty {
            terminal.draw(|frame| view::draw(frame, app, SystemTime::now()))?;
            dirty = false;
        }
        if !event::poll(FRAME)? {
            continue;
        }
        match event::read()? {
            Event::Key(k) if k.kind != KeyEventKind::Release => {
                if let Some(key) = key_of(k.code, k.modifiers) {
                    match app.key(key) {
                        KeyAction::Quit => return Ok(()),
                        KeyAction::Redraw => dirty = true,
                        KeyAction::Ignore => {}
                    }
                }
            }
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
    Ok(())
}

fn key_of(code: KeyCode, modifiers: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
        KeyCode::Char('l') => Key::LogScale,
        KeyCode::Tab => Key::NextRun,
        KeyCode::BackTab => Key::PrevRun,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Up => Key::ZoomIn,
        KeyCode::Down => Key::ZoomOut,
        _ => return None,
    })
}
