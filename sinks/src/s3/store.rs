//! [`S3Store`]: the five [`ObjectStore`] operations over `aws-sdk-s3`.
//!
//! - Create-if-absent is `If-None-Match: *`: on `PutObject` for objects up to
//!   `part_size`, on `CompleteMultipartUpload` for larger ones (S3 checks the
//!   condition when the upload completes; a `412` aborts the upload and answers
//!   [`PutOutcome::AlreadyExists`]). Parts are streamed from the staging file at
//!   their offset, one at a time, so memory stays at about one part's buffers.
//! - The segment id travels as `x-amz-meta-sediment-segment-id`; `head` returns it.
//! - Errors are translated into the shared [`Failure`] and classified and worded
//!   by [`crate::archive::cloud`], the one retry policy of the three cloud backends.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;

use super::S3Settings;
use crate::archive::cloud::{self, error_chain, storage_error, Call, Failure};
use sediment_core::storage::{
    ByteStream as Bytes, ListPage, ObjectInfo, ObjectStore, PutOutcome, StorageError,
};

/// The metadata key (without `x-amz-meta-`) holding the staging segment id.
pub const SEGMENT_ID_METADATA: &str = "sediment-segment-id";

/// An S3 bucket (and prefix) as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub(super) client: Client,
    pub(super) s3: S3Settings,
}

impl S3Store {
    /// Builds the client: region and credentials from the options, else the default chain.
    pub async fn connect(s3: S3Settings) -> S3Store {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60))
                .build(),
        );
        if let Some(region) = &s3.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret, token)) = &s3.static_keys {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                token.clone(),
                None,
                "sediment-config",
            ));
        }
        let mut base = loader.load().await;
        if base.region().is_none() {
            base = base
                .into_builder()
                .region(Region::from_static("us-east-1"))
                .build();
        }
        if let Some((role, external_id)) = &s3.assume_role {
            let mut provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name(format!("sediment-{}", s3.sink))
                .configure(&base);
            if let Some(external_id) = external_id {
                provider = provider.external_id(external_id);
            }
            let provider = provider.build().await;
            base = base
                .into_builder()
                .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(provider))
                .build();
        }
        let mut config =
            aws_sdk_s3::config::Builder::from(&base).force_path_style(s3.force_path_style);
        if let Some(endpoint) = &s3.endpoint {
            config = config.endpoint_url(endpoint);
        }
        S3Store {
            client: Client::from_conf(config.build()),
            s3,
        }
    }

    pub(super) fn full_key(&self, key: &str) -> String {
        cloud::full_name(&self.s3.prefix, key)
    }

    fn sse(&self) -> Option<ServerSideEncryption> {
        self.s3
            .server_side_encryption
            .as_deref()
            .map(ServerSideEncryption::from)
    }

    fn storage_class(&self) -> Option<StorageClass> {
        self.s3.storage_class.as_deref().map(StorageClass::from)
    }

    /// One sentence for a failed call, classified by the shared policy.
    pub(super) fn error<E>(&self, permission: &str, e: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let location = self.location();
        let call = Call {
            sink: &self.s3.sink,
            location: &location,
            permission,
        };
        classify(
            call,
            self.s3.assume_role.as_ref().map(|(role, _)| role.as_str()),
            &e,
        )
    }

    async fn put_single(
        &self,
        key: &str,
        source: &Path,
        segment_id: &str,
    ) -> Result<PutOutcome, StorageError> {
        let body = ByteStream::from_path(source)
            .await
            .map_err(|e| cloud::staged_file_error(source, e))?;
        let result = self
            .client
            .put_object()
            .bucket(&self.s3.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .content_type("application/gzip")
            .metadata(SEGMENT_ID_METADATA, segment_id)
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.s3.kms_key_id.clone())
            .set_storage_class(self.storage_class())
            .body(body)
            .send()
            .await;
        match result {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if is_precondition_failed(&e) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(self.error("write (PutObject)", e)),
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        source: &Path,
        size: u64,
        segment_id: &str,
    ) -> Result<PutOutcome, StorageError> {
        let full_key = self.full_key(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.s3.bucket)
            .key(&full_key)
            .content_type("application/gzip")
            .metadata(SEGMENT_ID_METADATA, segment_id)
            .set_server_side_encryption(self.sse())
            .set_ssekms_key_id(self.s3.kms_key_id.clone())
            .set_storage_class(self.storage_class())
            .send()
            .await
            .map_err(|e| self.error("write (PutObject)", e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = self
            .upload_parts_and_complete(&full_key, &upload_id, source, size)
            .await;
        if !matches!(result, Ok(PutOutcome::Created)) {
            // Best effort: a leftover upload only costs storage until the bucket's
            // lifecycle rule (AbortIncompleteMultipartUpload) removes it.
            let aborted = self
                .client
                .abort_multipart_upload()
                .bucket(&self.s3.bucket)
                .key(&full_key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = aborted {
                tracing::debug!(sink = %self.s3.sink, key = %full_key, error = %e, "cannot abort a multipart upload");
            }
        }
        result
    }

    async fn upload_parts_and_complete(
        &self,
        full_key: &str,
        upload_id: &str,
        source: &Path,
        size: u64,
    ) -> Result<PutOutcome, StorageError> {
        let part_size = self.s3.part_size;
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < size {
            let length = part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(source)
                .offset(offset)
                .length(Length::Exact(length))
                .build()
                .await
                .map_err(|e| cloud::staged_file_error(source, e))?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.s3.bucket)
                .key(full_key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(length as i64)
                .body(body)
                .send()
                .await
                .map_err(|e| self.error("write (PutObject)", e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag().map(str::to_owned))
                    .build(),
            );
            offset += length;
            number += 1;
        }
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.s3.bucket)
            .key(full_key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if is_precondition_failed(&e) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(self.error("write (PutObject)", e)),
        }
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.s3.bucket, self.s3.prefix)
    }

    async fn put_if_absent(
        &self,
        key: &str,
        source: &Path,
        segment_id: &str,
    ) -> Result<PutOutcome, StorageError> {
        let size = tokio::fs::metadata(source)
            .await
            .map_err(|e| cloud::staged_file_error(source, e))?
            .len();
        if size > self.s3.part_size {
            self.put_multipart(key, source, size, segment_id).await
        } else {
            self.put_single(key, source, segment_id).await
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.s3.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                segment_id: out
                    .metadata()
                    .and_then(|m| m.get(SEGMENT_ID_METADATA))
                    .cloned(),
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(self.error("read (GetObject)", e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let mut keys = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.s3.bucket)
            .prefix(self.full_key(prefix))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("list (ListBucket)", e))?;
            let listed = page.contents().iter().filter_map(|o| o.key());
            keys.extend(
                listed.filter_map(|name| cloud::key_of(&self.s3.prefix, name).map(str::to_owned)),
            );
        }
        keys.sort();
        Ok(keys)
    }

    async fn list_page(
        &self,
        prefix: &str,
        start: Option<String>,
    ) -> Result<ListPage, StorageError> {
        super::read::list_page(self, prefix, start).await
    }

    async fn get_stream(&self, key: &str, offset: u64) -> Result<Bytes, StorageError> {
        super::read::get_stream(self, key, offset).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.s3.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("read (GetObject)", e))?;
        let bytes = out.body.collect().await.map_err(|e| {
            let location = format!("{}{key}", self.location());
            let call = Call {
                sink: &self.s3.sink,
                location: &location,
                permission: "read (GetObject)",
            };
            let detail = format!("the body was cut short: {}", error_chain(&e));
            storage_error(call, Failure::NoAnswer, &detail)
        })?;
        Ok(bytes.into_bytes().to_vec())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.s3.bucket)
            .key(self.full_key(key))
            .send()
            .await
            .map_err(|e| self.error("delete (DeleteObject)", e))?;
        Ok(())
    }
}

fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            s.err().code() == Some("PreconditionFailed") || s.raw().status().as_u16() == 412
        }
        _ => false,
    }
}

/// When a request failed for want of credentials: whether the provider timed
/// out, and the error that says what went wrong.
fn credentials_error<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<(bool, &'a (dyn std::error::Error + 'static))> {
    use aws_credential_types::provider::error::CredentialsError;
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(credentials) = s.downcast_ref::<CredentialsError>() {
            let timed_out = matches!(credentials, CredentialsError::ProviderTimedOut(_));
            // Its own text is generic ("an error occurred while loading
            // credentials"); its source says what went wrong.
            return Some((timed_out, s.source().unwrap_or(s)));
        }
        source = s.source();
    }
    None
}

/// Translates an SDK error into the shared [`Failure`] and words it.
///
/// A request that failed for want of credentials never reached the bucket: a
/// refused role or no credentials at all need the operator; a provider that
/// timed out is transient. `role` is the configured `assume_role`, if any.
fn classify<E>(call: Call<'_>, role: Option<&str>, e: &SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some((timed_out, cause)) = credentials_error(e) {
        let how = match role {
            Some(role) => format!("cannot assume role {role}"),
            None => "cannot get AWS credentials".to_owned(),
        };
        let detail = format!("{how}: {}", error_chain(cause));
        return storage_error(call, Failure::Credentials { timed_out }, &detail);
    }
    match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code();
            // A success status whose body the SDK cannot decode says nothing
            // itself: the chain tells what was wrong with the body. (S3's "200
            // with an <Error> body" has a code and is classified by it.)
            let detail = match (code, s.raw().status().is_success()) {
                (None, true) => error_chain(s.err()),
                _ => s.err().message().unwrap_or_default().to_owned(),
            };
            storage_error(call, Failure::Answered { status, code }, &detail)
        }
        SdkError::ResponseError(r) => storage_error(
            call,
            Failure::Answered {
                status: r.raw().status().as_u16(),
                code: None,
            },
            &error_chain(e),
        ),
        SdkError::ConstructionFailure(_) => {
            storage_error(call, Failure::Unbuildable, &error_chain(e))
        }
        _ => storage_error(call, Failure::NoAnswer, &error_chain(e)),
    }
}

/// [`classify`] of the SDK error S3 gives for an answer `status` with `code`.
#[cfg(test)]
pub(crate) fn classify_answer(status: u16, code: Option<&str>) -> StorageError {
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;
    let mut meta = ErrorMetadata::builder();
    if let Some(code) = code {
        meta = meta.code(code).message("the service's message");
    }
    let raw = HttpResponse::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(status).expect("a valid status"),
        SdkBody::empty(),
    );
    let e = SdkError::service_error(PutObjectError::generic(meta.build()), raw);
    let call = Call {
        sink: "archive",
        location: "s3://b/",
        permission: "write (test)",
    };
    classify(call, None, &e)
}
