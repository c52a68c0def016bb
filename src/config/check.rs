//! The checks of the parsed TOML table before serde reads it: every key known, every section
//! a table, every value of its key's TOML type, each mistake named in one sentence. Also the
//! `--set` value parser and the position of a syntax error.

use serde::Deserialize;

use super::schema::{self, KeySpec, Kind};
use super::{ConfigError, Origin};

/// Refuses unknown keys (listing the known ones of the table), sections that are not tables
/// and values of the wrong TOML type. Keys are checked in the order of the schema, unknown
/// keys first.
pub(crate) fn check_table(table: &toml::Table, origin: &Origin) -> Result<(), ConfigError> {
    let unknown = |key: String, known: String| ConfigError::UnknownKey {
        origin: origin.clone(),
        key,
        known,
    };
    for (name, _) in table {
        if schema::TOP.iter().all(|k| k.name != name) && schema::section(name).is_none() {
            return Err(unknown(schema::show_key(name), schema::known_top()));
        }
    }
    for spec in schema::TOP {
        check_value(table.get(spec.name), spec.name, *spec, origin)?;
    }
    for section in schema::SECTIONS {
        let Some(value) = table.get(section.name) else {
            continue;
        };
        let toml::Value::Table(inner) = value else {
            return Err(ConfigError::Invalid {
                origin: origin.clone(),
                key: section.name.to_owned(),
                value: schema::show(value),
                expected: format!(
                    "a table [{}] with the keys {}",
                    section.name,
                    schema::known_in(*section)
                ),
            });
        };
        for (name, _) in inner {
            if section.keys.iter().all(|k| k.name != name) {
                return Err(unknown(
                    format!("{}.{}", section.name, schema::show_key(name)),
                    schema::known_in(*section),
                ));
            }
        }
        for spec in section.keys {
            let key = format!("{}.{}", section.name, spec.name);
            check_value(inner.get(spec.name), &key, *spec, origin)?;
        }
    }
    Ok(())
}

fn check_value(
    value: Option<&toml::Value>,
    key: &str,
    spec: KeySpec,
    origin: &Origin,
) -> Result<(), ConfigError> {
    match value {
        Some(v) if !schema::has_kind(v, spec.kind) => Err(ConfigError::Invalid {
            origin: origin.clone(),
            key: key.to_owned(),
            value: schema::show(v),
            expected: spec.expected.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// A `--set` value for a key of `spec`'s type, `None` when it has another type.
pub(crate) fn parse_scalar(text: &str, spec: KeySpec) -> Option<toml::Value> {
    let parsed = toml::Value::deserialize(toml::de::ValueDeserializer::new(text)).ok();
    match spec.kind {
        Kind::Str => Some(match parsed {
            Some(v @ toml::Value::String(_)) => v,
            _ => toml::Value::String(text.to_owned()),
        }),
        _ => parsed.filter(|v| schema::has_kind(v, spec.kind)),
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before, |nl| &before[nl + 1..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// A parser message on one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
