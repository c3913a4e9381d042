//! The `file` sink: the archive in a local folder (the embedded default).
//!
//! Archive files are created with `file_mode` (default `0640`: the owner and its
//! group, such as a backup or analytics user, may read them; nobody else), and
//! their folders with the same bits plus search permission where reading is
//! allowed (`0750`). The mode is set explicitly, whatever the umask.

use std::os::unix::fs::DirBuilderExt;
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
    /// Permission bits of archive files, in octal (`"0640"`, `"600"`). Default: `0640`.
    #[serde(default = "default_file_mode")]
    file_mode: OctalMode,
}

/// A permission mode written in octal; a bare YAML number such as `0640` is read
/// by its digits too (YAML 1.2 would make it the decimal 640).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OctalMode {
    Text(String),
    Number(u64),
}

fn default_file_mode() -> OctalMode {
    OctalMode::Text("0640".into())
}

impl OctalMode {
    /// The mode bits, or why they are refused.
    fn bits(&self) -> Result<u32, &'static str> {
        let digits = match self {
            OctalMode::Text(t) => t.trim_start_matches("0o").to_owned(),
            OctalMode::Number(n) => n.to_string(),
        };
        let mode = u32::from_str_radix(&digits, 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or("must be an octal mode such as \"0640\"")?;
        if mode & 0o600 != 0o600 {
            return Err("must let the owner read and write (sediment reads its objects back)");
        }
        Ok(mode)
    }
}

#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    file_mode: u32,
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
    let mut errors = Vec::new();
    if options.path.as_os_str().is_empty() {
        errors.push(ConfigError::new(
            join(&cx.path, "path"),
            "must name a folder",
        ));
    }
    let file_mode = options.file_mode.bits().unwrap_or_else(|e| {
        errors.push(ConfigError::new(join(&cx.path, "file_mode"), e));
        0o640
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Validated::Sink(Box::new(FileSink {
        path: options.path,
        file_mode,
        settings,
    })))
}

#[async_trait]
impl ValidatedSink for FileSink {
    async fn build(self: Box<Self>, cx: &BuildContext) -> anyhow::Result<Box<dyn Sink>> {
        let dir_mode = self.file_mode | ((self.file_mode & 0o444) >> 2);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(dir_mode)
            .create(&self.path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the archive folder {}: {e}",
                    self.path.display()
                )
            })?;
        let store = Arc::new(FileStore::new(self.path).with_file_mode(self.file_mode));
        Ok(Box::new(ArchiveSink::new(cx, self.settings, store)?))
    }

    fn archive_layout(&self) -> Option<(String, String)> {
        self.settings.layout()
    }

    async fn open_store(&self) -> Option<anyhow::Result<Arc<dyn ObjectStore>>> {
        let store = FileStore::new(self.path.clone()).with_file_mode(self.file_mode);
        Some(Ok(Arc::new(store)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(yaml: &str) -> Result<u32, String> {
        let cx = ParseContext {
            id: "archive".into(),
            path: "sinks.archive".into(),
        };
        let value = serde_yaml::from_str(&format!("{{path: /a, {yaml}}}")).unwrap();
        let (options, _) =
            parse_archive_sink::<FileOptions>(&cx.path, value).map_err(|e| e[0].to_string())?;
        options.file_mode.bits().map_err(str::to_owned)
    }

    #[test]
    fn file_mode_is_octal_however_it_is_written() {
        assert_eq!(mode("account_id: a").unwrap(), 0o640, "the default");
        assert_eq!(mode("file_mode: '0600'").unwrap(), 0o600);
        assert_eq!(mode("file_mode: 0644").unwrap(), 0o644);
        assert_eq!(mode("file_mode: '0o660'").unwrap(), 0o660);
        assert!(mode("file_mode: '0800'").unwrap_err().contains("octal"));
        assert!(mode("file_mode: '1777'").unwrap_err().contains("octal"));
        assert!(mode("file_mode: '0440'").unwrap_err().contains("owner"));
    }
}
