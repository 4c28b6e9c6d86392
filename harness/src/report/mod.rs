//! Reports: the terminal table, `report.md`, `report.json`, `junit.xml`, and
//! the canonical outcome matrix that the snapshots in `reports/snapshots/` pin.
//!
//! Everything here is made from [`RunRecord`]s, one per (scenario, pool) run.
//! Rows are scenarios and columns are pools, both in the order they first
//! appear in [`Report::runs`]. The canonical matrix is the exception: it is
//! sorted, so that runs finishing in a different order change nothing.
//!
//! Under `run --repeat N` (N > 1) a cell holds N runs: the table, the
//! matrix and JUnit show its distribution of verdicts and whether it held
//! ([`crate::judge::stability`]); a single run's report reads as it always did.

pub mod export;
pub mod timeline;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use serde::{Deserialize, Serialize};

use crate::judge::oracle;
use crate::judge::stability::{CellStats, Stability};
use crate::judge::verdict::{ExitRecord, RunRecord, Verdict};
use crate::protocol::ErrorName;
use crate::run::interrupt::Interruption;
use crate::target::Target;

/// Everything one invocation of the harness found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// The seed every random choice of the invocation came from; `--seed` replays it.
    pub seed: u64,
    /// How OOM was brought about: `cgroup-v1`, `cgroup-v2`, `rss-watchdog: <why>`
    /// (each run's mechanism, distinct ones joined by `; `), or `none`.
    pub oom_mechanism: String,
    /// `poolchaos`, `rustc`, `kernel`, ...: what the results depend on.
    pub versions: BTreeMap<String, String>,
    pub runs: Vec<RunRecord>,
    pub elapsed_ms: u64,
    /// Runs per cell (`--repeat`): 1 unless repeated.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeat: u32,
    /// Under `--repeat`: each cell's distribution of verdicts and whether it held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<CellStats>,
    /// What a SIGINT or SIGTERM cut short, if one did: `runs` holds what finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interruption>,
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The marker of a run whose verdict is not the expected one.
const MISMATCH: &str = "✗";

impl Report {
    /// Whether every run came to the verdict its scenario expects (skipped
    /// runs break none: they are counted apart, [`Report::skipped`]).
    pub fn all_as_expected(&self) -> bool {
        self.runs.iter().all(RunRecord::as_expected)
    }

    /// How many runs were skipped: never a pass.
    pub fn skipped(&self) -> usize {
        self.runs.iter().filter(|r| r.verdict == Verdict::Skipped).count()
    }

    /// Every cell's runs counted, in table order.
    pub fn cell_stats(&self) -> Vec<CellStats> {
        let pools = self.pools();
        let scenarios = self.scenarios();
        let cells = scenarios.iter().flat_map(|s| pools.iter().map(move |p| self.cell(s, p)));
        cells.filter_map(|runs| CellStats::of(&runs)).collect()
    }

    /// How many cells came to one verdict that is not the expected one.
    pub fn wrong(&self) -> usize {
        self.cell_stats().iter().filter(|c| c.stability == Stability::Wrong).count()
    }

    /// How many cells came to more than one verdict across their repeats.
    pub fn unstable(&self) -> usize {
        self.cell_stats().iter().filter(|c| c.stability == Stability::Unstable).count()
    }

    fn repeated(&self) -> bool {
        self.repeat > 1
    }

    /// Where runs are held to a peer's own test: "matches the peer's own
    /// expectation: N of M", then a line per run that does not.
    pub fn peer_lines(&self) -> Vec<String> {
        let checked: Vec<(&RunRecord, &crate::judge::verdict::PeerCheck)> =
            self.runs.iter().filter_map(|r| r.peer.as_ref().map(|p| (r, p))).collect();
        if checked.is_empty() {
            return Vec::new();
        }
        let met = checked.iter().filter(|(_, p)| p.matched).count();
        let mut lines = vec![format!("matches the peer's own expectation: {met} of {}", checked.len())];
        for (run, peer) in checked.iter().filter(|(_, p)| !p.matched) {
            let error = peer.error.map(|k| format!(" with {k}")).unwrap_or_default();
            let got: Vec<String> = run.errors.keys().map(ErrorName::to_string).collect();
            lines.push(format!(
                "  {} × {}: the peer's {} expects {} ({}{error}); got {} {:?}",
                run.scenario, run.pool, peer.test, peer.raises, peer.verdict, run.verdict, got
            ));
        }
        lines
    }

    /// The terminal table, without colour codes (for snapshots and logs).
    ///
    /// A row per scenario, a column per pool, each cell the verdict (a cell
    /// whose verdict is not the expected one reads `hung ✗ (expected
    /// completed)`); then a summary line; then the diagnosis of every run
    /// that did not meet its expectation and of every hung run.
    pub fn table(&self) -> String {
        self.render_table(false)
    }

    /// The terminal table with ANSI colour codes, whatever the output.
    pub fn table_ansi(&self) -> String {
        self.render_table(true)
    }

    /// Writes the terminal table, styled, to `out`. Pass an
    /// [`anstream::AutoStream`] (`&mut anstream::stdout()`): it keeps the
    /// colours on a terminal and strips them otherwise (and honours `NO_COLOR`
    /// and `CLICOLOR_FORCE`). A raw writer gets the ANSI codes as they are.
    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.table_ansi().as_bytes())?;
        out.flush()
    }

    /// `report.md`: what was run and with what, the outcome matrix, the runs
    /// that did not go as expected, then a section per run.
    pub fn markdown(&self) -> String {
        let mut md = self.header_md();
        md += &self.matrix_md();
        md += "## Not as expected\n\n";
        md += &self.not_as_expected_md();
        // A section per run.
        md += "## Runs\n";
        for scenario in self.scenarios() {
            let _ = writeln!(md, "\n### {scenario}");
            for run in self.ordered_runs().into_iter().filter(|r| r.scenario == scenario) {
                md += "\n";
                md += &run_md(run);
            }
        }
        let peers = self.peer_lines();
        if !peers.is_empty() {
            md += "\n## The peers' own expectations\n\n```\n";
            md += &peers.join("\n");
            md += "\n```\n";
        }
        md
    }

    /// The top of `report.md`: how many runs (or cells) were as expected,
    /// the seed, the OOM mechanism, the time, the versions.
    fn header_md(&self) -> String {
        let mut md = String::new();
        let skipped = self.skipped();
        let expected = self.runs.iter().filter(|r| r.as_expected()).count() - skipped;
        let _ = writeln!(md, "# poolchaos report\n");
        let skipped = if skipped > 0 { format!(" · **{skipped} skipped** (not a pass)") } else { String::new() };
        let held = if self.repeated() {
            let cells = self.cell_stats();
            let stable = cells.iter().filter(|c| c.stability == Stability::Stable).count();
            format!(
                "**{stable} of {} cells stable and as expected** ({} runs each; {} unstable, {} wrong)",
                cells.len(),
                self.repeat,
                self.unstable(),
                self.wrong()
            )
        } else {
            format!("**{expected} of {} runs as expected**", self.runs.len())
        };
        let _ = writeln!(
            md,
            "{held}{skipped} · seed `{}` · OOM mechanism `{}` · {}\n",
            self.seed,
            self.oom_mechanism,
            human_ms(self.elapsed_ms),
        );
        if let Some(interrupted) = &self.interrupted {
            let _ = writeln!(md, "**{interrupted}.**\n");
        }
        if !self.versions.is_empty() {
            md += "| component | version |\n|---|---|\n";
            for (name, version) in &self.versions {
                let _ = writeln!(md, "| {} | `{}` |", cell_md(name), cell_md(version));
            }
            md += "\n";
        }
        let _ = writeln!(md, "Run again with `--seed {}` to replay the same plans.\n", self.seed);
        md
    }

    /// The outcome matrix of `report.md`, each cell linking to its run.
    fn matrix_md(&self) -> String {
        let mut md = String::from("## Outcome matrix\n\n");
        md += "Which pool survives which fault: a row per scenario, a column per pool. \
               🟢 completed · 🟡 failed loudly or owner killed · 🔴 hung, lost or leaked · \
               **✗** not the verdict the scenario expects. Each cell links to its run.\n\n";
        let pools = self.pools();
        let names: Vec<String> = pools.iter().map(|p| cell_md(&p.name())).collect();
        let _ = writeln!(md, "| scenario | style | {} |", names.join(" | "));
        let _ = writeln!(md, "|---|---|{}", "---|".repeat(pools.len()));
        for scenario in self.scenarios() {
            let mut row = format!("| {} | {} |", cell_md(scenario), cell_md(&self.style_of(scenario)));
            for pool in &pools {
                let runs = self.cell(scenario, pool);
                let text = if let Some(stats) = CellStats::of(&runs).filter(|_| self.repeated()) {
                    let text = match stats.stability {
                        Stability::Stable => stats.text(MISMATCH),
                        _ => format!("**{}**", stats.text(MISMATCH)),
                    };
                    format!("[{} {text}]({})", verdict_dot(stats.worst()), anchor_link(runs[0]))
                } else if runs.is_empty() {
                    "·".to_string()
                } else {
                    runs.iter()
                        .map(|r| format!("[{}]({})", verdict_md(r), anchor_link(r)))
                        .collect::<Vec<_>>()
                        .join("<br>")
                };
                let _ = write!(row, " {text} |");
            }
            md += &row;
            md += "\n";
        }
        let _ = writeln!(md, "\nVerdicts: {}.\n", self.verdict_counts_text(" · "));
        md
    }

    /// The runs (under `--repeat`, the cells) not as expected, for `report.md`.
    fn not_as_expected_md(&self) -> String {
        if self.repeated() {
            return self.cells_not_held_md();
        }
        let mismatches: Vec<&RunRecord> = self.runs.iter().filter(|r| !r.as_expected()).collect();
        if mismatches.is_empty() {
            return "Every run came to the verdict its scenario expects.\n\n".into();
        }
        let mut md = String::new();
        for run in &mismatches {
            let _ = writeln!(
                md,
                "- [{} × {}]({}): **{}**, expected {}",
                run.scenario,
                run.pool,
                anchor_link(run),
                run.verdict,
                expected_name(run),
            );
        }
        md + "\n"
    }

    /// The cells that did not hold, for `report.md` under `--repeat`.
    fn cells_not_held_md(&self) -> String {
        let mut md = String::new();
        for stats in self.cell_stats().iter().filter(|c| c.stability != Stability::Stable) {
            let first = self.cell(&stats.scenario, &stats.pool)[0];
            let _ = writeln!(
                md,
                "- [{} × {}]({}): **{}**: {}, expected {}",
                stats.scenario,
                stats.pool,
                anchor_link(first),
                stats.stability,
                stats.distribution(),
                expected_name(first),
            );
        }
        if md.is_empty() {
            "Every cell came to the verdict its scenario expects, every time.\n\n".into()
        } else {
            md + "\n"
        }
    }

    /// `report.json`: the report itself, pretty-printed.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// `junit.xml`: a test suite per scenario, a test case `<scenario>::<pool>`
    /// per run, failing when the verdict is not the expected one (the failure
    /// carries the verdict, the expectation and the diagnosis).
    pub fn junit(&self) -> String {
        use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

        let mut junit = quick_junit::Report::new("poolchaos");
        junit.set_time(Duration::from_millis(self.elapsed_ms));
        for scenario in self.scenarios() {
            let mut suite = TestSuite::new(scenario);
            suite.add_property(Property::new("seed", self.seed.to_string()));
            suite.add_property(Property::new("oom-mechanism", self.oom_mechanism.as_str()));
            suite.add_property(Property::new("style", self.style_of(scenario)));
            if let Some(interrupted) = &self.interrupted {
                suite.add_property(Property::new("interrupted", interrupted.to_string()));
            }
            let mut time = 0;
            if self.repeated() {
                for stats in self.cell_stats().iter().filter(|c| c.scenario == scenario) {
                    let case = self.junit_cell(stats);
                    time += case.time.map_or(0, |t| t.as_millis() as u64);
                    suite.add_test_case(case);
                }
                suite.set_time(Duration::from_millis(time));
                junit.add_test_suite(suite);
                continue;
            }
            for run in self.ordered_runs().into_iter().filter(|r| r.scenario == scenario) {
                time += run.elapsed_ms;
                let status = if run.verdict == Verdict::Skipped {
                    let mut status = TestCaseStatus::skipped();
                    status.set_message(run.diagnosis.join("; "));
                    status
                } else if run.as_expected() {
                    TestCaseStatus::success()
                } else {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(format!("{}, expected {}", run.verdict, expected_name(run)))
                        .set_type(run.verdict.name())
                        .set_description(run_text(run));
                    status
                };
                let mut case = TestCase::new(format!("{}::{}", run.scenario, run.pool), status);
                case.set_classname(format!("poolchaos.{}", run.scenario))
                    .set_time(Duration::from_millis(run.elapsed_ms));
                if run.as_expected() && (run.verdict == Verdict::Hung || !run.diagnosis.is_empty()) {
                    case.set_system_out(run_text(run));
                }
                suite.add_test_case(case);
            }
            suite.set_time(Duration::from_millis(time));
            junit.add_test_suite(suite);
        }
        junit.to_string().expect("a JUnit report always serializes")
    }

    /// A repeated cell as one JUnit test case, the way nextest reports a
    /// test it retried: stable and as expected, a pass; wrong, a failure;
    /// unstable, a *flaky* pass (a `flakyFailure` per repeat not as
    /// expected, or with no expectation per repeat unlike the first) where
    /// some repeat was as expected, else a failure with a `rerunFailure` per
    /// other repeat.
    fn junit_cell(&self, stats: &CellStats) -> quick_junit::TestCase {
        use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestRerun};

        let runs = self.cell(&stats.scenario, &stats.pool);
        let rerun = |run: &RunRecord| {
            let mut rerun = TestRerun::new(NonSuccessKind::Failure);
            rerun
                .set_message(format!(
                    "repeat {}: {}, expected {}",
                    run.repeat.unwrap_or(1),
                    run.verdict,
                    expected_name(run)
                ))
                .set_type(run.verdict.name())
                .set_time(Duration::from_millis(run.elapsed_ms))
                .set_description(run_text(run));
            rerun
        };
        let message = format!("{}: {}, expected {}", stats.stability, stats.distribution(), expected_name(runs[0]));
        let status = match stats.stability {
            _ if stats.verdicts.keys().all(|v| *v == Verdict::Skipped) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(runs[0].diagnosis.join("; "));
                status
            }
            Stability::Stable => TestCaseStatus::success(),
            Stability::Unstable if runs.iter().any(|r| r.as_expected()) => {
                // The repeats not as expected; with no expectation to miss, those that differ from the first.
                let all_met = runs.iter().all(|r| r.as_expected());
                let odd = |r: &&&RunRecord| if all_met { r.verdict != runs[0].verdict } else { !r.as_expected() };
                let mut status = TestCaseStatus::success();
                status.add_reruns(runs.iter().filter(odd).map(|r| rerun(r)));
                status
            }
            Stability::Wrong | Stability::Unstable => {
                let first = runs.iter().find(|r| !r.as_expected()).copied().unwrap_or(runs[0]);
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(message.clone())
                    .set_type(stats.stability.to_string())
                    .set_description(run_text(first));
                status.add_reruns(runs.iter().filter(|r| !std::ptr::eq(**r, first)).map(|r| rerun(r)));
                status
            }
        };
        let mut case = TestCase::new(format!("{}::{}", stats.scenario, stats.pool), status);
        case.set_classname(format!("poolchaos.{}", stats.scenario))
            .set_time(Duration::from_millis(runs.iter().map(|r| r.elapsed_ms).sum()));
        case.set_system_out(message);
        case
    }

    /// Writes `report.md`, `report.json` and `junit.xml` into `dir`, creating it.
    pub fn write_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        std::fs::write(dir.join("report.json"), self.json() + "\n")?;
        std::fs::write(dir.join("junit.xml"), self.junit())?;
        Ok(())
    }

    /// The canonical outcome matrix: a line per (scenario, pool), sorted, with
    /// the verdict, the expectation, what the tasks got (per kind, counted)
    /// and the fault kinds. Nothing that changes between runs of the same
    /// code: no timings, pids, paths, diagnosis or leak details. Where the
    /// count depends on timing (a hung run, a kill storm, a pool that breaks
    /// whole, so that what finished before the death varies) it holds the
    /// error kinds alone.
    pub fn canonical(&self) -> String {
        let mut out =
            String::from("# scenario × pool: verdict (expectation) | tasks: outcomes by kind | fault kinds\n");
        let mut runs: Vec<&RunRecord> = self.runs.iter().collect();
        runs.sort_by_cached_key(|r| (r.scenario.clone(), r.pool.name()));
        for run in runs {
            let verdict = match run.expected {
                None => format!("{} (no expectation)", run.verdict),
                Some(e) if e == run.verdict => format!("{} (as expected)", run.verdict),
                Some(e) => format!("{} (expected {e}) {MISMATCH}", run.verdict),
            };
            let breaks_whole = oracle::design(&run.pool).fails_bystanders;
            let storm = run.faults.iter().any(|f| f.storm);
            let tasks = if run.verdict == Verdict::NotApplicable {
                format!("tasks {} | not run", run.tasks.total)
            } else if run.verdict == Verdict::Hung || storm {
                // The errors delivered before the deadline, a storm's victims: timing, not behaviour.
                format!("tasks {} | errors: -", run.tasks.total)
            } else if breaks_whole {
                let names: Vec<String> = run.errors.keys().map(ErrorName::to_string).collect();
                format!("tasks {} | errors: {}", run.tasks.total, list_or_dash(&names))
            } else {
                format!("tasks {}: {}", run.tasks.total, outcome_counts(run))
            };
            let mut faults: Vec<&String> = run.faults.iter().map(|f| &f.kind).collect();
            faults.sort();
            faults.dedup();
            let _ = writeln!(
                out,
                "{} × {}: {verdict} | {tasks} | faults: {}",
                run.scenario,
                run.pool,
                list_or_dash(&faults)
            );
        }
        out
    }

    // ---- helpers -------------------------------------------------------

    /// Scenarios in the order of first appearance.
    fn scenarios(&self) -> Vec<&str> {
        first_appearance(self.runs.iter().map(|r| r.scenario.as_str()))
    }

    /// Pools in the order of first appearance.
    fn pools(&self) -> Vec<&Target> {
        first_appearance(self.runs.iter().map(|r| &r.pool))
    }

    fn cell(&self, scenario: &str, pool: &Target) -> Vec<&RunRecord> {
        self.runs.iter().filter(|r| r.scenario == scenario && &r.pool == pool).collect()
    }

    /// The runs in table order: by scenario, then by pool.
    fn ordered_runs(&self) -> Vec<&RunRecord> {
        let pools = self.pools();
        let mut runs = Vec::with_capacity(self.runs.len());
        for scenario in self.scenarios() {
            for pool in &pools {
                runs.extend(self.cell(scenario, pool));
            }
        }
        runs
    }

    /// The call style(s) of a scenario's runs.
    fn style_of(&self, scenario: &str) -> String {
        first_appearance(self.runs.iter().filter(|r| r.scenario == scenario).map(|r| r.style.name())).join(", ")
    }

    fn verdict_counts_text(&self, sep: &str) -> String {
        let mut counts: BTreeMap<Verdict, usize> = BTreeMap::new();
        for run in &self.runs {
            *counts.entry(run.verdict).or_default() += 1;
        }
        if counts.is_empty() {
            return "none".to_string();
        }
        counts.iter().map(|(v, n)| format!("{v} {n}")).collect::<Vec<_>>().join(sep)
    }

    fn render_table(&self, colour: bool) -> String {
        let paint = |style: Style, text: &str| {
            if colour { format!("{style}{text}{style:#}") } else { text.to_string() }
        };
        let mut out = self.grid(&paint);
        // The summary line.
        out += "\n";
        if self.repeated() {
            out += &self.repeated_summary(&paint);
        } else {
            out += &self.summary(&paint);
        }
        if let Some(interrupted) = &self.interrupted {
            let style = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
            let _ = writeln!(out, "{}", paint(style, &interrupted.to_string()));
        }
        if !self.versions.is_empty() {
            let versions: Vec<String> = self.versions.iter().map(|(name, v)| format!("{name} {v}")).collect();
            let _ = writeln!(out, "{}", paint(Style::new().dimmed(), &format!("versions: {}", versions.join(" · "))));
        }
        out += &self.diagnoses(&paint);
        let peers = self.peer_lines();
        if !peers.is_empty() {
            out += "\n";
            for line in peers {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// The table's rows of cells, as (text, style) pieces: a row per scenario.
    fn table_rows(&self) -> Vec<Vec<(String, Style)>> {
        let pools = self.pools();
        let mut rows = Vec::new();
        for scenario in self.scenarios() {
            let mut row = vec![(scenario.to_string(), Style::new()), (self.style_of(scenario), Style::new().dimmed())];
            for pool in &pools {
                let runs = self.cell(scenario, pool);
                let Some(stats) = CellStats::of(&runs) else {
                    row.push(("·".to_string(), Style::new().dimmed()));
                    continue;
                };
                let text = if self.repeated() {
                    stats.text(MISMATCH)
                } else {
                    runs.iter().map(|r| verdict_cell(r)).collect::<Vec<_>>().join(" / ")
                };
                let mut style = verdict_style(stats.worst());
                if stats.stability == Stability::Unstable && self.repeated() {
                    style = Style::new().fg_color(Some(AnsiColor::Magenta.into()));
                }
                if runs.iter().any(|r| !r.as_expected()) {
                    style = style.bold();
                }
                row.push((text, style));
            }
            rows.push(row);
        }
        rows
    }

    /// The table itself: the header, a rule, the rows, in columns as wide as their plain text.
    fn grid(&self, paint: &dyn Fn(Style, &str) -> String) -> String {
        let header: Vec<String> =
            ["scenario", "style"].into_iter().map(String::from).chain(self.pools().iter().map(|p| p.name())).collect();
        let rows = self.table_rows();
        let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
        for row in &rows {
            for (i, (text, _)) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(text));
            }
        }
        let mut out = String::new();
        let last = widths.len() - 1;
        let pad = |out: &mut String, i: usize, text_width: usize| {
            if i < last {
                out.push_str(&" ".repeat(widths[i] - text_width + 2));
            }
        };
        for (i, h) in header.iter().enumerate() {
            out += &paint(Style::new().bold(), h);
            pad(&mut out, i, width(h));
        }
        out += "\n";
        for (i, w) in widths.iter().enumerate() {
            out += &"─".repeat(*w);
            pad(&mut out, i, *w);
        }
        out += "\n";
        for row in &rows {
            for (i, (text, style)) in row.iter().enumerate() {
                out += &paint(*style, text);
                pad(&mut out, i, width(text));
            }
            out += "\n";
        }
        out
    }

    /// The diagnosis of every run that needs a look (under `--repeat`, of
    /// each cell's first run of each verdict).
    fn diagnoses(&self, paint: &dyn Fn(Style, &str) -> String) -> String {
        let mut out = String::new();
        let mut shown: BTreeSet<(&str, &Target, Verdict)> = BTreeSet::new();
        for run in self.ordered_runs() {
            if run.as_expected() && run.verdict != Verdict::Hung {
                continue;
            }
            if !shown.insert((&run.scenario, &run.pool, run.verdict)) {
                continue;
            }
            out += "\n";
            let repeat = run.repeat.map(|r| format!(" (repeat {r} of {})", self.repeat)).unwrap_or_default();
            let title = format!("{} × {}: {}{repeat}", run.scenario, run.pool, verdict_cell(run));
            let style = if run.as_expected() { verdict_style(run.verdict) } else { verdict_style(run.verdict).bold() };
            out += &paint(style, &title);
            out += "\n";
            if run.diagnosis.is_empty() && run.leaks.is_empty() {
                out += "  (no diagnosis)\n";
            }
            for line in &run.diagnosis {
                let _ = writeln!(out, "  {line}");
            }
            for leak in &run.leaks {
                let _ = writeln!(out, "  left behind: {leak}");
            }
            if let Some(events) = &run.events {
                out += &paint(Style::new().dimmed(), &format!("  events: {events}"));
                out += "\n";
            }
        }
        out
    }

    /// The summary line of a single run per cell.
    fn summary(&self, paint: &dyn Fn(Style, &str) -> String) -> String {
        let mut out = String::new();
        let total = self.runs.len();
        let skipped = self.skipped();
        let met = self.runs.iter().filter(|r| r.as_expected()).count() - skipped;
        let _ = write!(out, "{total} run{}: ", if total == 1 { "" } else { "s" });
        out += &paint(Style::new().fg_color(Some(AnsiColor::Green.into())), &format!("{met} as expected"));
        if met + skipped < total {
            out += ", ";
            let style = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
            out += &paint(style, &format!("{} not {MISMATCH}", total - met - skipped));
        }
        out += &skipped_text(skipped, "", paint);
        out + &self.summary_tail()
    }

    /// The end of either summary line: the verdicts, seed, OOM mechanism, time.
    fn summary_tail(&self) -> String {
        let counts = self.verdict_counts_text(", ");
        format!(" · {counts} · seed {} · OOM: {} · {}\n", self.seed, self.oom_mechanism, human_ms(self.elapsed_ms))
    }

    /// The summary line under `--repeat`: cells, not runs.
    fn repeated_summary(&self, paint: &dyn Fn(Style, &str) -> String) -> String {
        let cells = self.cell_stats();
        let count = |s: Stability| cells.iter().filter(|c| c.stability == s).count();
        let mut out = format!("{} cells × {} runs: ", cells.len(), self.repeat);
        out += &paint(
            Style::new().fg_color(Some(AnsiColor::Green.into())),
            &format!("{} stable", count(Stability::Stable)),
        );
        for (n, what, colour) in [
            (count(Stability::Wrong), format!("wrong {MISMATCH}"), AnsiColor::Red),
            (count(Stability::Unstable), "unstable".to_string(), AnsiColor::Magenta),
        ] {
            if n > 0 {
                out += ", ";
                out += &paint(Style::new().fg_color(Some(colour.into())).bold(), &format!("{n} {what}"));
            }
        }
        out += &skipped_text(self.skipped(), " runs", paint);
        out + &self.summary_tail()
    }
}

/// `, N skipped (not a pass)` in yellow, or nothing when none was.
fn skipped_text(skipped: usize, unit: &str, paint: &dyn Fn(Style, &str) -> String) -> String {
    if skipped == 0 {
        return String::new();
    }
    let style = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
    format!(", {}", paint(style, &format!("{skipped}{unit} skipped (not a pass)")))
}

/// The versions a report carries: poolchaos, the kernel, and what the
/// probe says of the Python, loky, pebble and billiard the adapters run
/// with (`missing` for a package the project's Python cannot import; no
/// Python entries if it cannot run, or was not waited for).
pub fn versions(python: PythonProbe, wait: bool) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("poolchaos".into(), env!("CARGO_PKG_VERSION").into());
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        v.insert("kernel".into(), kernel.trim().into());
    }
    v.extend(python.finish(wait).unwrap_or_default());
    v
}

/// The project's Python asked for its versions, started before the runs so
/// that its interpreter's start (about 100 ms) is not added to them; killed
/// and reaped when dropped unanswered.
pub struct PythonProbe {
    child: Option<std::process::Child>,
}

impl PythonProbe {
    pub fn start(root: &Path) -> PythonProbe {
        const SCRIPT: &str = "import sys, json, importlib.metadata as m\n\
            v = {'python': sys.version.split()[0]}\n\
            for p in ('loky', 'pebble', 'billiard'):\n    \
                try: v[p] = m.version(p)\n    \
                except Exception: v[p] = 'missing'\n\
            print(json.dumps(v))";
        let child = std::process::Command::new(crate::target::python(root, None))
            .args(["-c", SCRIPT])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok();
        PythonProbe { child }
    }

    /// Its answer, waited for (at most 20 s) if `wait`: an interrupted
    /// harness does not wait for an interpreter.
    fn finish(mut self, wait: bool) -> Option<BTreeMap<String, String>> {
        let mut child = self.child.take()?;
        // A few lines of output fit in the pipe: wait for the exit, with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while wait && matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        serde_json::from_reader(child.stdout.take()?).ok()
    }
}

impl Drop for PythonProbe {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Distinct items, in the order of first appearance.
fn first_appearance<'a, T: Ord + ?Sized>(items: impl Iterator<Item = &'a T>) -> Vec<&'a T> {
    let mut seen = BTreeSet::new();
    items.filter(|item| seen.insert(*item)).collect()
}

/// Display width of a cell: every character we print is one column wide.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// Green for completed, yellow for the loud endings, red for the bad ones.
fn verdict_style(verdict: Verdict) -> Style {
    let colour = match verdict {
        Verdict::Completed => AnsiColor::Green,
        Verdict::Skipped | Verdict::NotApplicable => AnsiColor::BrightBlack,
        Verdict::FailedLoudly | Verdict::OwnerKilled => AnsiColor::Yellow,
        Verdict::OwnerOom | Verdict::Lost | Verdict::Hung | Verdict::Leaked | Verdict::TargetError => AnsiColor::Red,
    };
    Style::new().fg_color(Some(colour.into()))
}

fn verdict_dot(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Completed => "🟢",
        Verdict::Skipped => "⚪",
        Verdict::NotApplicable => "➖",
        Verdict::FailedLoudly | Verdict::OwnerKilled => "🟡",
        Verdict::OwnerOom | Verdict::Lost | Verdict::Hung | Verdict::Leaked => "🔴",
        Verdict::TargetError => "⛔",
    }
}

fn expected_name(run: &RunRecord) -> &'static str {
    run.expected.map_or("nothing in particular", Verdict::name)
}

/// `hung`, or `hung ✗ (expected completed)`; `, simulated OOM` after a
/// run whose OOM kills were the RSS watchdog's.
fn verdict_cell(run: &RunRecord) -> String {
    let cell = match run.expected {
        Some(expected) if expected != run.verdict => {
            format!("{} {MISMATCH} (expected {expected})", run.verdict)
        }
        _ => run.verdict.to_string(),
    };
    cell + simulated_oom(run)
}

/// The mark of a run whose OOM kills the RSS watchdog made, not the kernel.
fn simulated_oom(run: &RunRecord) -> &'static str {
    if run.oom_kills > 0 && run.mechanism.as_ref().is_some_and(|m| m.simulated_oom()) { " (simulated OOM)" } else { "" }
}

/// `OOM kills: 1`, or `OOM kills: 1 (simulated: the RSS watchdog's SIGKILL, not the kernel's)`.
fn oom_kills_text(run: &RunRecord) -> String {
    match simulated_oom(run) {
        "" => run.oom_kills.to_string(),
        _ => format!("{} (simulated: the RSS watchdog's SIGKILL, not the kernel's)", run.oom_kills),
    }
}

/// `🔴 hung`, or `🔴 **hung ✗** (expected completed)`.
fn verdict_md(run: &RunRecord) -> String {
    let dot = verdict_dot(run.verdict);
    let cell = match run.expected {
        Some(expected) if expected != run.verdict => {
            format!("{dot} **{} {MISMATCH}** (expected {expected})", run.verdict)
        }
        _ => format!("{dot} {}", run.verdict),
    };
    cell + simulated_oom(run)
}

/// The id of a run's section in `report.md`.
fn anchor(run: &RunRecord) -> String {
    let slug = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
            .collect()
    };
    let repeat = run.repeat.map(|r| format!("--{r}")).unwrap_or_default();
    format!("{}--{}{repeat}", slug(&run.scenario), slug(&run.pool.name()))
}

fn anchor_link(run: &RunRecord) -> String {
    format!("#{}", anchor(run))
}

/// Text for a Markdown table cell.
fn cell_md(text: &str) -> String {
    text.replace('|', "\\|")
}

fn list_or_dash(items: &[impl AsRef<str>]) -> String {
    let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    if items.is_empty() { "-".to_string() } else { items.join(", ") }
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {:02} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// What the tasks got, counted per kind: `ok 6, task 2`, `ok 3, worker-lost(sigkill) 1, untouched 1, lost 1`.
fn outcome_counts(run: &RunRecord) -> String {
    let t = &run.tasks;
    let mut parts = vec![format!("ok {}", t.ok)];
    parts.extend(run.errors.iter().map(|(kind, n)| format!("{kind} {n}")));
    for (n, what) in [(t.bystanders, "untouched"), (t.lost, "lost"), (t.duplicated, "duplicated"), (t.wrong, "wrong")] {
        if n > 0 {
            parts.push(format!("{what} {n}"));
        }
    }
    parts.join(", ")
}

/// `4: 3 ok, 1 lost` (the zero counts left out), or `4, all ok`.
fn tasks_text(run: &RunRecord) -> String {
    let t = &run.tasks;
    if t.ok == t.total {
        return format!("{}, all ok", t.total);
    }
    let parts: Vec<String> =
        [(t.ok, "ok"), (t.failed, "failed"), (t.lost, "lost"), (t.duplicated, "duplicated"), (t.wrong, "wrong")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
    format!("{}: {}", t.total, parts.join(", "))
}

/// `SIGKILL (9)`.
fn signal_name(signal: i32) -> String {
    format!("{} ({signal})", crate::protocol::signal_name(signal))
}

fn exit_how(exit: &ExitRecord) -> String {
    match (exit.signal, exit.code) {
        (Some(signal), _) => signal_name(signal),
        (None, Some(code)) => format!("exit {code}"),
        (None, None) => "unknown".to_string(),
    }
}

/// Worker exits grouped by how they ended: `SIGKILL (9) ×1 (pid 4242); exit 0 ×3`.
/// Pids are listed for the abnormal endings only, at most eight of them.
fn exits_text(exits: &[ExitRecord]) -> String {
    let mut groups: BTreeMap<(bool, String), Vec<u32>> = BTreeMap::new();
    for exit in exits {
        let normal = exit.signal.is_none() && exit.code == Some(0);
        groups.entry((normal, exit_how(exit))).or_default().push(exit.pid);
    }
    groups
        .into_iter()
        .map(|((normal, how), pids)| {
            let mut text = format!("{how} ×{}", pids.len());
            if !normal {
                let shown: Vec<String> = pids.iter().take(8).map(u32::to_string).collect();
                let more = if pids.len() > 8 { format!(", … {} more", pids.len() - 8) } else { String::new() };
                let _ = write!(text, " (pid{} {}{more})", if pids.len() == 1 { "" } else { "s" }, shown.join(", "));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A run in plain text (for JUnit): verdict, expectation, counts, diagnosis.
fn run_text(run: &RunRecord) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "scenario: {} (style {})", run.scenario, run.style.name());
    let _ = writeln!(text, "pool: {}", run.pool);
    let _ = writeln!(text, "verdict: {}, expected {}", run.verdict, expected_name(run));
    let _ = writeln!(text, "tasks: {}", tasks_text(run));
    if !run.errors.is_empty() {
        let errors: Vec<String> = run.errors.iter().map(|(kind, n)| format!("{kind} ×{n}")).collect();
        let _ = writeln!(text, "errors: {}", errors.join(", "));
    }
    for fault in &run.faults {
        let _ = writeln!(text, "fault: {} at {}", fault.kind, fault.at);
    }
    if !run.worker_exits.is_empty() {
        let _ = writeln!(text, "worker exits: {}", exits_text(&run.worker_exits));
    }
    if let Some(mechanism) = &run.mechanism {
        let _ = writeln!(text, "sandbox: {mechanism}");
    }
    if run.oom_kills > 0 {
        let _ = writeln!(text, "OOM kills: {}", oom_kills_text(run));
    }
    for leak in &run.leaks {
        let _ = writeln!(text, "left behind: {leak}");
    }
    if !run.diagnosis.is_empty() {
        text += "diagnosis:\n";
        for line in &run.diagnosis {
            let _ = writeln!(text, "  {line}");
        }
    }
    if let Some(events) = &run.events {
        let _ = writeln!(text, "events: {events}");
    }
    text
}

/// A run's section of `report.md`.
fn run_md(run: &RunRecord) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "<a id=\"{}\"></a>\n", anchor(run));
    let repeat = run.repeat.map(|r| format!(" (repeat {r})")).unwrap_or_default();
    let _ = writeln!(md, "#### {}{repeat} — {}\n", run.pool, verdict_md(run));
    let expectation = match run.expected {
        None => "none".to_string(),
        Some(e) if e == run.verdict => format!("{e} ✓"),
        Some(e) => format!("{e} — **not met**"),
    };
    let _ = writeln!(md, "- **Expected:** {expectation}");
    let _ = writeln!(md, "- **Call style:** `{}`", run.style.name());
    let _ = writeln!(md, "- **Tasks:** {}", tasks_text(run));
    if run.faults.is_empty() {
        md += "- **Faults:** none\n";
    } else {
        md += "- **Faults:**\n";
        for fault in &run.faults {
            let _ = writeln!(md, "  - `{}` at {}", fault.kind, fault.at);
        }
    }
    if run.errors.is_empty() {
        md += "- **Errors:** none\n";
    } else {
        let errors: Vec<String> = run.errors.iter().map(|(kind, n)| format!("`{kind}` ×{n}")).collect();
        let _ = writeln!(md, "- **Errors:** {}", errors.join(", "));
    }
    if run.worker_exits.is_empty() {
        md += "- **Worker exits:** none\n";
    } else {
        let _ = writeln!(md, "- **Worker exits:** {}", exits_text(&run.worker_exits));
    }
    if let Some(mechanism) = &run.mechanism {
        let _ = writeln!(md, "- **Sandbox:** `{mechanism}`");
    }
    if run.oom_kills > 0 {
        let _ = writeln!(md, "- **OOM kills:** {}", oom_kills_text(run));
    }
    if !run.leaks.is_empty() {
        md += "- **Left behind:**\n";
        for leak in &run.leaks {
            let _ = writeln!(md, "  - {leak}");
        }
    }
    let _ = writeln!(md, "- **Time:** {}", human_ms(run.elapsed_ms));
    if let Some(events) = &run.events {
        let _ = writeln!(md, "- **Event log:** [`{events}`]({})", events.replace(' ', "%20"));
        if !run.as_expected() {
            let svg = crate::report::timeline::path_for(events);
            let _ = writeln!(md, "- **Timeline:** [`{svg}`]({})", svg.replace(' ', "%20"));
        }
    }
    if !run.diagnosis.is_empty() {
        md += "\nDiagnosis:\n\n```text\n";
        for line in &run.diagnosis {
            let _ = writeln!(md, "{line}");
        }
        md += "```\n";
    }
    md
}
