//! The `file` sink: the archive in a local folder (the embedded default).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use sediment_core::component::{
    BuildContext, ComponentKind, Factory, ParseContext, Sink, Validated, ValidatedSink,
};
use sediment_core::config::{join, ConfigError};
use serde::Deserialize;

use crate::archive::file_store::FileStore;
use crate::archive::{parse_archive_sink, ArchiveSettings, ArchiveSink, ObjectStore};

/// `type: file` options besides the shared archive options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    /// Folder the archive objects are written under.
    path: PathBuf,
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    settings: ArchiveSettings,
}

/// Registry entry for `type: file`.
pub fn factory() -> Factory {
    Factory {
        kind: ComponentKind::Sink,
        type_name: "file",
        parse,
    }
}

fn parse(cx: &ParseContext, value: serde_yaml::Value) -> Result<Validated, Vec<ConfigError>> {
    let (options, settings) = parse_archive_sink::<FileOptions>(&cx.path, value)?;
    if options.path.as_os_str().is_empty() {
        return Err(vec![ConfigError::new(
            join(&cx.path, "path"),
            "must name a folder",
        )]);
    }
    Ok(Validated::Sink(Box::new(FileSink {
        path: options.path,
        settings,
    })))
}

#[async_trait]
impl ValidatedSink for FileSink {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        std::fs::create_dir_all(&self.path).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the archive folder {}: {e}",
                self.path.display()
            )
        })?;
        let store = Arc::new(FileStore::new(self.path));
        Ok(Box::new(ArchiveSink::new(cx, self.settings, store)?))
    }

    fn archive_layout(&self) -> Option<(String, String)> {
        self.settings.layout()
    }

    async fn open_store(&self) -> Option<anyhow::Result<Arc<dyn ObjectStore>>> {
        Some(Ok(Arc::new(FileStore::new(self.path.clone()))))
    }
}
