//! The read side of [`GcsStore`] that restore uses: listing pages with storage
//! classes, and objects streamed from a byte offset (a ranged download).
//!
//! No GCS storage class needs a separate restore before reading (`ARCHIVE` and
//! `COLDLINE` objects are read directly, at a retrieval fee), so nothing is cold.

use futures::StreamExt;
use gcloud_storage::http::objects::download::Range;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use sediment_core::storage::{ByteStream, ListPage, ListedObject, ObjectStore, StorageError};

use super::store::GcsStore;
use crate::archive::cloud::{self, error_chain, storage_error, Call, Failure};

/// Most objects per listing page (the JSON API's maximum).
const PAGE: i32 = 1000;

pub(super) async fn list_page(
    store: &GcsStore,
    prefix: &str,
    start: Option<String>,
) -> Result<ListPage, StorageError> {
    let request = ListObjectsRequest {
        bucket: store.gcs.bucket.clone(),
        prefix: Some(store.name(prefix)),
        max_results: Some(PAGE),
        page_token: start,
        ..Default::default()
    };
    let page = store
        .client
        .list_objects(&request)
        .await
        .map_err(|e| store.error("list (storage.objects.list)", e))?;
    let objects = page
        .items
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| {
            Some(ListedObject {
                key: cloud::key_of(&store.gcs.prefix, &o.name)?.to_owned(),
                size: o.size.max(0) as u64,
                storage_class: o.storage_class,
                cold: false,
            })
        })
        .collect();
    let next = page.next_page_token.filter(|t| !t.is_empty());
    Ok(ListPage { objects, next })
}

pub(super) async fn get_stream(
    store: &GcsStore,
    key: &str,
    offset: u64,
) -> Result<ByteStream, StorageError> {
    let request = GetObjectRequest {
        bucket: store.gcs.bucket.clone(),
        object: store.name(key),
        ..Default::default()
    };
    let range = Range((offset > 0).then_some(offset), None);
    let stream = store
        .client
        .download_streamed_object(&request, &range)
        .await
        .map_err(|e| store.error("read (storage.objects.get)", e))?;
    let (sink, location) = (store.gcs.sink.clone(), format!("{}{key}", store.location()));
    let stream = stream.map(move |piece| {
        piece.map_err(|e| {
            let call = Call {
                sink: &sink,
                location: &location,
                permission: "read (storage.objects.get)",
            };
            let detail = format!("the body was cut short: {}", error_chain(&e));
            storage_error(call, Failure::NoAnswer, &detail)
        })
    });
    Ok(stream.boxed())
}
