//! Option parsing of `type: s3`; the store itself is tested against moto in
//! `tests/s3.rs` (a real S3 wire protocol, started by the test).

use super::*;

fn check(text: &str) -> Result<S3Settings, Vec<String>> {
    let cx = ParseContext {
        id: "archive".into(),
        path: "sinks.archive".into(),
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    validate(&cx, value)
        .map(|sink| sink.s3)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
}

#[test]
fn every_option_round_trips_into_settings() {
    let s3 = check(
        "{bucket: logs, prefix: prod, region: eu-west-1, endpoint: 'http://127.0.0.1:9000',
          access_key_id: AK, secret_access_key: SK, session_token: T,
          assume_role: 'arn:aws:iam::1:role/r', external_id: x,
          server_side_encryption: 'aws:kms', kms_key_id: k, storage_class: STANDARD_IA,
          part_size: 8MiB, account_id: acme}",
    )
    .unwrap();
    assert_eq!(s3.sink, "archive");
    assert_eq!(s3.prefix, "prod/", "a slash ends the prefix");
    assert!(
        s3.force_path_style,
        "path style by default with an endpoint"
    );
    assert_eq!(
        s3.static_keys,
        Some(("AK".into(), "SK".into(), Some("T".into())))
    );
    assert_eq!(
        s3.assume_role,
        Some(("arn:aws:iam::1:role/r".into(), Some("x".into())))
    );
    assert_eq!(s3.part_size, 8 << 20);
    assert_eq!(s3.storage_class.as_deref(), Some("STANDARD_IA"));
}

#[test]
fn defaults_use_the_default_chain_and_virtual_hosted_style() {
    let s3 = check("{bucket: logs}").unwrap();
    assert_eq!(s3.prefix, "");
    assert!(!s3.force_path_style);
    assert_eq!(s3.static_keys, None);
    assert_eq!(s3.region, None);
    assert_eq!(s3.part_size, 16 << 20);
    let s3 = check("{bucket: logs, endpoint: 'http://x', force_path_style: false}").unwrap();
    assert!(!s3.force_path_style);
}

#[test]
fn bad_options_name_their_field() {
    let errors = check(
        "{bucket: '', access_key_id: AK, server_side_encryption: DES, storage_class: COLD,
          part_size: 1MiB, external_id: x, prefix: '../up'}",
    )
    .unwrap_err()
    .join("\n");
    for expected in [
        "sinks.archive.bucket",
        "sinks.archive.secret_access_key",
        "sinks.archive.server_side_encryption",
        "sinks.archive.storage_class",
        "sinks.archive.part_size",
        "sinks.archive.external_id",
        "sinks.archive.prefix",
    ] {
        assert!(
            errors.contains(expected),
            "{expected} missing from:\n{errors}"
        );
    }
    let errors = check("{bucket: b, kms_key_id: k}").unwrap_err().join("\n");
    assert!(errors.contains("aws:kms"), "{errors}");
    let errors = check("{bucket: b, buckett: c}").unwrap_err().join("\n");
    assert!(errors.contains("buckett"), "{errors}");
}
