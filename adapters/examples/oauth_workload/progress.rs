//! The main job's progress: one bar per stack on a terminal (operations done
//! of the total, rate, ETA), or a few plain lines on stderr when it is not a
//! terminal (CI, a pipe), where redrawn bars would only litter the log.

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the bars are brought up to date.
const TICK: Duration = Duration::from_millis(100);

/// How often a plain line is printed while a stack runs.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// One bar per stack, all shown from the start; the stacks run one at a time.
pub(crate) struct Bars {
    multi: MultiProgress,
    bars: Vec<StackBar>,
}

impl Bars {
    /// Bars for `stacks`, each of `total` operations; bars on a terminal,
    /// plain lines otherwise.
    pub(crate) fn new(stacks: &[String], total: u64) -> Self {
        let plain = !std::io::stderr().is_terminal();
        let target = if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let width = stacks.iter().map(String::len).max().unwrap_or(0);
        let bars = stacks
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new(total).with_style(style(width, "")));
                bar.set_prefix(name.clone());
                bar.set_message("waiting");
                StackBar {
                    bar,
                    name: name.clone(),
                    plain,
                    width,
                }
            })
            .collect();
        Self { multi, bars }
    }

    /// The bar of the `i`-th stack given to [`Bars::new`].
    pub(crate) fn stack(&self, i: usize) -> &StackBar {
        &self.bars[i]
    }

    /// Leaves the bars on screen and moves below them (indicatif leaves the
    /// cursor at the end of the last bar).
    pub(crate) fn finish(self) {
        if !self.multi.is_hidden() {
            eprintln!();
        }
    }
}

/// The bar, with `figures` (a template part: the live rate and ETA, or the
/// run's final rate) after the count.
fn style(width: usize, figures: &str) -> ProgressStyle {
    let template = format!(
        "{{prefix:>{width}}} [{{bar:32}}] {{human_pos:>7}}/{{human_len}} ops  {figures}{{msg}}"
    );
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// While running: indicatif's rate and ETA.
const LIVE: &str = "{per_sec:0}  ETA {eta}  ";

/// One stack's bar (or its plain lines).
pub(crate) struct StackBar {
    bar: ProgressBar,
    name: String,
    plain: bool,
    /// The widest stack name, to align the bars.
    width: usize,
}

impl StackBar {
    /// Names what the stack is doing outside the timed run (setup, checks).
    pub(crate) fn phase(&self, what: &'static str) {
        if self.plain {
            eprintln!("{}: {what} ...", self.name);
        }
        self.bar.set_message(what);
    }

    /// Starts following `done` (operations finished so far) until
    /// [`Ticker::finish`]; the bar's rate and ETA count from now.
    pub(crate) fn start(&self, done: Arc<AtomicUsize>) -> Ticker {
        self.bar.reset();
        self.bar.set_style(style(self.width, LIVE));
        self.bar.set_message("running");
        let stop = Arc::new(AtomicBool::new(false));
        let (bar, name, plain, flag) = (
            self.bar.clone(),
            self.name.clone(),
            self.plain,
            stop.clone(),
        );
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut printed = start;
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(TICK);
                bar.set_position(done.load(Ordering::Relaxed) as u64);
                if plain && printed.elapsed() >= PLAIN_EVERY {
                    printed = Instant::now();
                    eprintln!("{}", plain_line(&name, &bar, start.elapsed()));
                }
            }
            bar.set_position(done.load(Ordering::Relaxed) as u64);
        });
        Ticker {
            stop,
            thread,
            bar: self.bar.clone(),
            name: self.name.clone(),
            plain: self.plain,
            width: self.width,
        }
    }

    /// The stack is done: the bar stays, saying so.
    pub(crate) fn done(&self) {
        if self.plain {
            eprintln!("{}: done", self.name);
        }
        self.bar.finish_with_message("done");
    }

    /// The stack failed: the bar stays where it stopped.
    pub(crate) fn failed(&self) {
        self.bar.abandon_with_message("failed");
    }
}

/// `name: 12,000 / 60,000 ops (20%), 15,321 ops/s, 0.8 s`
fn plain_line(name: &str, bar: &ProgressBar, elapsed: Duration) -> String {
    let done = bar.position();
    let total = bar.length().unwrap_or(0).max(1);
    let secs = elapsed.as_secs_f64();
    format!(
        "{name}: {done} / {total} ops ({:.0}%), {:.0} ops/s, {secs:.1} s",
        done as f64 * 100.0 / total as f64,
        done as f64 / secs.max(1e-9)
    )
}

/// Follows a stack's count from a plain thread until [`Ticker::finish`].
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
    bar: ProgressBar,
    name: String,
    plain: bool,
    width: usize,
}

impl Ticker {
    /// Stops following, after one last update; `elapsed` is the timed run,
    /// whose rate the bar shows from now on.
    pub(crate) fn finish(self, elapsed: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        if self.plain {
            eprintln!("{}", plain_line(&self.name, &self.bar, elapsed));
        }
        let secs = elapsed.as_secs_f64();
        let rate = self.bar.position() as f64 / secs.max(1e-9);
        let figures = format!("{} ops/s in {secs:.1} s  ", HumanCount(rate.round() as u64));
        self.bar.set_style(style(self.width, &figures));
    }
}
