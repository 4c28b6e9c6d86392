//! Targets: what a run drives. One of our Rust pools (run by `poolchaos
//! owner`), or an external program that speaks the same owner protocol (see
//! [`crate::events`] and `docs/targets.md`): the Python adapters under
//! `targets/python/`, or any command given with `--target`.
//!
//! The harness treats both alike: same sandbox, nemesis, deadline, checker
//! and report. Only the command line differs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pools::{CallStyle, PoolKind};

/// The Python targets, and the call style each one fixes (`None`: the scenario's).
pub const PYTHON: [(&str, Option<CallStyle>); 11] = [
    ("py-pool-map", Some(CallStyle::Map)),
    ("py-pool-apply", Some(CallStyle::Apply)),
    ("py-pool-apply-async", Some(CallStyle::ApplyAsync)),
    ("py-pool-map-async", Some(CallStyle::MapAsync)),
    ("py-seed-polling", Some(CallStyle::Map)),
    ("py-seed-polling-async", Some(CallStyle::MapAsync)),
    ("py-process-per-task", None),
    ("py-ppe", None),
    ("py-loky", None),
    ("py-pebble", None),
    ("py-billiard", Some(CallStyle::ApplyAsync)),
];

/// What a run drives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// One of our pools.
    Pool(PoolKind),
    /// A Python adapter from `targets/python/`, by name.
    Python(&'static str),
    /// A command the user gave (`--target 'CMD ...'`).
    Command(String),
}

impl Target {
    pub fn name(&self) -> String {
        match self {
            Target::Pool(kind) => kind.to_string(),
            Target::Python(name) => name.to_string(),
            Target::Command(_) => "custom".to_string(),
        }
    }

    /// The call style the target fixes, if it does.
    pub fn style(&self) -> Option<CallStyle> {
        match self {
            Target::Python(name) => PYTHON.iter().find(|(n, _)| n == name).and_then(|(_, s)| *s),
            _ => None,
        }
    }

    /// Every known target, ours first.
    pub fn all() -> Vec<Target> {
        PoolKind::ALL.into_iter().map(Target::Pool).chain(PYTHON.iter().map(|(n, _)| Target::Python(n))).collect()
    }

    /// Whether `pattern` (a name, or a name with `*` wildcards) names this target.
    pub fn matches(&self, pattern: &str) -> bool {
        glob(pattern, &self.name())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((name, _)) = PYTHON.iter().find(|(n, _)| *n == s) {
            return Ok(Target::Python(name));
        }
        s.parse::<PoolKind>().map(Target::Pool).map_err(|_| {
            let names: Vec<String> = Target::all().iter().map(Target::name).collect();
            format!("unknown pool {s:?} (known: {})", names.join(", "))
        })
    }
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head) && (0..=name.len() - head.len()).any(|i| glob(rest, &name[head.len() + i..]))
        }
    }
}

/// Where the project's files are: `POOLCHAOS_ROOT`, else the current
/// directory if it holds `targets/`, else two levels above the executable
/// (`target/<profile>/poolchaos`).
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("POOLCHAOS_ROOT") {
        return root.into();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("targets").is_dir() {
        return cwd;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(Path::to_owned))
        .filter(|root| root.join("targets").is_dir())
        .unwrap_or(cwd)
}

/// The Python to run adapters with: the project's venv if there is one.
pub fn python(root: &Path) -> PathBuf {
    let venv = root.join(".venv/bin/python");
    if venv.exists() { venv } else { PathBuf::from("python3") }
}

/// How to start a target: the program, its arguments, extra environment.
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Target {
    /// The command that runs this target's owner side. `exe` is `poolchaos`.
    pub fn launch(&self, exe: &Path, root: &Path) -> Launch {
        match self {
            Target::Pool(_) => Launch { program: exe.to_owned(), args: vec!["owner".into()], env: Vec::new() },
            Target::Python(name) => Launch {
                program: python(root),
                args: vec!["-m".into(), "poolchaos_targets".into(), name.to_string()],
                env: vec![("PYTHONPATH".into(), root.join("targets/python").display().to_string())],
            },
            Target::Command(line) => {
                let mut words = line.split_whitespace().map(String::from);
                let program = words.next().unwrap_or_default();
                Launch { program: program.into(), args: words.collect(), env: Vec::new() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        assert_eq!("py-ppe".parse::<Target>(), Ok(Target::Python("py-ppe")));
        assert_eq!("naive".parse::<Target>(), Ok(Target::Pool(PoolKind::Naive)));
        assert!("py-nope".parse::<Target>().unwrap_err().contains("py-pool-map"));
        let py: Vec<String> = Target::all().iter().filter(|t| t.matches("py-*")).map(Target::name).collect();
        assert_eq!(py.len(), PYTHON.len());
        assert!(Target::Python("py-pool-map-async").matches("py-*-async"));
        assert!(!Target::Pool(PoolKind::Naive).matches("py-*"));
        assert_eq!(Target::Python("py-pool-apply").style(), Some(CallStyle::Apply));
    }
}
