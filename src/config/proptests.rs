//! Property tests of the fuzz entry point [`parse_and_validate`]: mutated and random configs
//! never panic, every message is one line, every accepted config is in range, and a random
//! config is refused exactly when one of its values is invalid, naming that key.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::schema;
use super::*;

const EXAMPLE: &str = include_str!("../../systemd/moda-edge.toml");

/// Every dotted key of the schema.
fn all_keys() -> Vec<String> {
    let mut keys: Vec<String> = schema::TOP.iter().map(|k| k.name.to_owned()).collect();
    for s in schema::SECTIONS {
        for k in s.keys {
            keys.push(format!("{}.{}", s.name, k.name));
        }
    }
    keys
}

/// Checks the invariants every accepted config holds.
fn assert_in_range(s: &Settings) {
    assert!(!s.models.as_os_str().is_empty() && !s.avatar.as_os_str().is_empty());
    assert!((1..=64).contains(&s.threads));
    assert!((1..=10_000).contains(&s.latency.as_millis()));
    assert!((16..=65_536).contains(&s.audio.period_frames));
    assert!(s.audio.buffer_frames >= 2 * s.audio.period_frames);
    assert!(s.audio.buffer_frames <= 1 << 20);
    assert!((0.1..=600.0).contains(&s.audio.retry.as_secs_f64()));
    assert!(super::uri::is_source(&s.audio.source));
    assert!(super::uri::is_playback(&s.audio.out));
    assert!(super::uri::is_sink(&s.video.sink));
    assert!(s.motion.window.chunk >= 1 && (2..=600).contains(&s.motion.window.frames()));
    assert!(s.motion.norm_seconds.is_finite() && s.motion.norm_seconds > 0.0);
    assert!(s.motion.norm_floor > 0.0 && s.motion.norm_floor <= 1.0);
    assert!(s.video.time_code_period >= 1);
    if let Some(i) = s.service.status_interval {
        assert!((0.5..=3600.0).contains(&i.as_secs_f64()));
    }
}

/// Snippets a mutation inserts: TOML's punctuation, special numbers, odd characters.
const TOKENS: &[&str] = &[
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "{",
    "}",
    ",",
    ".",
    "\n",
    " ",
    "#",
    "nan",
    "inf",
    "-inf",
    "-",
    "+",
    "0",
    "1e309",
    "0x",
    "9223372036854775808",
    "true",
    "é",
    "\u{0}",
    "\u{7f}",
    "\\",
    "\\u",
    "1979-05-27T07:32:00Z",
    "[audio]",
    "[motion]",
    "a.b.c",
    "audio = 1\n",
    "[audio.x]\n",
    "[[video]]\n",
    "threads = 64\n",
];

fn mutate(rng: &mut impl Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..6) {
        let at = rng.random_range(0..=chars.len());
        match rng.random_range(0..5) {
            0 if !chars.is_empty() => {
                let end = (at + rng.random_range(1..20)).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            1 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                chars.splice(at..at, token.chars());
            }
            2 if !chars.is_empty() => {
                let i = at.min(chars.len() - 1);
                chars[i] = char::from_u32(rng.random_range(0..0x250)).unwrap_or('?');
            }
            3 => {
                // Repeat a slice (duplicate keys and tables).
                let from = rng.random_range(0..=chars.len());
                let end = (from + rng.random_range(1..80)).min(chars.len());
                let copy: Vec<char> = chars[from..end].to_vec();
                chars.splice(at..at, copy);
            }
            _ => {
                let digit = char::from(b'0' + rng.random_range(0..10u8));
                chars.insert(at, digit);
            }
        }
    }
    chars.into_iter().collect()
}

fn check_never_panics(text: &str) {
    match parse_and_validate(text) {
        Ok(s) => assert_in_range(&s),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "{message:?} for {text:?}");
            assert!(!message.is_empty());
        }
    }
}

#[test]
fn parse_and_validate_never_panics_on_mutated_configs() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let seeds = [
        EXAMPLE,
        "",
        "[audio]\nsource = \"file://a.wav\"\n[motion]\nhistory_frames = 0\n",
    ];
    let mut accepted = 0;
    for i in 0..6000 {
        let text = mutate(&mut rng, seeds[i % seeds.len()]);
        let ok = std::panic::catch_unwind(|| check_never_panics(&text));
        assert!(ok.is_ok(), "panicked on {text:?}");
        accepted += usize::from(parse_and_validate(&text).is_ok());
    }
    // The mutations are small: some leave a valid config, most break it.
    assert!((1..6000).contains(&accepted), "{accepted} accepted");
}

/// A value for a key: `Ok` text of a valid value, `Err` text of a value the key refuses.
fn random_value(rng: &mut impl Rng, key: &str, valid: bool) -> String {
    let pick = |rng: &mut dyn rand::RngCore, items: &[&str]| {
        items[rng.random_range(0..items.len())].to_owned()
    };
    let float_bad = ["nan", "inf", "-inf", "-1.0", "\"1\"", "true", "1e300"];
    match (key, valid) {
        ("models" | "avatar", true) => pick(rng, &["\"/x\"", "'rel'", "\"é/ü\""]),
        ("models" | "avatar", false) => pick(rng, &["\"\"", "1", "[]", "{}"]),
        ("backend", true) => pick(rng, &["\"cpu\"", "\"tensorrt\""]),
        ("noise", true) => pick(rng, &["\"seeded\"", "\"zero\""]),
        ("backend" | "noise", false) => pick(rng, &["\"\"", "\"Cpu\"", "0", "false"]),
        ("threads", true) => rng.random_range(1..=64).to_string(),
        ("threads", false) => pick(rng, &["0", "65", "-9223372036854775808", "1.5"]),
        ("latency_ms", true) => rng.random_range(1..=10_000).to_string(),
        ("latency_ms", false) => pick(rng, &["0", "10001", "\"400\""]),
        ("seed", true) => rng.random_range(0..=i64::MAX).to_string(),
        ("seed", false) => pick(rng, &["-1", "1.0", "\"1\""]),
        ("audio.source", true) => pick(
            rng,
            &[
                "\"alsa://hw:1\"",
                "\"silence://\"",
                "\"pipe://?rate=1&format=f32le\"",
            ],
        ),
        ("audio.source", false) => pick(rng, &["\"\"", "\"alsa://\"", "\"x\"", "1"]),
        ("audio.out", true) => pick(rng, &["\"\"", "\"alsa://default\""]),
        ("audio.out", false) => pick(rng, &["\"null://\"", "\"alsa://\"", "false"]),
        ("audio.retry_seconds", true) => format!("{:.3}", rng.random_range(0.1..600.0)),
        ("audio.retry_seconds", false) => pick(rng, &float_bad),
        ("motion.history_frames", true) => rng.random_range(0..=200).to_string(),
        ("motion.history_frames", false) => pick(rng, &["-1", "601", "1.0"]),
        ("motion.chunk_frames", true) => rng.random_range(2..=200).to_string(),
        ("motion.chunk_frames", false) => pick(rng, &["0", "-1", "601"]),
        ("motion.lookahead_frames", true) => rng.random_range(0..=200).to_string(),
        ("motion.lookahead_frames", false) => pick(rng, &["-1", "9223372036854775807"]),
        ("motion.norm_seconds", true) => format!("{:e}", rng.random_range(1e-6..1e6)),
        ("motion.norm_seconds", false) => pick(rng, &["0", "nan", "inf", "-3"]),
        ("motion.norm_floor", true) => format!("{:.4}", rng.random_range(0.001..=1.0)),
        ("motion.norm_floor", false) => pick(rng, &["0", "1.5", "nan", "-inf"]),
        ("video.sink", true) => pick(rng, &["\"null://\"", "\"display://\"", "\"y4m://o\""]),
        ("video.sink", false) => pick(rng, &["\"o.mp4\"", "\"null://x\"", "2"]),
        ("video.time_code_period", true) => rng.random_range(1..=i64::MAX).to_string(),
        ("video.time_code_period", false) => pick(rng, &["0", "-1", "nan"]),
        ("video.stamp", true) => pick(rng, &["true", "false"]),
        ("video.stamp", false) => pick(rng, &["1", "\"true\""]),
        ("service.status_interval_s", true) => pick(rng, &["0", "0.5", "10", "3600.0"]),
        ("service.status_interval_s", false) => pick(rng, &["0.25", "3601", "nan", "-0.5"]),
        ("service.status_file", true) => pick(rng, &["\"\"", "\"/run/s.json\""]),
        ("service.status_file", false) => pick(rng, &["0", "[\"a\"]"]),
        (other, _) => panic!("no values for {other}"),
    }
}

#[test]
fn random_configs_are_accepted_exactly_when_every_value_is_valid() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let keys: Vec<String> = all_keys()
        .into_iter()
        .filter(|k| !k.starts_with("audio.period") && !k.starts_with("audio.buffer"))
        .collect();
    for _ in 0..1500 {
        // Each key present with probability ½; at most one invalid value.
        let bad = (rng.random_range(0..3) == 0).then(|| rng.random_range(0..keys.len()));
        let mut top = String::new();
        let mut tables: std::collections::BTreeMap<&str, String> = Default::default();
        for (i, key) in keys.iter().enumerate() {
            if Some(i) != bad && rng.random_range(0..2) == 0 {
                continue;
            }
            let value = random_value(&mut rng, key, Some(i) != bad);
            match key.split_once('.') {
                None => top.push_str(&format!("{key} = {value}\n")),
                Some((t, k)) => tables
                    .entry(t)
                    .or_default()
                    .push_str(&format!("{k} = {value}\n")),
            }
        }
        // ALSA sizes: always a valid pair (their cross check has its own tests).
        let period = rng.random_range(16..=65_536);
        let buffer = rng.random_range(2 * period..=1 << 20);
        tables.entry("audio").or_default().push_str(&format!(
            "period_frames = {period}\nbuffer_frames = {buffer}\n"
        ));
        let mut text = top;
        for (t, body) in &tables {
            text.push_str(&format!("[{t}]\n{body}"));
        }
        match (parse_and_validate(&text), bad) {
            (Ok(s), None) => assert_in_range(&s),
            (Err(e), Some(i)) => {
                let message = e.to_string();
                assert!(
                    message.contains(keys[i].as_str()),
                    "{message} for {}",
                    keys[i]
                );
                assert!(!message.contains('\n'));
            }
            (Ok(_), Some(i)) => panic!("accepted a bad {}:\n{text}", keys[i]),
            (Err(e), None) => panic!("refused a valid config: {e}\n{text}"),
        }
    }
}
