//! The CI gate (issue 12.12): `scripts/test`, which `.ci/run` calls, checks
//! formatting and clippy before any test runs, and the formatting check really
//! refuses a badly formatted file.

use std::path::Path;
use std::process::Command;

fn script() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test")).unwrap()
}

/// The line index of the first command line containing `needle`.
fn line_of(script: &str, needle: &str) -> Option<usize> {
    script
        .lines()
        .position(|l| !l.trim_start().starts_with('#') && l.contains(needle))
}

#[test]
fn scripts_test_runs_fmt_and_clippy_before_the_tests() {
    let s = script();
    let ci =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    assert!(
        line_of(&ci, "scripts/test").is_some(),
        ".ci/run calls scripts/test"
    );
    assert!(
        s.contains("set -euo pipefail"),
        "a failing check stops the script"
    );
    let fmt = line_of(&s, "cargo fmt --all -- --check").expect("a fmt check");
    let clippy = line_of(&s, "cargo clippy --workspace").expect("a clippy run");
    let tests = line_of(&s, "cargo test").expect("the tests");
    assert!(
        fmt < tests && clippy < tests,
        "the gate runs before the tests"
    );
    let clippy_line = s.lines().nth(clippy).unwrap();
    assert!(
        clippy_line.contains("--all-targets") && clippy_line.contains("-D warnings"),
        "{clippy_line}"
    );
}

/// The check the gate runs refuses a badly formatted file (a gate that cannot fail is none).
#[test]
fn the_formatting_check_refuses_a_misformatted_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.rs");
    std::fs::write(&file, "fn main( ){let x=1;println!(\"{}\",x) ;}\n").unwrap();
    let check = |f: &Path| {
        Command::new("rustfmt")
            .args(["--edition", "2021", "--check"])
            .arg(f)
            .output()
            .expect("rustfmt runs")
            .status
            .success()
    };
    assert!(
        !check(&file),
        "rustfmt --check accepted a misformatted file"
    );
    assert!(Command::new("rustfmt")
        .args(["--edition", "2021"])
        .arg(&file)
        .status()
        .unwrap()
        .success());
    assert!(check(&file), "once formatted it passes");
}
