//! Targets: what a run drives. One of our Rust pools (run by `poolchaos
//! owner`), or an external program that speaks the same owner protocol (see
//! [`crate::run::events`] and `docs/targets.md`): the Python adapters under
//! `targets/python/`, or any command given with `--target`.
//!
//! The harness treats both alike: same sandbox, nemesis, deadline, checker
//! and report. Only the command line differs.
//!
//! A Python target can be run by another interpreter and start method than
//! its default: `py-pool-map@3.13/forkserver` is `py-pool-map` run by Python
//! 3.13 (from its own venv, `.venvs/3.13`, made by `targets/python/setup.sh
//! 3.13`) with workers started by forkserver. Either part may be left out.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::ValueEnum;

use pools::{CallStyle, PoolKind};

/// The Python targets: the call style each one fixes (`None`: the
/// scenario's), and the start methods it can be run with (`poolchaos_targets
/// --methods` says the same; a test holds the two sides together).
pub const PYTHON: [(&str, Option<CallStyle>, &[StartMethod]); 11] = [
    ("py-pool-map", Some(CallStyle::Map), &StartMethod::ALL),
    ("py-pool-apply", Some(CallStyle::Apply), &StartMethod::ALL),
    ("py-pool-apply-async", Some(CallStyle::ApplyAsync), &StartMethod::ALL),
    ("py-pool-map-async", Some(CallStyle::MapAsync), &StartMethod::ALL),
    ("py-seed-polling", Some(CallStyle::Map), &StartMethod::ALL),
    ("py-seed-polling-async", Some(CallStyle::MapAsync), &StartMethod::ALL),
    ("py-process-per-task", None, &StartMethod::ALL),
    ("py-ppe", None, &StartMethod::ALL),
    // loky's reusable executor refuses fork ("does not respect POSIX").
    ("py-loky", None, &[StartMethod::Forkserver, StartMethod::Spawn]),
    ("py-pebble", None, &StartMethod::ALL),
    ("py-billiard", Some(CallStyle::ApplyAsync), &StartMethod::ALL),
];

/// How a Python pool starts its workers (`multiprocessing`'s start methods,
/// which loky, pebble and billiard take too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum StartMethod {
    Fork,
    Forkserver,
    Spawn,
}

impl StartMethod {
    pub const ALL: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Forkserver, StartMethod::Spawn];

    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Forkserver => "forkserver",
            StartMethod::Spawn => "spawn",
        }
    }
}

/// A Python 3 version, `3.N`: the interpreter of the venv `.venvs/3.N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyVersion {
    pub minor: u8,
}

impl fmt::Display for PyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "3.{}", self.minor)
    }
}

impl FromStr for PyVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.strip_prefix("3.")
            .and_then(|minor| minor.parse().ok())
            .map(|minor| PyVersion { minor })
            .ok_or_else(|| format!("{s:?} is not a Python version like 3.12"))
    }
}

impl PyVersion {
    /// Where this version's venv is.
    pub fn venv(self, root: &Path) -> PathBuf {
        root.join(".venvs").join(self.to_string())
    }
}

/// A Python adapter from `targets/python/`, by name, run by the project's
/// default Python and the target's own start method unless it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PyTarget {
    pub name: &'static str,
    pub python: Option<PyVersion>,
    pub method: Option<StartMethod>,
}

/// What a run drives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// One of our pools.
    Pool(PoolKind),
    /// A Python adapter from `targets/python/`.
    Python(PyTarget),
    /// A command the user gave (`--target 'CMD ...'`), split into words as a shell would.
    Command(Vec<String>),
}

impl Target {
    /// The Python adapter `name` as it runs by default.
    pub const fn python(name: &'static str) -> Target {
        Target::Python(PyTarget { name, python: None, method: None })
    }

    pub fn name(&self) -> String {
        match self {
            Target::Pool(kind) => kind.to_string(),
            Target::Python(py) => {
                let mut name = py.name.to_string();
                if let Some(version) = py.python {
                    name += &format!("@{version}");
                }
                if let Some(method) = py.method {
                    name += &format!("/{}", method.as_str());
                }
                name
            }
            Target::Command(_) => "custom".to_string(),
        }
    }

    /// The target as it runs by default: a Python adapter without its
    /// version and start method; any other target itself.
    pub fn base(&self) -> Target {
        match self {
            Target::Python(py) => Target::python(py.name),
            other => other.clone(),
        }
    }

    /// This Python target run by `python` and started by `method` (`None`:
    /// the default); any other target unchanged.
    pub fn variant(&self, python: Option<PyVersion>, method: Option<StartMethod>) -> Target {
        match self {
            Target::Python(py) => Target::Python(PyTarget { name: py.name, python, method }),
            other => other.clone(),
        }
    }

    /// Whether the target can run with this start method (`None`: its own
    /// default, which every target can).
    pub fn has_method(&self, method: Option<StartMethod>) -> bool {
        match (self, method) {
            (_, None) => true,
            (Target::Python(py), Some(m)) => PYTHON.iter().any(|(n, _, methods)| *n == py.name && methods.contains(&m)),
            _ => false,
        }
    }

    /// The call style the target fixes, if it does.
    pub fn style(&self) -> Option<CallStyle> {
        match self {
            Target::Python(py) => PYTHON.iter().find(|(n, ..)| *n == py.name).and_then(|(_, s, _)| *s),
            _ => None,
        }
    }

    /// Every known target, ours first.
    pub fn all() -> Vec<Target> {
        PoolKind::ALL.into_iter().map(Target::Pool).chain(PYTHON.iter().map(|(n, ..)| Target::python(n))).collect()
    }

    /// Whether `pattern` (a name, or a name with `*` wildcards) names this
    /// target, by its whole name or its base's (`py-pool-map` names
    /// `py-pool-map@3.13/spawn` too).
    pub fn matches(&self, pattern: &str) -> bool {
        glob(pattern, &self.name()) || glob(pattern, &self.base().name())
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
        let (rest, method) = match s.rsplit_once('/') {
            Some((rest, method)) => {
                let method = StartMethod::from_str(method, false)
                    .map_err(|_| format!("{s:?}: unknown start method {method:?} (fork, forkserver or spawn)"))?;
                (rest, Some(method))
            }
            None => (s, None),
        };
        let (base, python) = match rest.split_once('@') {
            Some((base, version)) => (base, Some(version.parse::<PyVersion>().map_err(|e| format!("{s:?}: {e}"))?)),
            None => (rest, None),
        };
        if let Some((name, ..)) = PYTHON.iter().find(|(n, ..)| *n == base) {
            return Ok(Target::Python(PyTarget { name, python, method }));
        }
        if python.is_some() || method.is_some() {
            return Err(format!("{s:?}: only the Python targets (py-*) take a version or a start method"));
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

/// The Python to run adapters with: the project's venv if there is one
/// (`.venv`; for a given version, `.venvs/3.N`, which must exist), else the
/// venv's Python beside the harness (the wheel's `poolchaos` in a venv's
/// `bin/`), else `python3` from `PATH`.
pub fn python(root: &Path, version: Option<PyVersion>) -> PathBuf {
    if let Some(version) = version {
        return version.venv(root).join("bin/python");
    }
    let beside_exe = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("python")));
    [Some(root.join(".venv/bin/python")), beside_exe]
        .into_iter()
        .flatten()
        .find(|python| python.exists())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Whether `name` (in `/dev/shm`) is a named semaphore the targets' pools
/// make: multiprocessing's (`sem.mp-…`, kept under spawn and forkserver
/// until its finalizer runs) and loky's (`sem.loky-…`). For the cleanup of
/// what a dead harness left; a live run's semaphores are found by what its
/// processes hold ([`crate::run::sandbox::RunSemaphores`]), whatever their names.
pub fn pool_semaphore(name: &str) -> bool {
    name.starts_with("sem.mp-") || name.starts_with("sem.loky-")
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
            Target::Python(py) => {
                let mut args = vec!["-m".into(), "poolchaos_targets".into(), py.name.to_string()];
                if let Some(method) = py.method {
                    args.extend(["--start-method".into(), method.as_str().into()]);
                }
                Launch {
                    program: python(root, py.python),
                    args,
                    env: vec![("PYTHONPATH".into(), crate::install::adapter_dir(root).display().to_string())],
                }
            }
            Target::Command(words) => {
                let (program, args) = words.split_first().map_or((String::new(), &[][..]), |(p, a)| (p.clone(), a));
                // A user's adapter imports the protocol helpers from `poolchaos_targets`.
                let mut path = crate::install::adapter_dir(root).into_os_string();
                if let Some(theirs) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
                    path.push(":");
                    path.push(theirs);
                }
                Launch {
                    program: program.into(),
                    args: args.to_vec(),
                    env: vec![("PYTHONPATH".into(), path.to_string_lossy().into_owned())],
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        assert_eq!("py-ppe".parse::<Target>(), Ok(Target::python("py-ppe")));
        assert_eq!("naive".parse::<Target>(), Ok(Target::Pool(PoolKind::Naive)));
        assert!("py-nope".parse::<Target>().unwrap_err().contains("py-pool-map"));
        let py: Vec<String> = Target::all().iter().filter(|t| t.matches("py-*")).map(Target::name).collect();
        assert_eq!(py.len(), PYTHON.len());
        assert!(Target::python("py-pool-map-async").matches("py-*-async"));
        assert!(!Target::Pool(PoolKind::Naive).matches("py-*"));
        assert_eq!(Target::python("py-pool-apply").style(), Some(CallStyle::Apply));
    }

    #[test]
    fn knows_pool_semaphores() {
        assert!(pool_semaphore("sem.mp-018hr47q"));
        assert!(pool_semaphore("sem.loky-12-abc"));
        assert!(!pool_semaphore("sem.other"));
        assert!(!pool_semaphore("mp-x"));
    }

    #[test]
    fn versions_and_start_methods_in_the_name() {
        let v13 = Some(PyVersion { minor: 13 });
        let full = Target::python("py-pool-map").variant(v13, Some(StartMethod::Forkserver));
        assert_eq!(full.name(), "py-pool-map@3.13/forkserver");
        for t in [
            full.clone(),
            Target::python("py-ppe").variant(None, Some(StartMethod::Spawn)),
            Target::python("py-loky").variant(v13, None),
        ] {
            assert_eq!(t.name().parse::<Target>(), Ok(t.clone()), "{t} round trip");
        }
        assert!(full.matches("py-pool-map") && full.matches("py-*@3.13/*") && !full.matches("py-*/spawn"));
        assert_eq!(full.base(), Target::python("py-pool-map"));
        assert_eq!(full.style(), Some(CallStyle::Map));
        assert!("naive@3.13".parse::<Target>().unwrap_err().contains("only the Python targets"));
        assert!("py-ppe/vfork".parse::<Target>().unwrap_err().contains("start method"));
        assert!("py-ppe@2.7".parse::<Target>().unwrap_err().contains("version"));
        let launch = full.launch(Path::new("/poolchaos"), Path::new("/root"));
        assert_eq!(launch.program, PathBuf::from("/root/.venvs/3.13/bin/python"));
        assert_eq!(launch.args[3..], ["--start-method".to_string(), "forkserver".to_string()]);
    }
}
