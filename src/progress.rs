//! Progress of long work: the build's counted steps (`  [n/total] what`) drive a bar on a
//! terminal (indicatif), with every log line printed above it; elsewhere (a log file, CI)
//! the lines are printed as they come, and `--quiet` prints none.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The log line of step `n` of `total` (1-based).
pub fn step_line(n: usize, total: usize, what: &str) -> String {
    format!("  [{n}/{total}] {what}")
}

/// The step a log line reports, if it is one: (n, total, what).
pub fn parse_step(line: &str) -> Option<(usize, usize, &str)> {
    let rest = line.strip_prefix("  [")?;
    let (count, what) = rest.split_once("] ")?;
    let (n, total) = count.split_once('/')?;
    Some((n.parse().ok()?, total.parse().ok()?, what))
}

pub struct Progress {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar when standard error is a terminal and not `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::hidden();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:28}] {pos}/{len} · eta {eta} · {wide_msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress { quiet, bar }
    }

    /// One log line: printed (above the bar, if any); a step also moves the bar.
    pub fn line(&self, line: &str) {
        if self.quiet {
            return;
        }
        let step = parse_step(line);
        let bar = match &self.bar {
            // Before the first step and after the last the bar is not drawn: plain lines.
            Some(bar) if !bar.is_finished() && (step.is_some() || !bar.is_hidden()) => bar,
            _ => {
                eprintln!("{line}");
                return;
            }
        };
        if let Some((n, total, what)) = step {
            if bar.is_hidden() || bar.length() != Some(total as u64) {
                // A new counted phase (the pairs, then feature visualization).
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.reset();
                bar.set_length(total as u64);
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            bar.set_position(n as u64);
            bar.set_message(what.to_string());
        }
        bar.println(line);
    }

    /// Takes the bar away before the final lines.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_read_back() {
        let l = step_line(3, 16, "lenet-mnist × five (0.2 s)");
        assert_eq!(parse_step(&l), Some((3, 16, "lenet-mnist × five (0.2 s)")));
        assert_eq!(parse_step("  units: lenet-mnist relu4 (84 units, 1.0 s)"), None);
        assert_eq!(parse_step("  [a/3] x"), None);
    }
}
