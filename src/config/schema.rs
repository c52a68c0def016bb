//! Every key of the service config, its TOML type and what it expects, in one table: the
//! structure check, the `--set` parser and the error messages all read it, so a key's
//! description is written once. `tests::schema_matches_the_serde_structs` keeps it in step
//! with the serde structs in `raw.rs`.

use std::fmt::Write as _;

/// The TOML type a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    /// An integer is accepted as well (`retry_seconds = 3`).
    Float,
    Bool,
}

/// One key: its name within its table, its type and the sentence fragment that says what it
/// expects (after "expected ").
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySpec {
    pub name: &'static str,
    pub kind: Kind,
    pub expected: &'static str,
}

const fn key(name: &'static str, kind: Kind, expected: &'static str) -> KeySpec {
    KeySpec {
        name,
        kind,
        expected,
    }
}

pub(crate) const SOURCE_FORMS: &str = "a URI alsa://DEVICE, file://PATH.wav[?loop=true], \
     pipe://?rate=R&format=s16le|f32le[&channels=N] or silence://";
pub(crate) const PLAYBACK_FORMS: &str = "\"\" (no playback) or alsa://DEVICE";
pub(crate) const SINK_FORMS: &str = "a URI v4l2:///dev/videoN, display://[?sink=NAME], \
     file://PATH.mp4, y4m://PATH or null://";

/// The keys at the top of the file.
pub(crate) const TOP: &[KeySpec] = &[
    key(
        "models",
        Kind::Str,
        "a directory path (holding moda.onnx and faco.onnx)",
    ),
    key("avatar", Kind::Str, "an avatar bundle directory path"),
    key("backend", Kind::Str, "\"cpu\" or \"tensorrt\""),
    key("threads", Kind::Int, "an integer 1..=64"),
    key("latency_ms", Kind::Int, "an integer 1..=10000"),
    key("seed", Kind::Int, "an integer >= 0"),
    key("noise", Kind::Str, "\"seeded\" or \"zero\""),
];

/// A `[table]` and its keys.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Section {
    pub name: &'static str,
    pub keys: &'static [KeySpec],
}

pub(crate) const SECTIONS: &[Section] = &[
    Section {
        name: "audio",
        keys: &[
            key("source", Kind::Str, SOURCE_FORMS),
            key("out", Kind::Str, PLAYBACK_FORMS),
            key("period_frames", Kind::Int, "an integer 16..=65536"),
            key(
                "buffer_frames",
                Kind::Int,
                "an integer >= 2 × audio.period_frames (at most 1048576)",
            ),
            key(
                "retry_seconds",
                Kind::Float,
                "a number of seconds 0.1..=600",
            ),
        ],
    },
    Section {
        name: "motion",
        keys: &[
            key("history_frames", Kind::Int, "an integer >= 0"),
            key("chunk_frames", Kind::Int, "an integer >= 1"),
            key("lookahead_frames", Kind::Int, "an integer >= 0"),
            key("norm_seconds", Kind::Float, "a number of seconds > 0"),
            key("norm_floor", Kind::Float, "a number in (0, 1]"),
        ],
    },
    Section {
        name: "video",
        keys: &[
            key("sink", Kind::Str, SINK_FORMS),
            key("time_code_period", Kind::Int, "an integer >= 1 (frames)"),
            key("stamp", Kind::Bool, "true or false"),
        ],
    },
    Section {
        name: "service",
        keys: &[
            key(
                "status_interval_s",
                Kind::Float,
                "0 (off) or a number of seconds 0.5..=3600",
            ),
            key("status_file", Kind::Str, "\"\" (none) or a file path"),
        ],
    },
];

/// Where a dotted key points.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lookup {
    Key(KeySpec),
    /// A section name itself (`audio`), which holds keys and takes no value.
    Section(Section),
}

pub(crate) fn section(name: &str) -> Option<Section> {
    SECTIONS.iter().copied().find(|s| s.name == name)
}

/// The spec of `key` (`latency_ms`, `audio.source`).
pub(crate) fn lookup(key: &str) -> Option<Lookup> {
    match key.split_once('.') {
        None => TOP
            .iter()
            .copied()
            .find(|k| k.name == key)
            .map(Lookup::Key)
            .or_else(|| section(key).map(Lookup::Section)),
        Some((table, name)) => section(table)?
            .keys
            .iter()
            .copied()
            .find(|k| k.name == name)
            .map(Lookup::Key),
    }
}

/// The spec of a key that is known to exist (a name the validator spells itself).
pub(crate) fn spec(key: &str) -> KeySpec {
    match lookup(key) {
        Some(Lookup::Key(k)) => k,
        // Only reached through a misspelt literal in validate.rs, which the tests would show
        // as this text in a message.
        _ => KeySpec {
            name: "?",
            kind: Kind::Str,
            expected: "a known key",
        },
    }
}

/// The known names of the top level: its keys and its `[tables]`.
pub(crate) fn known_top() -> String {
    let mut s = String::new();
    for k in TOP {
        push_name(&mut s, k.name);
    }
    for t in SECTIONS {
        push_name(&mut s, &format!("[{}]", t.name));
    }
    s
}

/// The known keys of one table.
pub(crate) fn known_in(section: Section) -> String {
    let mut s = String::new();
    for k in section.keys {
        push_name(&mut s, k.name);
    }
    s
}

fn push_name(s: &mut String, name: &str) {
    if !s.is_empty() {
        s.push_str(", ");
    }
    s.push_str(name);
}

/// Whether `value` has the TOML type `kind` takes.
pub(crate) fn has_kind(value: &toml::Value, kind: Kind) -> bool {
    matches!(
        (kind, value),
        (Kind::Str, toml::Value::String(_))
            | (Kind::Int, toml::Value::Integer(_))
            | (Kind::Float, toml::Value::Float(_) | toml::Value::Integer(_))
            | (Kind::Bool, toml::Value::Boolean(_))
    )
}

/// The longest rendering of a value in a message; the rest becomes "…".
const MAX_SHOWN: usize = 80;

/// A value as a message shows it, on one line: strings quoted with escapes, floats as TOML
/// writes them (`nan`, `inf`), arrays and tables inline, at most [`MAX_SHOWN`] characters.
pub(crate) fn show(value: &toml::Value) -> String {
    let mut s = String::new();
    render(value, &mut s, 0);
    if s.chars().count() > MAX_SHOWN {
        s = s.chars().take(MAX_SHOWN).collect();
        s.push('…');
    }
    s
}

fn render(value: &toml::Value, out: &mut String, depth: usize) {
    // Deep nesting is cut short: the message only needs to show what the user wrote.
    if out.len() > MAX_SHOWN * 4 || depth > 8 {
        out.push('…');
        return;
    }
    match value {
        toml::Value::String(s) => {
            let _ = write!(out, "{s:?}");
        }
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        toml::Value::Float(f) => out.push_str(&show_float(*f)),
        toml::Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        toml::Value::Datetime(d) => {
            let _ = write!(out, "{d}");
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, out, depth + 1);
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            out.push('{');
            for (i, (k, v)) in table.iter().enumerate() {
                out.push_str(if i > 0 { ", " } else { " " });
                let _ = write!(out, "{} = ", show_key(k));
                render(v, out, depth + 1);
            }
            out.push_str(" }");
        }
    }
}

/// A string value as a message shows it (see [`show`]).
pub(crate) fn show_str(s: &str) -> String {
    show(&toml::Value::String(s.to_owned()))
}

/// A float as TOML spells it.
pub(crate) fn show_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// A key as a message shows it: bare when TOML allows, quoted (with escapes) otherwise, at
/// most [`MAX_SHOWN`] characters.
pub(crate) fn show_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let mut s = if bare { k.to_owned() } else { format!("{k:?}") };
    if s.chars().count() > MAX_SHOWN {
        s = s.chars().take(MAX_SHOWN).collect();
        s.push('…');
    }
    s
}
