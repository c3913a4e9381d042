//! `${VAR}` and `${VAR:-default}` replacement from the environment, before parsing.

use super::error::ConfigError;

/// Replaces `${VAR}` and `${VAR:-default}` in `text` using `lookup`; `$$` is a literal `$`.
///
/// Comment lines (first non-blank character `#`) are left alone so that a commented
/// out example never needs its variables set. Every unset variable without a default
/// is reported, with its line number.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<ConfigError>> {
    let mut out = String::with_capacity(text.len());
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
                        (Some(value), _) => out.push_str(&value),
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
        Ok(out)
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
        assert_eq!(out, "a: s3cr3t\nb: 8080\nc: xz\nd: $5 $x\n");
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
