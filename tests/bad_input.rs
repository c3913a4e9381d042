//! Bad input gets the right status and a clear message, and nothing of it is archived.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn rejected_requests_archive_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topology = default_topology().replace(
        "{type: http, address: '127.0.0.1:{HTTP}'}",
        "{type: http, address: '127.0.0.1:{HTTP}', max_body_size: 64KiB, auth: {strategy: bearer, tokens: [s3cret]}}",
    );
    let sediment = Setup::new(dir.path()).topology(&topology).start();
    let url = sediment.url("/");
    let auth = ("authorization", "Bearer s3cret");
    let ndjson = ("content-type", "application/x-ndjson");
    let bad = |tag: &str| format!("{{\"message\":\"{tag}\"}}\n");

    // Malformed NDJSON: 400 naming the line; the good first line is not accepted either.
    let body = format!("{}{{\"message\": oops}}\n", bad("malformed"));
    let (status, reply, _) = post(&url, &[auth, ndjson], body.as_bytes()).unwrap();
    assert_eq!(status, 400);
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: invalid JSON"),
        "{reply}"
    );

    // Unsupported content type.
    let (status, reply, _) = post(
        &url,
        &[auth, ("content-type", "application/xml")],
        bad("xml").as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 415, "{reply}");

    // Oversized: declared, and a small gzip body that inflates past the limit.
    let big = bad("oversized").repeat(4000);
    assert_eq!(post(&url, &[auth, ndjson], big.as_bytes()).unwrap().0, 413);
    let bomb = gzip(big.as_bytes());
    assert!(bomb.len() < 64 * 1024);
    let (status, reply, _) =
        post(&url, &[auth, ndjson, ("content-encoding", "gzip")], &bomb).unwrap();
    assert_eq!(status, 413, "{reply}");

    // Bad gzip.
    let mut broken = gzip(bad("badgzip").as_bytes());
    broken.truncate(broken.len() - 6);
    assert_eq!(
        post(&url, &[auth, ndjson, ("content-encoding", "gzip")], &broken)
            .unwrap()
            .0,
        400
    );

    // Missing and wrong token.
    let (status, _, headers) = post(&url, &[ndjson], bad("noauth").as_bytes()).unwrap();
    assert_eq!(status, 401);
    assert_eq!(
        headers.get("www-authenticate").map(String::as_str),
        Some("Bearer")
    );
    assert_eq!(
        post(
            &url,
            &[("authorization", "Bearer nope"), ndjson],
            bad("wrongauth").as_bytes()
        )
        .unwrap()
        .0,
        401
    );

    // Invalid UTF-8 in text and a non-object JSON line.
    assert_eq!(
        post(
            &url,
            &[auth, ("content-type", "text/plain")],
            b"fine\n\xff\xfe bad\n"
        )
        .unwrap()
        .0,
        400
    );
    assert_eq!(
        post(
            &url,
            &[auth, ndjson],
            format!("{}[1,2]\n", bad("array")).as_bytes()
        )
        .unwrap()
        .0,
        400
    );

    // And one good request.
    let (status, reply, _) = post(&url, &[auth, ndjson], bad("good").as_bytes()).unwrap();
    assert_eq!((status, reply.as_str()), (200, r#"{"accepted":1}"#));
    let metrics = sediment.metrics();
    for code in ["400", "401", "413", "415", "200"] {
        assert!(
            metrics.contains(&format!("code=\"{code}\"")),
            "no {code} in metrics"
        );
    }
    sediment.stop();

    let archived: Vec<Value> = read_archive(&dir.path().join("archive"))
        .into_iter()
        .flat_map(|a| a.1)
        .collect();
    assert_eq!(archived.len(), 1, "{archived:#?}");
    assert_eq!(archived[0]["message"], json!("good"));
}

fn sediment(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("SEDIMENT_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_every_error_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let good =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml")).unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), &good).unwrap();
    assert_eq!(
        sediment(&["validate"], dir.path()).0,
        0,
        "the default pipeline.yaml validates"
    );
    assert_eq!(sediment(&["validate"], dir.path()).1.trim(), "ok");

    let broken = good
        .replace("late_after: 10m", "late_after: ten minutes")
        .replace("inputs: [hourly]", "inputs: [hourlly]")
        .replace("    path: ./archive", "    pth: ./archive");
    std::fs::write(dir.path().join("broken.yaml"), broken).unwrap();
    let (code, stdout, stderr) = sediment(&["validate", "--config", "broken.yaml"], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout
            .contains("broken.yaml: transforms.hourly.late_after: invalid duration `ten minutes`"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("broken.yaml: sinks.archive.pth: unknown field `pth`; did you mean `path`?"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "broken.yaml: sinks.archive.inputs[0]: unknown input `hourlly`; did you mean `hourly`?"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("error: broken.yaml has 3 error(s)"),
        "{stderr}"
    );

    // `run` refuses the same file with the same messages and exit 1.
    let (code, _, stderr) = sediment(&["run", "--config", "broken.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains("sinks.archive.pth: unknown field"),
        "{stderr}"
    );

    // A missing file names the file; a usage error exits 2.
    let (code, stdout, _) = sediment(&["validate", "--config", "nope.yaml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stdout.contains("nope.yaml: cannot read the configuration file"),
        "{stdout}"
    );
    assert_eq!(sediment(&["validate", "--bogus"], dir.path()).0, 2);
    let (code, stdout, _) = sediment(&["--version"], dir.path());
    assert_eq!(
        (code, stdout.trim()),
        (0, concat!("sediment ", env!("CARGO_PKG_VERSION")))
    );
}
