//! The read side of [`S3Store`] that restore uses: listing pages with storage
//! classes, and objects streamed from a byte offset (a ranged `GetObject`).
//!
//! Cold objects are those in `GLACIER` or `DEEP_ARCHIVE` that are not restored
//! (the listing asks for each object's restore status). `GLACIER_IR` is read
//! like `STANDARD`. Objects whose Intelligent-Tiering archive tier was reached
//! show as `INTELLIGENT_TIERING` in a listing and are only found cold on read.

use futures::StreamExt;
use sediment_core::storage::{ByteStream, ListPage, ListedObject, ObjectStore, StorageError};

use super::store::S3Store;
use crate::archive::cloud::{self, error_chain, storage_error, Call, Failure};

/// Most keys per listing page (S3's own maximum).
const PAGE: i32 = 1000;

pub(super) async fn list_page(
    store: &S3Store,
    prefix: &str,
    start: Option<String>,
) -> Result<ListPage, StorageError> {
    let mut request = store
        .client
        .list_objects_v2()
        .bucket(&store.s3.bucket)
        .prefix(store.full_key(prefix))
        .max_keys(PAGE)
        .optional_object_attributes(aws_sdk_s3::types::OptionalObjectAttributes::RestoreStatus);
    if let Some(token) = start {
        request = request.continuation_token(token);
    }
    let page = request
        .send()
        .await
        .map_err(|e| store.error("list (ListBucket)", e))?;
    let objects = page
        .contents()
        .iter()
        .filter_map(|o| {
            let key = cloud::key_of(&store.s3.prefix, o.key()?)?.to_owned();
            let class = o.storage_class().map(|c| c.as_str().to_owned());
            let restored = o
                .restore_status()
                .is_some_and(|r| r.is_restore_in_progress() == Some(false));
            let cold = matches!(class.as_deref(), Some("GLACIER" | "DEEP_ARCHIVE")) && !restored;
            Some(ListedObject {
                key,
                size: o.size().unwrap_or(0).max(0) as u64,
                storage_class: class,
                cold,
            })
        })
        .collect();
    let next = if page.is_truncated() == Some(true) {
        page.next_continuation_token().map(str::to_owned)
    } else {
        None
    };
    Ok(ListPage { objects, next })
}

pub(super) async fn get_stream(
    store: &S3Store,
    key: &str,
    offset: u64,
) -> Result<ByteStream, StorageError> {
    let mut request = store
        .client
        .get_object()
        .bucket(&store.s3.bucket)
        .key(store.full_key(key));
    if offset > 0 {
        request = request.range(format!("bytes={offset}-"));
    }
    let out = request
        .send()
        .await
        .map_err(|e| store.error("read (GetObject)", e))?;
    let (sink, location) = (store.s3.sink.clone(), format!("{}{key}", store.location()));
    let body = out.body;
    let stream = futures::stream::unfold(Some(body), move |body| {
        let (sink, location) = (sink.clone(), location.clone());
        async move {
            let mut body = body?;
            match body.try_next().await {
                Ok(Some(bytes)) => Some((Ok(bytes), Some(body))),
                Ok(None) => None,
                Err(e) => {
                    let call = Call {
                        sink: &sink,
                        location: &location,
                        permission: "read (GetObject)",
                    };
                    let detail = format!("the body was cut short: {}", error_chain(&e));
                    Some((Err(storage_error(call, Failure::NoAnswer, &detail)), None))
                }
            }
        }
    });
    Ok(stream.boxed())
}
