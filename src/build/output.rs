//! The output folder: a build writes into a fresh staging folder next to it and swaps it in
//! only when everything succeeded, so a failed build leaves the previous site as it was.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The folder the build writes into: a fresh sibling of `output`.
pub fn prepare(output: &Path) -> Result<PathBuf> {
    if output.exists() {
        if !output.is_dir() {
            return Err(Error::at(output, "the output exists and is not a folder"));
        }
        let empty = std::fs::read_dir(output).at_path(output)?.next().is_none();
        if !empty && !output.join("manifest.json").is_file() {
            return Err(Error::at(
                output,
                "the output folder is not empty and holds no cnnscope site (no manifest.json): \
                 choose another --output or empty it, since a build replaces the whole folder",
            ));
        }
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).at_path(&parent)?;
    let name = output.file_name().and_then(|n| n.to_str()).unwrap_or("public");
    remove_abandoned_staging(&parent, name);
    let staging = parent.join(format!(".{name}.staging-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).at_path(&staging)?;
    }
    std::fs::create_dir_all(&staging).at_path(&staging)?;
    Ok(staging)
}

/// Removes staging folders (and `--no-cache` temporary caches) of builds of the same output
/// that were killed: their process is gone.
fn remove_abandoned_staging(parent: &Path, name: &str) {
    let prefix = format!(".{name}.staging-");
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let pid = rest.split('.').next().unwrap_or_default();
        let alive = cfg!(not(target_os = "linux")) || Path::new("/proc").join(pid).exists();
        if !alive && pid.parse::<u32>().is_ok() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Replaces `output` by the finished staging folder. With `background`, the previous site
/// is deleted on another thread (a long-running `serve` answers sooner); a folder left by a
/// process that ended first is removed by the next build of the same output.
pub fn swap_in(staging: &Path, output: &Path, background: bool) -> Result<()> {
    if output.exists() {
        let old = staging.with_extension("old");
        if old.exists() {
            // Left by a build that was killed between the two renames below.
            std::fs::remove_dir_all(&old).at_path(&old)?;
        }
        std::fs::rename(output, &old).at_path(output)?;
        std::fs::rename(staging, output).at_path(output)?;
        if background {
            // A unique name under the staging prefix, which the next build removes if this
            // process ends before the thread does.
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let trash = PathBuf::from(format!("{}.trash-{n}", staging.display()));
            std::fs::rename(&old, &trash).at_path(&old)?;
            std::thread::spawn(move || std::fs::remove_dir_all(trash));
        } else {
            std::fs::remove_dir_all(&old).at_path(&old)?;
        }
    } else {
        std::fs::rename(staging, output).at_path(output)?;
    }
    Ok(())
}

/// Writes `path` whole or not at all (a temporary file beside it, renamed over it): `serve`
/// rewrites files in the folder it is serving.
pub(crate) fn write_whole(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.part"));
    std::fs::write(&tmp, bytes).at_path(&tmp)?;
    std::fs::rename(&tmp, path).at_path(path)
}

/// Every page folder written under `out` (`""` for the home page), in path order.
pub(crate) fn page_folders(out: &Path) -> Vec<String> {
    let mut pages: Vec<String> = walkdir::WalkDir::new(out)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() == "index.html")
        .filter_map(|e| {
            let rel = e.path().parent()?.strip_prefix(out).ok()?;
            Some(rel.to_string_lossy().replace('\\', "/"))
        })
        .collect();
    pages.sort();
    pages
}

pub(crate) fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).at_path(p)
}
