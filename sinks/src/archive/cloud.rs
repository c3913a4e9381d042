//! What the three cloud backends (`s3`, `gcs`, `azure_blob`) share: one retry
//! classification, one way to word a failed call, one prefix rule.
//!
//! Why one module: each SDK reports failures in its own shape, and when every
//! backend decided on its own what is worth retrying they drifted apart (`408`
//! was transient for GCS and Azure but not for S3). Now a backend only
//! translates its SDK's error into a [`Failure`] — what the service answered,
//! or that it never answered — and [`storage_error`] decides and words the rest.
//! The uploader retries both classes forever; the class decides how loudly it
//! logs (a permanent error needs an operator, a transient one does not).

use sediment_core::storage::StorageError;

/// A failed storage call in provider-neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The service answered `status`, with its error code when it sent one
    /// (S3 `Code`, GCS `reason`, Azure `x-ms-error-code`).
    Answered {
        /// The HTTP status.
        status: u16,
        /// The provider's error code, if any.
        code: Option<&'a str>,
    },
    /// No answer arrived: a timeout, a refused or reset connection, a body cut short.
    NoAnswer,
    /// The request could not be built or signed locally.
    Unbuildable,
    /// No credentials could be obtained; `timed_out` when the provider only timed out.
    Credentials {
        /// The credential provider timed out (worth retrying soon).
        timed_out: bool,
    },
}

/// Error codes that name a transient condition whatever the status they come
/// with, across the three providers (S3 codes, GCS reasons, Azure codes).
const TRANSIENT_CODES: &[&str] = &[
    // S3
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "TooManyRequestsException",
    "InternalError",
    "ServiceUnavailable",
    "OperationAborted",
    // GCS
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "backendError",
    "internalError",
    // Azure
    "ServerBusy",
    "OperationTimedOut",
];

/// Whether a failure is worth retrying soon (`true`) or needs an operator.
///
/// Transient: no answer at all, `408`, `429`, any `5xx`, a transient error code,
/// a credential provider that timed out, and a success status whose body could
/// not be read (the call may have taken effect; the retry's `head` tells).
/// Everything else the service answered (`4xx`: denied, missing bucket, bad
/// request) and requests that cannot be built or signed are permanent.
pub fn is_transient(failure: Failure<'_>) -> bool {
    match failure {
        Failure::Answered { status, code } => {
            let code = code.filter(|c| !c.is_empty());
            if let Some(code) = code {
                if TRANSIENT_CODES.contains(&code) {
                    return true;
                }
            }
            matches!(status, 408 | 429 | 500..=599)
                || ((200..300).contains(&status) && code.is_none())
        }
        Failure::NoAnswer => true,
        Failure::Unbuildable => false,
        Failure::Credentials { timed_out } => timed_out,
    }
}

/// A failed call on a sink's storage, for [`storage_error`].
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The sink id.
    pub sink: &'a str,
    /// The store's location (`s3://bucket/prefix/`).
    pub location: &'a str,
    /// What was attempted and the permission it needs (`write (PutObject)`).
    pub permission: &'a str,
}

/// The classified error for a failed call, as one sentence:
/// `sink S: LOCATION: PERMISSION denied|failed: CODE (DETAIL)`.
///
/// `detail` is the provider's message for an answer, else what went wrong
/// (an [`error_chain`]); it may be empty.
pub fn storage_error(call: Call<'_>, failure: Failure<'_>, detail: &str) -> StorageError {
    let Call {
        sink,
        location,
        permission,
    } = call;
    let (verb, reason) = match failure {
        Failure::Answered { status, code } => {
            let verb = if matches!(status, 401 | 403) {
                "denied"
            } else {
                "failed"
            };
            let code = match code.filter(|c| !c.is_empty()) {
                Some(code) => code.to_owned(),
                None if (200..300).contains(&status) => {
                    format!("HTTP {status} with a body the client cannot read")
                }
                None => format!("HTTP {status}"),
            };
            let reason = if detail.is_empty() {
                code
            } else {
                format!("{code} ({detail})")
            };
            (verb, reason)
        }
        Failure::Unbuildable => ("failed", format!("the request cannot be built: {detail}")),
        Failure::NoAnswer | Failure::Credentials { .. } => ("failed", detail.to_owned()),
    };
    let message = format!("sink {sink}: {location}: {permission} {verb}: {reason}");
    if is_transient(failure) {
        StorageError::Transient(message)
    } else {
        StorageError::Permanent(message)
    }
}

/// `Display` of an error and its sources, `: `-joined (SDKs' top levels say
/// little: "dispatch failure", "service error"). A source whose text the chain
/// already holds is skipped, and URL query strings are cut, because signed
/// URLs carry secrets (SAS `sig=`, presigned `X-Amz-Signature=`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    without_url_queries(&text)
}

/// `text` with the query string of every `scheme://…` URL replaced by `?…`.
fn without_url_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // Copy through the scheme separator, then the URL up to its query.
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | ','))
            .unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        match url.find('?') {
            Some(q) => {
                out.push_str(&url[..q]);
                out.push_str("?…");
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The error for a staging file a backend cannot read while uploading it:
/// transient, since the file is ours and the next attempt reads it again.
pub fn staged_file_error(path: &std::path::Path, e: impl std::fmt::Display) -> StorageError {
    StorageError::Transient(format!("cannot read staged file {}: {e}", path.display()))
}

/// Validates a configured key prefix and normalises it to empty or ending in `/`.
///
/// The prefix is prepended to every archive key, so it obeys the rule keys do:
/// relative, no empty, `.` or `..` segment, no control characters.
pub fn parse_prefix(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    if raw.starts_with('/') {
        return Err("must be relative (no leading `/`)".into());
    }
    if raw.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("must not contain empty, `.` or `..` segments".into());
    }
    Ok(format!("{trimmed}/"))
}

/// The full object name of `key` under `prefix` (as returned by [`parse_prefix`]).
pub fn full_name(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

/// The archive key of a listed object name, `None` if it is not under `prefix`.
pub fn key_of<'a>(prefix: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(prefix)
}

// The shared policy test runs each backend: it needs all three.
#[cfg(all(test, feature = "s3", feature = "gcs", feature = "azure_blob"))]
mod tests {
    use super::*;

    /// `(status, error code, transient?)`: the one policy, and what each backend's
    /// SDK error for that answer is classified as. Every backend must agree.
    const ANSWERS: &[(u16, Option<&str>, bool)] = &[
        (400, None, false),
        (400, Some("InvalidArgument"), false),
        (400, Some("RequestTimeout"), true),
        (401, None, false),
        (403, Some("AccessDenied"), false),
        (403, Some("AuthorizationPermissionMismatch"), false),
        (403, Some("RequestTimeTooSkewed"), true),
        (404, Some("NoSuchBucket"), false),
        (404, Some("ContainerNotFound"), false),
        (408, None, true),
        (409, Some("OperationAborted"), true),
        (409, Some("LeaseIdMissing"), false),
        (412, None, false),
        (429, None, true),
        (429, Some("rateLimitExceeded"), true),
        (500, None, true),
        (500, Some("InternalError"), true),
        (502, None, true),
        (503, Some("SlowDown"), true),
        (503, Some("ServerBusy"), true),
        (504, None, true),
        (200, None, true),
        (200, Some("InternalError"), true),
        (200, Some("AccessDenied"), false),
    ];

    type Backend = fn(u16, Option<&str>) -> StorageError;

    fn backends() -> [(&'static str, Backend); 3] {
        [
            ("s3", crate::s3::classify_answer_for_tests),
            ("gcs", crate::gcs::classify_answer_for_tests),
            ("azure_blob", crate::azure_blob::classify_answer_for_tests),
        ]
    }

    #[test]
    fn every_backend_classifies_every_answer_by_the_one_policy() {
        let mut wrong = Vec::new();
        for &(status, code, transient) in ANSWERS {
            assert_eq!(
                is_transient(Failure::Answered { status, code }),
                transient,
                "policy for {status} {code:?}"
            );
            for (name, backend) in backends() {
                let e = backend(status, code);
                if matches!(e, StorageError::Transient(_)) != transient {
                    wrong.push(format!("{name}: {status} {code:?} -> {e:?}"));
                }
                let text = e.to_string();
                let named = code.unwrap_or("HTTP");
                if !text.starts_with("sink archive: ") || !text.contains(named) {
                    wrong.push(format!("{name}: {status} {code:?} worded `{text}`"));
                }
                let verb = if matches!(status, 401 | 403) {
                    "denied"
                } else {
                    "failed"
                };
                if !text.contains(&format!("write (test) {verb}: ")) {
                    wrong.push(format!("{name}: {status} {code:?} worded `{text}`"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        assert!(is_transient(Failure::NoAnswer));
        assert!(!is_transient(Failure::Unbuildable));
        assert!(is_transient(Failure::Credentials { timed_out: true }));
        assert!(!is_transient(Failure::Credentials { timed_out: false }));
    }

    #[test]
    fn error_chains_skip_repeats_and_cut_signed_queries() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "dispatch failure",
            Some(Box::new(E(
                "error sending request for url (https://a.blob.core.windows.net/c/k?sv=1&sig=SECRET)",
                Some(Box::new(E("connection refused", None))),
            ))),
        );
        let text = error_chain(&e);
        assert_eq!(
            text,
            "dispatch failure: error sending request for url (https://a.blob.core.windows.net/c/k?…): connection refused"
        );
        let e = E("io error: refused", Some(Box::new(E("refused", None))));
        assert_eq!(error_chain(&e), "io error: refused");
        assert_eq!(
            without_url_queries("see http://h/p?X-Amz-Signature=abc and https://x/y"),
            "see http://h/p?… and https://x/y"
        );
    }

    #[test]
    fn prefixes_are_normalised_and_cannot_escape() {
        assert_eq!(parse_prefix("").unwrap(), "");
        assert_eq!(parse_prefix("logs").unwrap(), "logs/");
        assert_eq!(parse_prefix("a/b/").unwrap(), "a/b/");
        for bad in [
            "/logs", "a//b", "../x", "a/./b", "a/..", "a\0b", "a\nb", "/",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad:?} accepted");
        }
        let prefix = parse_prefix("p").unwrap();
        let name = full_name(&prefix, "year=2026/x.json.gz");
        assert_eq!(name, "p/year=2026/x.json.gz");
        assert_eq!(key_of(&prefix, &name), Some("year=2026/x.json.gz"));
        assert_eq!(key_of(&prefix, "q/other"), None);
    }
}
