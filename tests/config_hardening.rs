//! Configuration and file-system hardening against the real binary (issue 12,
//! items 5, 8, 9): key templates that would escape the archive are refused with
//! their YAML path, no error ever prints an interpolated `${VAR}` value, and
//! everything sediment writes is private to its user (or its group, for
//! archive files).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// `sediment ARGS` in `dir` with `env`: (exit code, stdout + stderr).
fn sediment(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Item 8: a secret set in the environment reaches the config as `${VAR}`; the
/// errors name the variable, never the value. Before, `tokens: ${TOK}` (a string
/// where a list belongs) printed the token, an unknown variant and an invalid
/// address printed theirs, and an Azure connection string that the SDK could not
/// parse was printed whole, account key included, when `run` built the sink.
#[test]
fn no_error_prints_an_interpolated_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = "
data_dir: ./data
api: {enabled: false}
sources:
  tokens_in: {type: http, address: '127.0.0.1:0', auth: {strategy: bearer, tokens: ${TOK}}}
  address_in: {type: http, address: '${ADDR}'}
  syslog_in: {type: syslog, mode: '${MODE}', address: '127.0.0.1:0'}
sinks:
  s3_out: {type: s3, inputs: [tokens_in], bucket: b, server_side_encryption: '${SSE}'}
  size_out: {type: file, inputs: [address_in], path: ./a, max_object_size: '${SIZE}'}
  azure_out: {type: azure_blob, inputs: [syslog_in], container: c, connection_string: '${CONN}'}
";
    std::fs::write(dir.path().join("pipeline.yaml"), config).unwrap();
    let env = [
        ("TOK", "tok-SECRET-1"),
        ("ADDR", "addr-SECRET-2"),
        ("MODE", "mode-SECRET-3"),
        ("SSE", "sse-SECRET-4"),
        ("SIZE", "size-SECRET-5"),
        ("CONN", "AccountKey-conn-SECRET-6"),
    ];
    for command in ["validate", "run"] {
        let (code, out) = sediment(&[command], dir.path(), &env);
        assert_eq!(code, 1, "{command}: {out}");
        assert!(!out.contains("SECRET"), "{command} printed a value:\n{out}");
        for (name, path) in [
            ("TOK", "sources.tokens_in.auth"),
            ("ADDR", "sources.address_in.address"),
            ("MODE", "sources.syslog_in.mode"),
            ("SSE", "sinks.s3_out.server_side_encryption"),
            ("SIZE", "sinks.size_out.max_object_size"),
        ] {
            assert!(
                out.lines()
                    .any(|l| l.contains(path) && l.contains(&format!("${{{name}}}"))),
                "{command}: no line names {path} and ${{{name}}}:\n{out}"
            );
        }
        assert!(
            out.contains("sinks.azure_out.connection_string: is not a valid connection string"),
            "{command}: {out}"
        );
    }
}

/// Item 8 at run time: an error that only `run` can hit (the address from the
/// environment is taken) names the variable, not its value.
#[test]
fn run_time_errors_name_the_variable_not_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let config = "
data_dir: ./data
api: {enabled: false}
sources:
  http_in: {type: http, address: '${LISTEN}'}
sinks:
  out: {type: file, inputs: [http_in], path: ./a}
";
    std::fs::write(dir.path().join("pipeline.yaml"), config).unwrap();
    let (code, out) = sediment(&["run"], dir.path(), &[("LISTEN", &address)]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("${LISTEN}"), "{out}");
    assert!(!out.contains(&address), "the value was printed:\n{out}");
}

/// Item 5: each escape an adversarial user found is refused by `validate`, with
/// the YAML path of the option at fault; a good custom template still passes.
#[test]
fn key_templates_that_escape_the_archive_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (account, template, path, says) in [
        (
            "..",
            "{account_id}/{account_id}/x.%H{part}.json.gz",
            "account_id",
            "dots only",
        ),
        ("a", "%.f/tmp/x.%H{part}.json.gz", "key_template", "`%.f`"),
        ("a", ".%.f./%H{part}", "key_template", "`%.f`"),
        ("a", "/tmp/%H{part}.json.gz", "key_template", "absolute"),
        ("a", "%Y/../%H{part}.json.gz", "key_template", "`..`"),
        ("a", "%Y/.{part}/%H.json.gz", "key_template", "`.`"),
        ("a", "%Y//%H{part}.json.gz", "key_template", "empty"),
        ("a", "%s/%H{part}.json.gz", "key_template", "`%s`"),
    ] {
        let config = format!(
            "sources:\n  in: {{type: http, address: '127.0.0.1:0'}}\nsinks:\n  archive: {{type: file, inputs: [in], path: ./a, account_id: '{account}', key_template: '{template}'}}\n"
        );
        std::fs::write(dir.path().join("p.yaml"), config).unwrap();
        let (code, out) = sediment(&["validate", "--config", "p.yaml"], dir.path(), &[]);
        assert_eq!(code, 1, "{template} with {account} accepted:\n{out}");
        let line = format!("sinks.archive.{path}: ");
        assert!(
            out.lines().any(|l| l.contains(&line) && l.contains(says)),
            "{template} with {account}: expected `{line}…{says}`:\n{out}"
        );
    }
    let good = "sources:\n  in: {type: http, address: '127.0.0.1:0'}\nsinks:\n  archive: {type: file, inputs: [in], path: ./a, account_id: acme.eu, key_template: 'dt=%F/h=%-H/{account_id}{part}.json.gz'}\n";
    std::fs::write(dir.path().join("p.yaml"), good).unwrap();
    let (code, out) = sediment(&["validate", "--config", "p.yaml"], dir.path(), &[]);
    assert_eq!((code, out.trim()), (0, "ok"));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Item 9: under umask 022, staging segments and archive files were 0644 and
/// folders 0755. Now data_dir and staging are 0700, staging files 0600, archive
/// files `file_mode` (default 0640) in 0750 folders.
#[test]
fn data_dir_staging_and_archive_files_are_private() {
    // SAFETY: umask only sets this process's file-creation mask.
    unsafe { libc::umask(0o022) };
    for (file_mode, want_file, want_dir) in [(None, 0o640, 0o750), (Some("'0600'"), 0o600, 0o700)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let option = file_mode
            .map(|m| format!(", file_mode: {m}"))
            .unwrap_or_default();
        let topology =
            default_topology().replace("account_id: acme}", &format!("account_id: acme{option}}}"));
        let s = Setup::new(root).topology(&topology).start();
        let events = [json!({"message": "private"})];
        assert_eq!(post_ndjson(&s.url("/"), &events).unwrap(), 200);
        let staging = root.join("data/archive/staging");
        let open: Vec<_> = std::fs::read_dir(&staging)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(open.len(), 1);
        assert_eq!(mode(&open[0]), 0o600, "staging segment");
        assert_eq!(mode(&staging), 0o700, "staging folder");
        assert_eq!(mode(&root.join("data")), 0o700, "data_dir");
        s.stop();
        let objects = read_archive(&root.join("archive"));
        assert_eq!(objects.len(), 1);
        let object = root.join("archive").join(&objects[0].0);
        assert_eq!(mode(&object), want_file, "archive file");
        assert_eq!(mode(object.parent().unwrap()), want_dir, "archive folder");
        assert_eq!(mode(&root.join("archive")), want_dir, "archive root");
    }
}
