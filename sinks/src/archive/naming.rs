//! Object keys: a strftime template plus `{account_id}` and `{part}`.
//!
//! A key becomes a path under the archive folder (the `file` sink) or an object
//! name under a prefix, so no rendered key may escape it: validation renders the
//! template and checks the result — relative, no empty, `.` or `..` segment, no
//! NUL or other control character — for the primary object and a numbered part,
//! because `{part}` renders empty or `.N`. Only strftime fields that name the
//! date or hour are accepted; they always render as letters and digits, so the
//! rendered check holds for every hour. (Fields such as `%.f` render empty,
//! `%s` and `%M` are constant per hour, `%D` adds slashes.)

use chrono::{TimeZone, Utc};

/// The default, Mezmo-compatible, Hive-partitioned layout.
pub const DEFAULT_KEY_TEMPLATE: &str =
    "year=%Y/month=%m/day=%d/{account_id}.%Y-%m-%d.%H00{part}.json.gz";

/// strftime conversions accepted in keys: date and hour fields (`%F` is `%Y-%m-%d`).
const FIELDS: &str = "YCymbBhdejHIklpPaAuwUWVGgF";
/// Conversions that tell the hour apart (`%I`/`%l` need `%p`/`%P` beside them).
const HOUR_FIELDS: &str = "Hk";

/// A validated key template with the account id filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    /// The template with `{account_id}` replaced; still holds strftime fields and `{part}`.
    template: String,
    /// The account id it was bound to.
    account_id: String,
}

/// Why a template or account id was refused; [`KeyError::field`] says which option is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The account id is not usable in a key.
    #[error("{0}")]
    AccountId(String),
    /// The template is not usable.
    #[error("{0}")]
    Template(String),
}

impl KeyError {
    /// The YAML field at fault: `account_id` or `key_template`.
    pub fn field(&self) -> &'static str {
        match self {
            KeyError::AccountId(_) => "account_id",
            KeyError::Template(_) => "key_template",
        }
    }
}

impl KeyTemplate {
    /// Checks `template` and binds it to `account_id` (see the module docs).
    ///
    /// `{part}` must appear exactly once (it is what keeps the parts of one hour
    /// apart) and an hour field at least once.
    pub fn new(template: &str, account_id: &str) -> Result<KeyTemplate, KeyError> {
        check_account_id(account_id)?;
        let bad = |m: &str| Err(KeyError::Template(m.to_owned()));
        if template.matches("{part}").count() != 1 {
            return bad("must contain `{part}` exactly once, so that the parts of one hour get distinct names");
        }
        let fields = fields(template)?;
        let has = |set: &str| fields.iter().any(|f| set.contains(*f));
        if !(has(HOUR_FIELDS) || (has("Il") && has("pP"))) {
            return bad("must contain an hour field (`%H`), so that each hour gets its own object");
        }
        let bound = KeyTemplate {
            template: template.replace("{account_id}", account_id),
            account_id: account_id.to_owned(),
        };
        // Fields render as letters and digits whatever the hour, so one hour shows
        // every key's shape; parts 0 and 1 show both shapes of `{part}`.
        for part in [0, 1] {
            check_key(&bound.render(0, part)).map_err(KeyError::Template)?;
        }
        Ok(bound)
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
        let part = if part == 0 {
            String::new()
        } else {
            format!(".{part}")
        };
        self.render_part(hour_start, &part)
    }

    /// The key of the hour starting at `hour_start` with `{part}` replaced by
    /// `part` as given (`.logs-3-1200` for the object of stream `logs-3` that
    /// starts at offset 1200).
    pub fn render_part(&self, hour_start: i64, part: &str) -> String {
        let time = Utc
            .timestamp_opt(hour_start, 0)
            .single()
            .unwrap_or_default();
        time.format(&self.template)
            .to_string()
            .replace("{part}", part)
    }
}

fn check_account_id(account_id: &str) -> Result<(), KeyError> {
    let bad = |m: &str| Err(KeyError::AccountId(m.to_owned()));
    if account_id.is_empty() {
        return bad("must not be empty");
    }
    if !account_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return bad("may only use letters, digits, `_`, `-` and `.`");
    }
    if account_id.chars().all(|c| c == '.') {
        return bad("must not be made of dots only (it would name a parent folder)");
    }
    Ok(())
}

/// The conversion characters of `template`'s strftime fields (`%%` excluded);
/// an error names the first field keys do not support.
fn fields(template: &str) -> Result<Vec<char>, KeyError> {
    let mut found = Vec::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '%' {
            continue;
        }
        // Optional padding modifier, chrono's extensions (`%.3f`, `%:z`, `%#z`),
        // then the conversion.
        let mut extended = false;
        let mut end = at + 1;
        while let Some(&(i, m)) = chars.peek() {
            let pad = end == at + 1 && matches!(m, '-' | '_' | '0');
            if !(pad || matches!(m, '.' | ':' | '#') || m.is_ascii_digit()) {
                break;
            }
            extended |= !pad;
            chars.next();
            end = i + m.len_utf8();
        }
        let Some((i, conversion)) = chars.next() else {
            return Err(KeyError::Template(
                "ends with a lone `%` (write `%%` for a literal `%`)".into(),
            ));
        };
        if conversion == '%' && end == at + 1 {
            continue;
        }
        if extended || !FIELDS.contains(conversion) {
            let spec = &template[at..i + conversion.len_utf8()];
            let spec = if spec.chars().all(|c| c.is_ascii_graphic()) {
                format!("`{spec}`")
            } else {
                "a `%` field".to_owned()
            };
            return Err(KeyError::Template(format!(
                "uses {spec}, which keys do not support: use date and hour fields (%Y %m %d %H %j %F and the like; %% for a literal %)"
            )));
        }
        found.push(conversion);
    }
    Ok(found)
}

/// Checks that a rendered key stays inside the archive: relative, no empty, `.`
/// or `..` segment, no control character (NUL included).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.starts_with('/') {
        return Err("renders an absolute key (one starting with `/`)".into());
    }
    if key.chars().any(char::is_control) {
        return Err("renders a key with a control character (NUL, newline…)".into());
    }
    if key.split('/').any(|s| s.is_empty()) {
        return Err("renders a key with an empty path segment (`//`, or a trailing `/`)".into());
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Err("renders a key with a `.` or `..` segment".into());
    }
    Ok(())
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
        let template = |t: &str| match KeyTemplate::new(t, "a") {
            Err(KeyError::Template(m)) => m,
            other => panic!("{t}: {other:?}"),
        };
        assert!(template("%Y/%H.json.gz").contains("{part}"));
        template("%Y/%H{part}{part}");
        assert!(template("%Q/%H{part}").contains("`%Q`"));
        assert!(template("%Y{part}").contains("hour"));
        assert!(template("../%H{part}").contains(".."));
        let account = |a: &str| match KeyTemplate::new(DEFAULT_KEY_TEMPLATE, a) {
            Err(e @ KeyError::AccountId(_)) => assert_eq!(e.field(), "account_id"),
            other => panic!("{a:?}: {other:?}"),
        };
        for a in ["a/b", "", ".", "..", "...", "a\0b", "é"] {
            account(a);
        }
    }

    /// Issue 12.5: the escapes an adversarial user found, each a class.
    #[test]
    fn no_template_renders_a_key_outside_the_archive() {
        for (t, a, why) in [
            (
                "{account_id}/{account_id}/x.%H{part}.json.gz",
                "..",
                "account of dots",
            ),
            ("%.f/tmp/x.%H{part}", "a", "%.f renders empty"),
            (".%.f./%H{part}", "a", "renders .."),
            ("/abs/%H{part}", "a", "absolute"),
            ("%H/{part}/x", "a", "{part} renders an empty segment"),
            ("%H/.{part}", "a", "part 0 renders `.`"),
            ("%H//x{part}", "a", "empty segment"),
            ("%H/x{part}/", "a", "trailing slash"),
            ("%H/x{part}\0", "a", "NUL"),
            ("%H/x{part}\n", "a", "newline"),
            ("%s/%H{part}", "a", "epoch seconds"),
            ("%D/%H{part}", "a", "slashes"),
            ("%M/%H{part}", "a", "minutes"),
            ("%H%", "a", "dangling %"),
            ("%#z/%H{part}", "a", "modifier"),
            ("%3f/%H{part}", "a", "digits"),
        ] {
            assert!(
                KeyTemplate::new(t, a).is_err(),
                "{why}: {t:?} with {a:?} accepted"
            );
        }
        // Padding modifiers, %% and 12-hour clocks with AM/PM are fine.
        for t in [
            "%-d/%_H{part}",
            "100%%/%H{part}",
            "%F/%I%p{part}",
            "%Y/%j/%H{part}.gz",
        ] {
            KeyTemplate::new(t, "acme").unwrap_or_else(|e| panic!("{t}: {e}"));
        }
    }

    proptest::proptest! {
        /// Whatever template and account id are accepted, every key of every hour
        /// and part stays inside the archive.
        #[test]
        fn accepted_templates_render_only_safe_keys(
            template in "[a-z./%{}YmdHsfMD.-]{0,24}\\{part\\}[a-z./%YH]{0,6}",
            account in "[a-z.]{1,4}",
            hour in 0i64..4_000_000_000,
            part in 0u32..1000,
        ) {
            if let Ok(t) = KeyTemplate::new(&template, &account) {
                let key = t.render(hour / 3600 * 3600, part);
                proptest::prop_assert!(check_key(&key).is_ok(), "{template:?} {account:?} -> {key:?}");
            }
        }
    }
}
