//! The real binary, run on a gallery.

use std::path::Path;
use std::process::Command;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cnnscope"))
}

/// `cnnscope ARGS… -c CONFIG`.
pub fn run(args: &[&str], config: &Path) -> std::process::Output {
    bin().args(args).arg("-c").arg(config).output().unwrap()
}

/// `cnnscope ARGS… -c CONFIG`, which must succeed; its standard error.
pub fn run_ok(args: &[&str], config: &Path) -> String {
    let out = run(args, config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "cnnscope {args:?} failed: {stderr}");
    stderr
}

/// `cnnscope ARGS… -c CONFIG`, which must fail; its standard error.
pub fn run_err(args: &[&str], config: &Path) -> String {
    let out = run(args, config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "cnnscope {args:?} succeeded: {stderr}");
    stderr
}

/// A new gallery from `cnnscope init`, in `<temp>/g`.
pub fn init() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("init").arg(dir.path().join("g")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// `node tests/browser/SCRIPT ARGS…`: its last line as JSON, and whether it succeeded.
pub fn node(script: &str, args: &[&str]) -> (serde_json::Value, bool) {
    let out = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(super::repo().join("tests/browser"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (r, out.status.success())
}
