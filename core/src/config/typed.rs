//! Deserialising one YAML node into a typed config, with errors that name the path.

use serde::de::DeserializeOwned;

use super::error::{suggestion, ConfigError};

/// Deserialises `value` (found at YAML path `path`) into `T`.
///
/// Unknown fields are reported with the known ones and a "did you mean"; other
/// errors carry the full path of the offending field, e.g.
/// `sources.http_in.max_body_size: invalid size ...`.
pub fn parse_typed<T>(path: &str, value: serde_yaml::Value) -> Result<T, Vec<ConfigError>>
where
    T: DeserializeOwned,
{
    let known = serde_aux::serde_introspection::serde_introspect::<T>();
    let errors = unknown_fields(path, &value, known);
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let full = if inner == "." {
            path.to_owned()
        } else {
            join(path, &inner)
        };
        vec![ConfigError::new(
            full,
            clean_message(&e.inner().to_string()),
        )]
    })
}

/// The fields `T` accepts (its serde names).
pub fn known_fields<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<T>()
}

/// Errors for each key of the mapping `value` that is not in `known`, with a "did you mean".
pub fn unknown_fields(path: &str, value: &serde_yaml::Value, known: &[&str]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let serde_yaml::Value::Mapping(map) = value {
        for key in map.keys() {
            let name = match key {
                serde_yaml::Value::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            if !known.is_empty() && !known.contains(&name.as_str()) {
                errors.push(ConfigError::new(
                    join(path, &name),
                    format!(
                        "unknown field `{name}`{} (known fields: {})",
                        suggestion(&name, known.iter().copied()),
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    errors
}

/// `a.b` joined with `c` as `a.b.c`.
pub fn join(path: &str, field: &str) -> String {
    match (path.is_empty(), field.is_empty()) {
        (true, _) => field.to_owned(),
        (_, true) => path.to_owned(),
        _ => format!("{path}.{field}"),
    }
}

/// serde_yaml appends " at line N column M" positions that refer to a sub-document; the path says more.
fn clean_message(message: &str) -> String {
    match message.find(" at line ") {
        Some(pos) => message[..pos].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        address: String,
        #[serde(default)]
        limit: Option<super::super::units::ByteSize>,
    }

    fn yaml(text: &str) -> serde_yaml::Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn unknown_field_names_path_and_suggestion() {
        let errors = parse_typed::<Sample>("sources.in", yaml("adress: x")).unwrap_err();
        assert_eq!(errors[0].path, "sources.in.adress");
        assert!(
            errors[0].message.contains("did you mean `address`?"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn bad_value_names_full_path() {
        let errors =
            parse_typed::<Sample>("sources.in", yaml("address: x\nlimit: lots")).unwrap_err();
        assert_eq!(errors[0].to_string(), "sources.in.limit: invalid size `lots`: expected a number and a unit, such as 64KiB, 100MB or 1GiB");
    }

    #[test]
    fn missing_field_is_reported_at_the_component() {
        let errors = parse_typed::<Sample>("sources.in", yaml("limit: 1KiB")).unwrap_err();
        assert_eq!(errors[0].to_string(), "sources.in: missing field `address`");
    }
}
