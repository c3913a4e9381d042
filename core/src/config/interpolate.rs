//! `${VAR}` and `${VAR:-default}` replacement from the environment, before parsing.
//!
//! Interpolation is how secrets reach the configuration, and it happens on the
//! text, before anything knows which field a value lands in. So it records what
//! it put in ([`Interpolated::values`]), and every configuration error is passed
//! through [`Interpolated::redact`] before anyone sees it: a message that would
//! echo a value (serde's `invalid type: string "…"`, an unknown variant, an
//! invalid address) names the variable instead. That covers every component's
//! validation at once, whoever wrote its messages.

use super::error::ConfigError;

/// The interpolated text and what was put into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interpolated {
    /// The configuration text with every reference replaced.
    pub text: String,
    /// `(variable, value)` for every reference that was replaced from the environment.
    pub values: Vec<(String, String)>,
}

impl Interpolated {
    /// `text` with every interpolated value replaced by `${NAME}`.
    ///
    /// Longer values go first, so a value containing another is replaced whole.
    /// Values of three characters or more are replaced wherever they occur (a
    /// secret may be glued to literal text); shorter ones only as a whole word,
    /// so that a port `80` does not garble "line 80" elsewhere. The escaped form
    /// serde prints (`"a\"b"`) is replaced too.
    pub fn redact(&self, text: &str) -> String {
        let mut values: Vec<&(String, String)> =
            self.values.iter().filter(|(_, v)| !v.is_empty()).collect();
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let mut out = text.to_owned();
        for (name, value) in values {
            let placeholder = format!("${{{name}}}");
            let escaped = value.escape_debug().to_string();
            for form in [value.as_str(), escaped.as_str()] {
                out = if form.chars().count() >= 3 {
                    out.replace(form, &placeholder)
                } else {
                    replace_words(&out, form, &placeholder)
                };
            }
        }
        out
    }

    /// [`Interpolated::redact`] of an error's path and message.
    pub fn redact_error(&self, e: ConfigError) -> ConfigError {
        ConfigError::new(self.redact(&e.path), self.redact(&e.message))
    }
}

/// `text` with `word` replaced where no letter or digit touches it.
fn replace_words(text: &str, word: &str, with: &str) -> String {
    let bounded = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (at, _) in text.match_indices(word) {
        let end = at + word.len();
        if bounded(text[..at].chars().next_back()) && bounded(text[end..].chars().next()) {
            out.push_str(&text[copied..at]);
            out.push_str(with);
            copied = end;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Replaces `${VAR}` and `${VAR:-default}` in `text` using `lookup`; `$$` is a literal `$`.
///
/// Comment lines (first non-blank character `#`) are left alone so that a commented
/// out example never needs its variables set. Every unset variable without a default
/// is reported, with its line number.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Interpolated, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let Some(end) = body.find('}') else {
                    errors.push(ConfigError::new(
                        format!("line {}", index + 1),
                        "unterminated `${` (write `$$` for a literal `$`)",
                    ));
                    rest = "";
                    break;
                };
                let expr = &body[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((name, default)) => (name, Some(default)),
                    None => (expr, None),
                };
                if !is_var_name(name) {
                    errors.push(ConfigError::new(
                        format!("line {}", index + 1),
                        format!("`${{{expr}}}` is not a valid variable reference"),
                    ));
                } else {
                    match (lookup(name), default) {
                        (Some(value), _) => {
                            out.push_str(&value);
                            values.push((name.to_owned(), value));
                        }
                        (None, Some(default)) => out.push_str(default),
                        (None, None) => errors.push(ConfigError::new(
                            format!("line {}", index + 1),
                            format!("environment variable `{name}` is not set (set it, or write `${{{name}:-default}}`)"),
                        )),
                    }
                }
                rest = &body[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok(Interpolated { text: out, values })
    } else {
        Err(errors)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        let out = interpolate(
            "a: ${TOKEN}\nb: ${PORT:-8080}\nc: x${EMPTY:-y}z\nd: $$5 $x\n",
            env,
        )
        .unwrap();
        assert_eq!(out.text, "a: s3cr3t\nb: 8080\nc: xz\nd: $5 $x\n");
        assert_eq!(
            out.values,
            vec![
                ("TOKEN".into(), "s3cr3t".into()),
                ("EMPTY".into(), "".into())
            ]
        );
    }

    #[test]
    fn redaction_names_the_variable_instead_of_its_value() {
        let i = Interpolated {
            text: String::new(),
            values: vec![
                ("TOKEN".into(), "s3cr3t".into()),
                ("LONG".into(), "s3cr3t-and-more".into()),
                ("PORT".into(), "80".into()),
                ("QUOTED".into(), "a\"b\\c".into()),
            ],
        };
        assert_eq!(
            i.redact("invalid type: string \"s3cr3t\", expected a sequence"),
            "invalid type: string \"${TOKEN}\", expected a sequence"
        );
        assert_eq!(i.redact("xs3cr3ty"), "x${TOKEN}y", "glued to literal text");
        assert_eq!(i.redact("`s3cr3t-and-more`"), "`${LONG}`");
        assert_eq!(
            i.redact("line 80: `80` is no address; 8080 is"),
            "line ${PORT}: `${PORT}` is no address; 8080 is"
        );
        assert_eq!(i.redact("string \"a\\\"b\\\\c\""), "string \"${QUOTED}\"");
    }

    #[test]
    fn reports_every_unset_variable_with_its_line() {
        let errors = interpolate("a: ${NOPE}\n# ${IGNORED}\nb: ${ALSO_NOPE}\n", env).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2);
        assert!(
            text[0].starts_with("line 1: environment variable `NOPE` is not set"),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("line 3: environment variable `ALSO_NOPE`"),
            "{}",
            text[1]
        );
    }

    #[test]
    fn rejects_malformed_references() {
        assert!(interpolate("a: ${1BAD}", env).is_err());
        assert!(interpolate("a: ${OPEN", env).is_err());
    }
}
