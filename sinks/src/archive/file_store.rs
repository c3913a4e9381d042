//! The `file` backend: objects are files under a local folder.
//!
//! Create-if-absent is `link(2)` of a fully written, fsync'd temporary file onto
//! the final name: like `O_EXCL` it fails when the name is taken, and unlike a
//! plain `O_EXCL` create it never exposes a half-written object, nor leaves one
//! behind after a crash to block the name. The segment id is read back from the
//! object's own first gzip member.

use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::member::{self, MemberKind};
use sediment_core::storage::{
    ByteStream, ListPage, ListedObject, ObjectInfo, ObjectStore, PutOutcome, StorageError,
};

/// Objects as files below `root`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    /// Permission bits of new objects; their folders get search bits where read is allowed.
    file_mode: u32,
}

impl FileStore {
    /// A store rooted at `root` (created on first write), objects `0640`.
    pub fn new(root: PathBuf) -> FileStore {
        FileStore {
            root,
            file_mode: 0o640,
        }
    }

    /// The same store creating objects with `mode` (e.g. `0o600`).
    pub fn with_file_mode(self, mode: u32) -> FileStore {
        FileStore {
            file_mode: mode,
            ..self
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StorageError {
    let message = format!("cannot {what} {}: {e}", path.display());
    match e.kind() {
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            StorageError::Permanent(message)
        }
        _ => StorageError::Transient(message),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StorageError::Transient(format!("storage task failed: {e}"))))
}

/// Makes a directory entry durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl ObjectStore for FileStore {
    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        source: &Path,
        segment_id: &str,
    ) -> Result<PutOutcome, StorageError> {
        if let Err(e) = super::naming::check_key(key) {
            return Err(StorageError::Permanent(format!(
                "cannot write {key:?} under {}: the key {}",
                self.root.display(),
                e.trim_start_matches("renders ")
            )));
        }
        let target = self.path(key);
        let source = source.to_owned();
        let segment_id = segment_id.to_owned();
        let file_mode = self.file_mode;
        let dir_mode = file_mode | ((file_mode & 0o444) >> 2);
        blocking(move || {
            let dir = target
                .parent()
                .expect("keys are relative file names")
                .to_owned();
            fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(&dir)
                .map_err(|e| io_error("create folder", &dir, e))?;
            let name = target
                .file_name()
                .expect("keys name a file")
                .to_string_lossy();
            let tmp = dir.join(format!(".{name}.{segment_id}.tmp"));
            fs::copy(&source, &tmp).map_err(|e| io_error("write", &tmp, e))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(file_mode))
                .map_err(|e| io_error("set the mode of", &tmp, e))?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_error("sync", &tmp, e))?;
            let linked = fs::hard_link(&tmp, &target);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    sync_dir(&dir).map_err(|e| io_error("sync folder", &dir, e))?;
                    Ok(PutOutcome::Created)
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
                Err(e) => Err(io_error("create", &target, e)),
            }
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.path(key);
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error("open", &path, e)),
            };
            let size = file
                .metadata()
                .map_err(|e| io_error("stat", &path, e))?
                .len();
            let mut header = [0u8; member::HEADER_LEN];
            let segment_id = match file.read_exact(&mut header) {
                Ok(()) => match member::parse_header(&header) {
                    Some(h) => match h.kind {
                        MemberKind::Head(id) => {
                            Some(uuid::Uuid::from_bytes(id).hyphenated().to_string())
                        }
                        MemberKind::Data => None,
                    },
                    None => None,
                },
                Err(_) => None,
            };
            Ok(Some(ObjectInfo { size, segment_id }))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.clone()];
            while let Some(dir) = stack.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("list", &dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                    let path = entry.path();
                    if entry.file_name().to_string_lossy().starts_with('.') {
                        continue; // in-flight temporary files
                    }
                    if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let key = rel.to_string_lossy().into_owned();
                        if key.starts_with(&prefix) {
                            keys.push(key);
                        }
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    /// A folder is read in one go (a directory has no pages), from the deepest
    /// folder the prefix names: `year=2026/month=11/day=22/acme.` reads only
    /// that day's folder.
    async fn list_page(
        &self,
        prefix: &str,
        start: Option<String>,
    ) -> Result<ListPage, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let base = match prefix.rfind('/') {
                Some(i) => root.join(&prefix[..i]),
                None => root.clone(),
            };
            let mut objects = Vec::new();
            let mut stack = vec![base];
            while let Some(dir) = stack.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error("list", &dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error("list", &dir, e))?;
                    if entry.file_name().to_string_lossy().starts_with('.') {
                        continue; // in-flight temporary files
                    }
                    let path = entry.path();
                    let Ok(rel) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key = rel.to_string_lossy().into_owned();
                    let meta = entry.metadata().map_err(|e| io_error("stat", &path, e))?;
                    if meta.is_dir() {
                        // Only folders that can hold keys with the prefix.
                        let dir_key = format!("{key}/");
                        if dir_key.starts_with(&prefix) || prefix.starts_with(&dir_key) {
                            stack.push(path);
                        }
                    } else if key.starts_with(&prefix)
                        && start.as_deref().is_none_or(|s| key.as_str() > s)
                    {
                        objects.push(ListedObject {
                            key,
                            size: meta.len(),
                            storage_class: None,
                            cold: false,
                        });
                    }
                }
            }
            objects.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(ListPage {
                objects,
                next: None,
            })
        })
        .await
    }

    async fn get_stream(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        use futures::StreamExt;
        use tokio::io::AsyncSeekExt;
        let path = self.path(key);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error("open", &path, e))?;
        if offset > 0 {
            file.seek(std::io::SeekFrom::Start(offset))
                .await
                .map_err(|e| io_error("seek in", &path, e))?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 << 10)
            .map(move |chunk| chunk.map_err(|e| io_error("read", &path, e)));
        Ok(stream.boxed())
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.path(key);
        blocking(move || fs::read(&path).map_err(|e| io_error("read", &path, e))).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        blocking(move || match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error("delete", &path, e)),
            _ => Ok(()),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_only_if_absent_and_read_back_the_segment_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("archive"));
        let id = uuid::Uuid::now_v7();
        let src = dir.path().join("segment");
        let mut bytes = member::encode_head(*id.as_bytes());
        bytes.extend(member::encode_data(b"{\"a\":1}\n", 6));
        fs::write(&src, &bytes).unwrap();
        let key = "year=2026/a.json.gz";

        assert_eq!(store.head(key).await.unwrap(), None);
        assert_eq!(
            store
                .put_if_absent(key, &src, &id.to_string())
                .await
                .unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put_if_absent(key, &src, "other").await.unwrap(),
            PutOutcome::AlreadyExists
        );
        let info = store.head(key).await.unwrap().unwrap();
        assert_eq!(info.segment_id, Some(id.hyphenated().to_string()));
        assert_eq!(info.size, bytes.len() as u64);
        assert_eq!(store.get(key).await.unwrap(), bytes);
        assert_eq!(store.list("year=").await.unwrap(), vec![key.to_string()]);
        assert!(store.list("nope").await.unwrap().is_empty());
    }
}
