//! `sediment check-storage`: write, list and read back `sediment-verified` through
//! each archive sink's own store, naming the permission that failed.

mod cloud;
mod common;

use std::path::Path;
use std::process::Command;

use cloud::Moto;
use common::*;

/// Runs `sediment check-storage` on a config; returns (exit code, stdout).
fn check_storage(dir: &Path, sinks: &str, extra_args: &[&str]) -> (i32, String) {
    check_storage_with_env(dir, sinks, extra_args, &[])
}

/// [`check_storage`] with more environment variables for sediment.
fn check_storage_with_env(
    dir: &Path,
    sinks: &str,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String) {
    let config = dir.join("pipeline.yaml");
    let yaml = format!(
        "data_dir: '{}/data'\nsources:\n  http_in: {{type: http, address: '127.0.0.1:{}'}}\nsinks:\n{sinks}",
        dir.display(),
        free_port()
    );
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(binary())
        .arg("check-storage")
        .arg("--config")
        .arg(&config)
        .args(extra_args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap(), stdout)
}

fn s3_sink(id: &str, moto: &Moto, bucket: &str, prefix: &str, key: &str, secret: &str) -> String {
    format!(
        "  {id}:\n    type: s3\n    inputs: [http_in]\n    bucket: {bucket}\n    prefix: '{prefix}'\n    endpoint: '{}'\n    region: us-east-1\n    access_key_id: {key}\n    secret_access_key: {secret}\n",
        moto.endpoint()
    )
}

/// The line of a step, e.g. `archive: list s3://b/p/sediment-verified: ok`.
fn step<'a>(stdout: &'a str, sink: &str, step: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{sink}: {step} ")))
        .unwrap_or_else(|| panic!("no {step} line for {sink} in:\n{stdout}"))
}

#[test]
fn a_reachable_bucket_passes_every_step_and_a_missing_one_fails_the_write() {
    let moto = Moto::start();
    moto.create_bucket("logs");
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}{}",
        s3_sink("good", &moto, "logs", "team/good/", "test", "test"),
        s3_sink("missing", &moto, "no-such-bucket", "", "test", "test")
    );
    let (code, out) = check_storage(dir.path(), &sinks, &["--sink", "good"]);
    assert_eq!(code, 0);
    for s in ["write", "list", "read"] {
        assert!(step(&out, "good", s).ends_with(": ok"), "{out}");
    }
    assert!(step(&out, "good", "write").contains("s3://logs/team/good/sediment-verified"));
    // Again: it replaces its own verification object, and only that.
    let (code, _) = check_storage(dir.path(), &sinks, &["--sink", "good"]);
    assert_eq!(code, 0);
    let meta = moto.python(
        "print(s3.head_object(Bucket='logs', Key='team/good/sediment-verified')['Metadata'])",
        &[],
    );
    assert!(meta.contains("sediment-segment-id"), "{meta}");

    let (code, out) = check_storage(dir.path(), &sinks, &[]);
    assert_eq!(code, 1, "a failed sink fails the command");
    let write = step(&out, "missing", "write");
    assert!(
        write.contains("FAILED")
            && write.contains("write (PutObject)")
            && write.contains("NoSuchBucket"),
        "{write}"
    );
    assert!(step(&out, "good", "read").ends_with(": ok"));

    let (code, _) = check_storage(dir.path(), &sinks, &["--sink", "nope"]);
    assert_eq!(code, 1);
}

/// moto enforces IAM once its first N requests are spent: two users, one whose
/// policy lacks s3:ListBucket, one lacking s3:GetObject. (No key prefix here:
/// moto 5.2's SigV4 check rejects a ListObjectsV2 `prefix` containing `/` from
/// IAM users — it re-encodes the query differently — which real S3 accepts.)
#[test]
fn a_principal_denied_list_or_read_is_named() {
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "8")]);
    let out = moto.python(
        "s3.create_bucket(Bucket='nolist')\n\
         s3.create_bucket(Bucket='noread')\n\
         iam = boto3.client('iam', endpoint_url=s3.meta.endpoint_url, region_name='us-east-1',\n\
                            aws_access_key_id='test', aws_secret_access_key='test')\n\
         keys = {}\n\
         for user, actions in [('nolist', ['s3:PutObject', 's3:GetObject', 's3:DeleteObject']),\n\
                               ('noread', ['s3:PutObject', 's3:ListBucket', 's3:DeleteObject'])]:\n\
         \x20   iam.create_user(UserName=user)\n\
         \x20   iam.put_user_policy(UserName=user, PolicyName='p', PolicyDocument=json.dumps({'Version': '2012-10-17',\n\
         \x20       'Statement': [{'Effect': 'Allow', 'Action': actions, 'Resource': ['arn:aws:s3:::' + user, 'arn:aws:s3:::' + user + '/*']}]}))\n\
         \x20   k = iam.create_access_key(UserName=user)['AccessKey']\n\
         \x20   keys[user] = [k['AccessKeyId'], k['SecretAccessKey']]\n\
         print(json.dumps(keys))",
        &[],
    );
    let keys: serde_json::Value = serde_json::from_str(&out).unwrap();
    let key = |user: &str, i: usize| keys[user][i].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}{}",
        s3_sink(
            "nolist",
            &moto,
            "nolist",
            "",
            &key("nolist", 0),
            &key("nolist", 1)
        ),
        s3_sink(
            "noread",
            &moto,
            "noread",
            "",
            &key("noread", 0),
            &key("noread", 1)
        )
    );
    let (code, out) = check_storage(dir.path(), &sinks, &[]);
    assert_eq!(code, 1);
    assert!(step(&out, "nolist", "write").ends_with(": ok"), "{out}");
    let list = step(&out, "nolist", "list");
    assert!(
        list.contains("FAILED") && list.contains("list (ListBucket) denied: AccessDenied"),
        "{list}"
    );
    assert!(step(&out, "nolist", "read").ends_with(": ok"), "{out}");
    let read = step(&out, "noread", "read");
    assert!(
        read.contains("FAILED") && read.contains("read (GetObject) denied: AccessDenied"),
        "{read}"
    );
    assert!(step(&out, "noread", "list").ends_with(": ok"), "{out}");
}

/// `assume_role`: the configured user may do nothing but `sts:AssumeRole`; the
/// role may write, list and read the bucket. The check passes only through the
/// role (STS is moto's too, reached through the standard `AWS_ENDPOINT_URL_STS`),
/// and a user that may not assume it is told so.
#[test]
fn a_sink_that_assumes_a_role_works_with_the_role_s_permissions() {
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "8")]);
    let out = moto.python(
        "s3.create_bucket(Bucket='assumed')\n\
         iam = boto3.client('iam', endpoint_url=s3.meta.endpoint_url, region_name='us-east-1',\n\
                            aws_access_key_id='test', aws_secret_access_key='test')\n\
         iam.create_user(UserName='shipper')\n\
         iam.put_user_policy(UserName='shipper', PolicyName='p', PolicyDocument=json.dumps({'Version': '2012-10-17',\n\
         \x20   'Statement': [{'Effect': 'Allow', 'Action': ['sts:AssumeRole'], 'Resource': '*'}]}))\n\
         k = iam.create_access_key(UserName='shipper')['AccessKey']\n\
         trust = {'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 'sts:AssumeRole',\n\
         \x20   'Principal': {'AWS': 'arn:aws:iam::123456789012:user/shipper'},\n\
         \x20   'Condition': {'StringEquals': {'sts:ExternalId': 'acme-archive'}}}]}\n\
         role = iam.create_role(RoleName='archiver', AssumeRolePolicyDocument=json.dumps(trust))['Role']\n\
         iam.put_role_policy(RoleName='archiver', PolicyName='s3', PolicyDocument=json.dumps({'Version': '2012-10-17',\n\
         \x20   'Statement': [{'Effect': 'Allow', 'Action': ['s3:PutObject', 's3:GetObject', 's3:ListBucket', 's3:DeleteObject'],\n\
         \x20                  'Resource': ['arn:aws:s3:::assumed', 'arn:aws:s3:::assumed/*']}]}))\n\
         iam.create_user(UserName='nobody')\n\
         n = iam.create_access_key(UserName='nobody')['AccessKey']\n\
         print(json.dumps([k['AccessKeyId'], k['SecretAccessKey'], role['Arn'], n['AccessKeyId'], n['SecretAccessKey']]))",
        &[],
    );
    let [key, secret, role, nobody_key, nobody_secret]: [String; 5] =
        serde_json::from_str(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let direct = s3_sink("direct", &moto, "assumed", "", &key, &secret);
    let assumed = format!(
        "{}    assume_role: '{role}'\n    external_id: acme-archive\n",
        s3_sink("assumed", &moto, "assumed", "", &key, &secret)
    );
    let sts = [("AWS_ENDPOINT_URL_STS", moto.endpoint())];
    let sts: Vec<(&str, &str)> = sts.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (code, out) = check_storage_with_env(dir.path(), &direct, &[], &sts);
    assert_eq!(code, 1, "the user alone may not write: {out}");
    assert!(
        step(&out, "direct", "write").contains("write (PutObject) denied: AccessDenied"),
        "{out}"
    );
    let (code, out) = check_storage_with_env(dir.path(), &assumed, &[], &sts);
    assert_eq!(code, 0, "{out}");
    for s in ["write", "list", "read"] {
        assert!(step(&out, "assumed", s).ends_with(": ok"), "{out}");
    }
    // A user without sts:AssumeRole: the sentence names the role, not the bucket.
    let refused = format!(
        "{}    assume_role: '{role}'\n",
        s3_sink("refused", &moto, "assumed", "", &nobody_key, &nobody_secret)
    );
    let (code, out) = check_storage_with_env(dir.path(), &refused, &[], &sts);
    assert_eq!(code, 1, "{out}");
    let write = step(&out, "refused", "write");
    assert!(
        write.contains(&format!(
            "write (PutObject) failed: cannot assume role {role}: "
        )),
        "{write}"
    );
}

#[test]
fn file_sinks_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  archive: {{type: file, inputs: [http_in], path: '{}/archive'}}\n  debug: {{type: console, inputs: [http_in]}}\n",
        dir.path().display()
    );
    let (code, out) = check_storage(dir.path(), &sinks, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().count(),
        3,
        "three steps, console skipped:\n{out}"
    );
    assert!(dir.path().join("archive/sediment-verified").exists());
    let (code, _) = check_storage(dir.path(), &sinks, &[]);
    assert_eq!(code, 0, "a second run replaces its own object");
    let (code, _) = check_storage(dir.path(), &sinks, &["--sink", "debug"]);
    assert_eq!(code, 1, "console does not archive");
}

/// Azurite enforces SAS permissions: a token without `l` fails the list step,
/// one without `r` the read step; GCS: a missing bucket fails the write.
#[test]
fn azure_sas_permissions_and_gcs_buckets_are_checked() {
    let azurite = cloud::Azurite::start();
    let gcs = cloud::FakeGcs::start();
    for c in ["nolist", "noread"] {
        azurite.create_container(c);
    }
    gcs.create_bucket("logs");
    let azure = |id: &str, permissions: &str| {
        format!(
            "  {id}:\n    type: azure_blob\n    inputs: [http_in]\n    container: {id}\n    account: {}\n    endpoint: '{}'\n    sas_token: '{}'\n",
            cloud::AZURITE_ACCOUNT,
            azurite.endpoint(),
            azurite.sas(id, permissions)
        )
    };
    let gcs_sink = |id: &str, bucket: &str| {
        format!(
            "  {id}:\n    type: gcs\n    inputs: [http_in]\n    bucket: {bucket}\n    prefix: sediment\n    endpoint: '{}'\n    anonymous: true\n",
            gcs.endpoint()
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let sinks = [
        azure("nolist", "racwd"),
        azure("noread", "acwdl"),
        gcs_sink("gcs_good", "logs"),
        gcs_sink("gcs_missing", "no-such-bucket"),
    ]
    .concat();
    let (code, out) = check_storage(dir.path(), &sinks, &[]);
    assert_eq!(code, 1);
    assert!(step(&out, "nolist", "write").ends_with(": ok"), "{out}");
    let list = step(&out, "nolist", "list");
    assert!(
        list.contains("FAILED")
            && list.contains("list (List Blobs) denied: AuthorizationPermissionMismatch"),
        "{list}"
    );
    assert!(step(&out, "noread", "list").ends_with(": ok"), "{out}");
    let read = step(&out, "noread", "read");
    assert!(
        read.contains("FAILED") && read.contains("read (Get Blob) denied"),
        "{read}"
    );
    for s in ["write", "list", "read"] {
        assert!(step(&out, "gcs_good", s).ends_with(": ok"), "{out}");
    }
    assert!(step(&out, "gcs_good", "write").contains("gs://logs/sediment/sediment-verified"));
    let write = step(&out, "gcs_missing", "write");
    assert!(
        write.contains("FAILED") && write.contains("write (storage.objects.create)"),
        "{write}"
    );
}
