//! A full staging disk: requests that cannot be fsync'd get 503, nothing of them is
//! archived, and everything acknowledged before is. Staging sits on a 2 MiB tmpfs
//! (needs root, as in CI).

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(path: &std::path::Path, size: &str) -> Mount {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(path.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_staging_disk_answers_503_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let _mount = Mount::tmpfs(&dir.path().join("data"), "2m");
    let sediment = Setup::new(dir.path()).start();
    let mut x = 0x2545f4914f6cdd1du64;
    let mut outcomes = Vec::new();
    for request in 0..150u64 {
        let events: Vec<_> = (0..50u64)
            .map(|i| {
                let noise: String = (0..32)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        format!("{x:016x}")
                    })
                    .collect();
                json!({"seq": request * 50 + i, "message": noise})
            })
            .collect();
        let mut body = Vec::new();
        for e in &events {
            serde_json::to_writer(&mut body, e).unwrap();
            body.push(b'\n');
        }
        let (status, reply, _) = post(
            &sediment.url("/"),
            &[("content-type", "application/x-ndjson")],
            &body,
        )
        .unwrap();
        if status == 503 {
            assert!(reply.contains("could not be stored durably"), "{reply}");
        } else {
            assert_eq!(status, 200, "{reply}");
        }
        outcomes.push((request, status));
    }
    let refused = outcomes.iter().filter(|o| o.1 == 503).count();
    assert!(refused > 0, "a 2 MiB staging disk filled up");
    assert!(
        outcomes.iter().filter(|o| o.1 == 200).count() > 10,
        "requests were accepted before the disk filled"
    );
    assert!(
        sediment.metrics().contains("error_type=\"staging_write\""),
        "staging errors are counted"
    );
    sediment.stop();

    let mut archived = std::collections::HashMap::new();
    for (_, events) in read_archive(&dir.path().join("archive")) {
        for e in events {
            *archived.entry(e["seq"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    for (request, status) in outcomes {
        for seq in request * 50..request * 50 + 50 {
            let expected = usize::from(status == 200);
            assert_eq!(
                archived.get(&seq).copied().unwrap_or(0),
                expected,
                "seq {seq} answered {status}"
            );
        }
    }
}
