//! Running from anywhere: what a checkout gives the harness, when there is none.
//!
//! In the repository the harness finds the worker binary beside itself
//! (`target/<profile>/poolchaos-worker`) and the Python adapter in
//! `targets/python/`. Installed alone (`cargo install --path harness`, or the
//! wheel's `poolchaos` in a venv's `bin/`) it has neither, so:
//!
//! - **The worker.** `poolchaos` is a multi-call binary: started under the
//!   name `poolchaos-worker` it *is* the worker ([`as_worker`]). When no
//!   worker binary sits beside it, [`prepare`] makes a link of that name to
//!   itself in the cache directory and names it in `POOLCHAOS_WORKER`, which
//!   every pool, the owner and the benches read.
//! - **The Python adapter.** `poolchaos_targets` is embedded in the binary
//!   ([`ADAPTER`]) and, outside a checkout, unpacked into the cache directory
//!   under a name made of the version and the files' hash, so two versions
//!   never share one and an unpacked copy is never rewritten in place.
//!
//! The cache directory is `$XDG_CACHE_HOME/poolchaos`, else
//! `$HOME/.cache/poolchaos`, else `poolchaos-cache-<uid>` in the temp dir.
//! Everything in it is written under a temporary name and renamed into
//! place, so harnesses starting side by side never see half a file.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The worker's name; the binary started under it runs the worker loop.
pub const WORKER_NAME: &str = "poolchaos-worker";
/// What names the worker binary for every process of the harness.
pub const WORKER_ENV: &str = "POOLCHAOS_WORKER";

/// The Python adapter's package, file by file (a test holds this list to
/// the directory, so a new module cannot be left out).
pub const ADAPTER: [(&str, &str); 6] = [
    ("__init__.py", include_str!("../../targets/python/poolchaos_targets/__init__.py")),
    ("__main__.py", include_str!("../../targets/python/poolchaos_targets/__main__.py")),
    ("owner.py", include_str!("../../targets/python/poolchaos_targets/owner.py")),
    ("protocol.py", include_str!("../../targets/python/poolchaos_targets/protocol.py")),
    ("targets.py", include_str!("../../targets/python/poolchaos_targets/targets.py")),
    ("work.py", include_str!("../../targets/python/poolchaos_targets/work.py")),
];

/// When this process was started as `poolchaos-worker`: runs the worker and
/// returns its exit code. `None` for every other name.
pub fn as_worker() -> Option<i32> {
    let mut args = std::env::args_os();
    let name = args.next().map(PathBuf::from)?;
    if name.file_name()? != WORKER_NAME {
        return None;
    }
    let mode = args.next().unwrap_or_default();
    Some(pools::worker::main(&mode.to_string_lossy()))
}

/// Makes sure the worker can be found: the binary beside this one, the one
/// `POOLCHAOS_WORKER` names, or else a link to this binary in the cache,
/// then named in `POOLCHAOS_WORKER`.
///
/// # Safety
/// Sets an environment variable: call it before any thread is started.
pub unsafe fn prepare_worker() -> anyhow::Result<()> {
    if pools::WorkerProgram::beside_current_exe().is_ok() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding the harness's own binary")?;
    let dir = cache_dir().join(env!("CARGO_PKG_VERSION")).join("bin");
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    let link = dir.join(WORKER_NAME);
    if std::fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        let tmp = dir.join(format!(".{WORKER_NAME}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp).with_context(|| format!("linking {}", tmp.display()))?;
        std::fs::rename(&tmp, &link).with_context(|| format!("renaming {} into place", tmp.display()))?;
    }
    // SAFETY: the caller promises no other thread exists yet.
    unsafe { std::env::set_var(WORKER_ENV, &link) };
    Ok(())
}

/// The directory to put on `PYTHONPATH` for the adapter: the checkout's
/// `targets/python` under `root` when there is one, else the unpacked copy
/// ([`unpack_adapter`] makes it).
pub fn adapter_dir(root: &Path) -> PathBuf {
    let checkout = root.join("targets/python");
    if checkout.join("poolchaos_targets").is_dir() { checkout } else { unpacked_adapter_dir() }
}

/// Unpacks the embedded adapter into the cache, unless it is there already
/// or a checkout under `root` has it. Returns the directory for `PYTHONPATH`.
pub fn unpack_adapter(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = adapter_dir(root);
    if dir.join("poolchaos_targets").is_dir() {
        return Ok(dir);
    }
    let parent = dir.parent().context("the adapter's cache directory has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("making {}", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .with_context(|| format!("making a temp dir in {}", parent.display()))?;
    let package = tmp.path().join("poolchaos_targets");
    std::fs::create_dir(&package)?;
    for (name, text) in ADAPTER {
        std::fs::write(package.join(name), text).with_context(|| format!("writing {name}"))?;
    }
    match std::fs::rename(tmp.path(), &dir) {
        Ok(()) => {
            // Renamed away: nothing is left for the guard to remove.
            let _ = tmp.keep();
            Ok(dir)
        }
        // Another harness unpacked the same files first.
        Err(_) if dir.join("poolchaos_targets").is_dir() => Ok(dir),
        Err(e) => Err(e).with_context(|| format!("moving the adapter into {}", dir.display())),
    }
}

/// Where the embedded adapter goes: one directory per version and content.
fn unpacked_adapter_dir() -> PathBuf {
    let mut hasher = std::hash::DefaultHasher::new();
    ADAPTER.hash(&mut hasher);
    let key = format!("python-{}-{:016x}", env!("CARGO_PKG_VERSION"), hasher.finish());
    cache_dir().join(key)
}

fn cache_dir() -> PathBuf {
    let nonempty = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(xdg) = nonempty("XDG_CACHE_HOME") {
        return xdg.join("poolchaos");
    }
    if let Some(home) = nonempty("HOME") {
        return home.join(".cache/poolchaos");
    }
    let uid = rustix::process::getuid().as_raw();
    std::env::temp_dir().join(OsString::from(format!("poolchaos-cache-{uid}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_of_the_adapter_is_embedded() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets/python/poolchaos_targets");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("the adapter's directory")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<&str> = ADAPTER.iter().map(|(name, _)| *name).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn a_checkout_s_adapter_wins_over_the_embedded_one() {
        let inside = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert_eq!(adapter_dir(&inside), inside.join("targets/python"));
        let nowhere = tempfile::tempdir().expect("temp dir");
        assert_eq!(adapter_dir(nowhere.path()), unpacked_adapter_dir());
    }
}
