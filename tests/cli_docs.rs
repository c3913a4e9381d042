//! `sediment completions SHELL` and `sediment man`, checked with the real shells
//! and the real formatters: bash parses and completes with the script, zsh and
//! fish parse theirs (fish completes with it), and every man page renders with
//! groff (all warnings on) and `man -l` without a warning.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::binary;

fn sediment(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).output().unwrap();
    assert!(out.status.success(), "sediment {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `program args` with `input` on stdin.
fn run(program: &str, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/test installs it): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn clean(what: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{what}: {out:?}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completion_parses_and_completes() {
    let script = sediment(&["completions", "bash"]);
    clean("bash -n", &run("bash", &["-n"], &script));
    // Sourced into a real bash, the completion function offers subcommands and flags.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sediment.bash");
    std::fs::write(&file, &script).unwrap();
    let probe = format!(
        "source {}\n\
         COMP_WORDS=(sediment res); COMP_CWORD=1; _sediment sediment res sediment; echo \"1:${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(sediment restore --dry); COMP_CWORD=2; _sediment sediment --dry restore; echo \"2:${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(sediment completions ''); COMP_CWORD=2; _sediment sediment '' completions; echo \"3:${{COMPREPLY[*]}}\"\n",
        file.display()
    );
    let out = clean("bash completion", &run("bash", &["--norc"], &probe));
    assert!(out.contains("1:restore\n"), "{out}");
    assert!(out.contains("2:--dry-run\n"), "{out}");
    let shells = out.lines().find_map(|l| l.strip_prefix("3:")).unwrap();
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.split(' ').any(|s| s == shell), "{out}");
    }
}

#[test]
fn zsh_and_fish_completions_parse() {
    let zsh = sediment(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef sediment"));
    clean("zsh -n", &run("zsh", &["-n"], &zsh));
    let fish = sediment(&["completions", "fish"]);
    clean("fish --no-execute", &run("fish", &["--no-execute"], &fish));
    let out = clean(
        "fish complete",
        &run(
            "fish",
            &["--no-config"],
            &format!(
                "{fish}\ncomplete -C 'sediment check-'\ncomplete -C 'sediment restore --sin'\n"
            ),
        ),
    );
    assert!(out.contains("check-storage\t"), "{out}");
    assert!(out.contains("--sink\t"), "{out}");
}

/// Renders a page with groff, every warning on; returns the text.
fn groff(page: &Path) -> String {
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-rLL=80n", "-P-cbou"])
        .arg(page)
        .output()
        .expect("groff runs (scripts/test installs groff-base)");
    clean(&format!("groff {}", page.display()), &out)
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("sediment.1");
    std::fs::write(&page, sediment(&["man"])).unwrap();
    let text = groff(&page);
    for wanted in [
        "NAME",
        "SYNOPSIS",
        "OPTIONS",
        "SUBCOMMANDS",
        "--config",
        "restore",
        "completions",
    ] {
        assert!(text.contains(wanted), "sediment.1 lacks {wanted}:\n{text}");
    }
    // man-db's own pipeline, as a user would read it.
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man runs (scripts/test installs man-db)");
    let shown = clean("man -l", &out);
    assert!(shown.contains("check-storage"), "{shown}");

    // --out-dir: one page per subcommand, each rendering cleanly.
    let pages = dir.path().join("pages");
    sediment(&["man", "--out-dir", pages.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    for wanted in [
        "sediment.1",
        "sediment-run.1",
        "sediment-restore.1",
        "sediment-man.1",
    ] {
        assert!(names.iter().any(|n| n == wanted), "{names:?}");
    }
    for name in &names {
        let text = groff(&pages.join(name));
        assert!(text.contains("SYNOPSIS"), "{name}:\n{text}");
    }
    let restore = groff(&pages.join("sediment-restore.1"));
    assert!(
        restore.contains("--dry-run") && restore.contains("--skip-cold"),
        "{restore}"
    );
}
