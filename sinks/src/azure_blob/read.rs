//! The read side of [`AzureBlobStore`] that restore uses: listing pages with
//! access tiers, and blobs streamed from a byte offset.
//!
//! A blob in the `Archive` tier is cold: it must be rehydrated to an online
//! tier before it can be read. A blob is read in ranged requests of
//! [`CHUNK`] bytes (the SDK's way), so reading one makes `⌈size / CHUNK⌉` GETs.

use std::sync::Arc;

use azure_core::request_options::{NextMarker, Range};
use futures::StreamExt;
use sediment_core::storage::{ByteStream, ListPage, ListedObject, ObjectStore, StorageError};

use super::store::AzureBlobStore;
use crate::archive::cloud::{self, error_chain, storage_error, Call, Failure};

/// Bytes per ranged GET.
pub(super) const CHUNK: u64 = 16 << 20;
/// Most blobs per listing page (the service's maximum is 5,000).
const PAGE: u32 = 1000;

fn read_error(at: &(String, String), e: &azure_core::Error) -> StorageError {
    let call = Call {
        sink: &at.0,
        location: &at.1,
        permission: "read (Get Blob)",
    };
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, error_code } => storage_error(
            call,
            Failure::Answered {
                status: *status as u16,
                code: error_code.as_deref(),
            },
            "",
        ),
        _ => storage_error(call, Failure::NoAnswer, &error_chain(e)),
    }
}

pub(super) fn reads_for(size: u64) -> u64 {
    size.div_ceil(CHUNK).max(1)
}

pub(super) async fn list_page(
    store: &AzureBlobStore,
    prefix: &str,
    start: Option<String>,
) -> Result<ListPage, StorageError> {
    let full = format!("{}{prefix}", store.azure.prefix);
    let mut builder = store.container.list_blobs().prefix(full).max_results(
        azure_core::prelude::MaxResults::new(std::num::NonZeroU32::new(PAGE).expect("not zero")),
    );
    if let Some(marker) = start {
        builder = builder.marker(NextMarker::new(marker));
    }
    let page = match builder.into_stream().next().await {
        Some(page) => page.map_err(|e| store.error("list (List Blobs)", e))?,
        None => return Ok(ListPage::default()),
    };
    let objects = page
        .blobs
        .blobs()
        .filter_map(|blob| {
            let tier = blob
                .properties
                .access_tier
                .as_ref()
                .map(|t| t.as_ref().to_owned());
            Some(ListedObject {
                key: cloud::key_of(&store.azure.prefix, &blob.name)?.to_owned(),
                size: blob.properties.content_length,
                cold: tier.as_deref() == Some("Archive"),
                storage_class: tier,
            })
        })
        .collect();
    let next = page
        .next_marker
        .map(|m| m.as_str().to_owned())
        .filter(|m| !m.is_empty());
    Ok(ListPage { objects, next })
}

pub(super) async fn get_stream(
    store: &AzureBlobStore,
    key: &str,
    offset: u64,
) -> Result<ByteStream, StorageError> {
    let at = Arc::new((
        store.azure.sink.clone(),
        format!("{}{key}", store.location()),
    ));
    let mut pages = store
        .blob(key)
        .get()
        .range(Range::RangeFrom(offset..))
        .chunk_size(CHUNK)
        .into_stream();
    // The first answer decides whether the blob can be read at all.
    let first = match pages.next().await {
        Some(Ok(page)) => page,
        Some(Err(e)) => return Err(read_error(&at, &e)),
        None => return Ok(futures::stream::empty().boxed()),
    };
    let body = |data: azure_core::ResponseBody, at: Arc<(String, String)>| {
        data.map(move |piece| piece.map_err(|e| read_error(&at, &e)))
            .boxed()
    };
    let later = at.clone();
    let rest = pages.flat_map(move |page| match page {
        Ok(page) => body(page.data, later.clone()),
        Err(e) => {
            futures::stream::once(futures::future::ready(Err(read_error(&later, &e)))).boxed()
        }
    });
    let stream = body(first.data, at).chain(rest);
    Ok(stream.boxed())
}
