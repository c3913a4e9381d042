//! Object keys: a strftime template plus `{account_id}` and `{part}`.

use chrono::format::{Item, StrftimeItems};
use chrono::{TimeZone, Utc};

/// The default, Mezmo-compatible, Hive-partitioned layout.
pub const DEFAULT_KEY_TEMPLATE: &str =
    "year=%Y/month=%m/day=%d/{account_id}.%Y-%m-%d.%H00{part}.json.gz";

/// A validated key template with the account id filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    /// The template with `{account_id}` replaced; still holds strftime fields and `{part}`.
    template: String,
    /// The account id it was bound to.
    account_id: String,
}

impl KeyTemplate {
    /// Checks `template` and binds it to `account_id`.
    ///
    /// `{part}` must appear exactly once (it is what keeps the parts of one hour
    /// apart), the strftime fields must be valid, and the result must be a relative
    /// key without `..` segments.
    pub fn new(template: &str, account_id: &str) -> Result<KeyTemplate, String> {
        if account_id.is_empty()
            || !account_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(format!(
                "account_id `{account_id}` may only use letters, digits, `_`, `-` and `.`"
            ));
        }
        if template.matches("{part}").count() != 1 {
            return Err("key_template must contain `{part}` exactly once, so that the parts of one hour get distinct names".into());
        }
        if StrftimeItems::new(template).any(|i| matches!(i, Item::Error)) {
            return Err(format!("key_template `{template}` has an invalid strftime field (use %Y, %m, %d, %H and the like; write %% for a literal %)"));
        }
        if !template.contains("%H") {
            return Err(
                "key_template must contain `%H`, so that each hour gets its own object".into(),
            );
        }
        if template.starts_with('/') || template.split('/').any(|s| s == ".." || s == ".") {
            return Err("key_template must be a relative key without `.` or `..` segments".into());
        }
        Ok(KeyTemplate {
            template: template.replace("{account_id}", account_id),
            account_id: account_id.to_owned(),
        })
    }

    /// The template with `{account_id}` filled in (how restore reads keys back).
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// The account id.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The key of part `part` (0 = the primary object) of the hour starting at `hour_start` (seconds).
    pub fn render(&self, hour_start: i64, part: u32) -> String {
        let time = Utc
            .timestamp_opt(hour_start, 0)
            .single()
            .unwrap_or_default();
        let part = if part == 0 {
            String::new()
        } else {
            format!(".{part}")
        };
        time.format(&self.template)
            .to_string()
            .replace("{part}", &part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 1_763_780_400; // 2025-11-22T03:00:00Z

    #[test]
    fn default_layout_matches_the_spec() {
        let t = KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "acme").unwrap();
        assert_eq!(
            t.render(HOUR, 0),
            "year=2025/month=11/day=22/acme.2025-11-22.0300.json.gz"
        );
        assert_eq!(
            t.render(HOUR, 2),
            "year=2025/month=11/day=22/acme.2025-11-22.0300.2.json.gz"
        );
    }

    #[test]
    fn hours_at_day_and_year_boundaries() {
        let t = KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "a").unwrap();
        let last_of_2025 = 1_767_222_000; // 2025-12-31T23:00:00Z
        assert_eq!(
            t.render(last_of_2025, 0),
            "year=2025/month=12/day=31/a.2025-12-31.2300.json.gz"
        );
        assert_eq!(
            t.render(last_of_2025 + 3600, 0),
            "year=2026/month=01/day=01/a.2026-01-01.0000.json.gz"
        );
    }

    #[test]
    fn custom_templates() {
        let t =
            KeyTemplate::new("dt=%Y%m%d/hour=%H/archive_{account_id}{part}.json.gz", "x").unwrap();
        assert_eq!(t.render(HOUR, 1), "dt=20251122/hour=03/archive_x.1.json.gz");
    }

    #[test]
    fn rejects_bad_templates_and_accounts() {
        assert!(KeyTemplate::new("%Y/%H.json.gz", "a")
            .unwrap_err()
            .contains("{part}"));
        assert!(KeyTemplate::new("%Y/%H{part}{part}", "a").is_err());
        assert!(KeyTemplate::new("%Q/%H{part}", "a")
            .unwrap_err()
            .contains("strftime"));
        assert!(KeyTemplate::new("%Y{part}", "a")
            .unwrap_err()
            .contains("%H"));
        assert!(KeyTemplate::new("../%H{part}", "a").is_err());
        assert!(KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "a/b").is_err());
        assert!(KeyTemplate::new(DEFAULT_KEY_TEMPLATE, "").is_err());
    }
}
