use std::path::Path;
use std::time::Duration;

use super::raw::RawConfig;
use super::schema::{self, Kind};
use super::*;

const EXAMPLE: &str = include_str!("../../systemd/moda-edge.toml");
const ETC: &str = "/etc/moda-edge/moda-edge.toml";

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new(ETC))
}

/// The message of the error `text` (with `--set`s applied) gives, without the file checks.
fn error_of(text: &str, sets: &[&str]) -> String {
    let result = parse(text).and_then(|mut c| {
        for s in sets {
            c.set_arg(s)?;
        }
        c.validate_values()
    });
    match result {
        Ok(s) => panic!("{text:?} {sets:?} was accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn defaults() -> Settings {
    Settings {
        models: "/var/lib/moda-edge/models".into(),
        avatar: "/var/lib/moda-edge/avatar".into(),
        backend: BackendKind::Cpu,
        threads: 1,
        latency: Duration::from_millis(400),
        seed: 1,
        noise: NoiseMode::Seeded,
        audio: AudioSection {
            source: "alsa://default".into(),
            out: String::new(),
            period_frames: 256,
            buffer_frames: 2048,
            retry: Duration::from_secs(3),
        },
        motion: MotionSection {
            window: StreamWindow {
                history: 90,
                chunk: 5,
                lookahead: 5,
            },
            norm_seconds: 20.0,
            norm_floor: 0.02,
        },
        video: VideoSection {
            sink: "null://".into(),
            time_code_period: 600,
            stamp: false,
        },
        service: ServiceSection {
            status_interval: Some(Duration::from_secs(10)),
            status_file: None,
        },
    }
}

/// Every dotted key of the schema.
fn all_keys() -> Vec<(String, Kind)> {
    let mut keys: Vec<(String, Kind)> = schema::TOP
        .iter()
        .map(|k| (k.name.to_owned(), k.kind))
        .collect();
    for s in schema::SECTIONS {
        for k in s.keys {
            keys.push((format!("{}.{}", s.name, k.name), k.kind));
        }
    }
    keys
}

fn get<'a>(table: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    match dotted.split_once('.') {
        None => table.get(dotted),
        Some((t, k)) => table.get(t)?.as_table()?.get(k),
    }
}

/// Config text with `key = value` pairs, grouped into their tables.
fn text_with(pairs: &[(&str, &str)]) -> String {
    let mut top = String::new();
    let mut tables: std::collections::BTreeMap<&str, String> = Default::default();
    for (key, value) in pairs {
        match key.split_once('.') {
            None => top.push_str(&format!("{key} = {value}\n")),
            Some((t, k)) => tables
                .entry(t)
                .or_default()
                .push_str(&format!("{k} = {value}\n")),
        }
    }
    for (t, body) in tables {
        top.push_str(&format!("[{t}]\n{body}"));
    }
    top
}

#[test]
fn the_shipped_example_writes_every_key_with_its_default() {
    let config = Config::from_toml(EXAMPLE, Path::new("systemd/moda-edge.toml")).unwrap();
    for (key, _) in all_keys() {
        assert!(
            get(&config.table, &key).is_some(),
            "systemd/moda-edge.toml does not document `{key}`"
        );
    }
    let settings = config.validate_values().unwrap();
    assert_eq!(settings, defaults());
    assert_eq!(parse_and_validate("").unwrap(), defaults(), "empty file");
    assert_eq!(settings.noise(), Noise::Seeded(1));
    assert_eq!(settings.audio.playback(), None);
    assert_eq!(settings.motion.streaming(), StreamingSettings::default());
    // Every key's default, as the example writes it, is what the serde defaults hold.
    let written = RawConfig::deserialize(toml::Value::Table(config.table.clone())).unwrap();
    assert_eq!(written, RawConfig::default());
}

#[test]
fn the_schema_matches_the_serde_structs() {
    let table = toml::Table::try_from(RawConfig::default()).unwrap();
    let mut serde_keys = Vec::new();
    for (name, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                serde_keys.extend(inner.keys().map(|k| format!("{name}.{k}")));
            }
            _ => serde_keys.push(name.clone()),
        }
    }
    let mut schema_keys: Vec<String> = all_keys().into_iter().map(|(k, _)| k).collect();
    serde_keys.sort();
    schema_keys.sort();
    assert_eq!(serde_keys, schema_keys);
    for (key, kind) in all_keys() {
        let value = get(&table, &key).unwrap();
        assert!(
            schema::has_kind(value, kind),
            "{key}: {value:?} vs {kind:?}"
        );
    }
}

#[test]
fn a_full_config_reads_into_typed_settings() {
    let text = r#"
        models = "/m"
        avatar = "/a"
        backend = "tensorrt"
        threads = 4
        latency_ms = 250
        seed = 9007199254740993
        noise = "zero"
        [audio]
        source = "file:///x.wav?loop=true"
        out = "alsa://hw:0"
        period_frames = 512
        buffer_frames = 1024
        retry_seconds = 1   # an integer is a number too
        [motion]
        history_frames = 0
        chunk_frames = 1
        lookahead_frames = 1
        norm_seconds = 0.5
        norm_floor = 1.0
        [video]
        sink = "v4l2:///dev/video10"
        time_code_period = 1
        stamp = true
        [service]
        status_interval_s = 0
        status_file = "/run/moda-edge/status.json"
    "#;
    let s = parse_and_validate(text).unwrap();
    assert_eq!(s.models, Path::new("/m"));
    assert_eq!(s.backend, BackendKind::TensorRt);
    assert_eq!(s.threads, 4);
    assert_eq!(s.latency, Duration::from_millis(250));
    assert_eq!(s.noise(), Noise::Zero);
    assert_eq!(s.seed, 9_007_199_254_740_993, "no float round trip");
    assert_eq!(s.audio.playback(), Some("alsa://hw:0"));
    assert_eq!((s.audio.period_frames, s.audio.buffer_frames), (512, 1024));
    assert_eq!(s.audio.retry, Duration::from_secs(1));
    assert_eq!(s.motion.window.frames(), 2);
    assert_eq!(s.motion.norm_floor, 1.0);
    assert_eq!(s.video.sink, "v4l2:///dev/video10");
    assert!(s.video.stamp);
    assert_eq!(s.service.status_interval, None, "0 turns the log line off");
    assert_eq!(
        s.service.status_file.as_deref(),
        Some(Path::new("/run/moda-edge/status.json"))
    );
}

#[test]
fn unknown_keys_name_the_key_and_the_known_keys_of_their_table() {
    assert_eq!(
        error_of("[audio]\nsourse = \"alsa://x\"", &[]),
        "config /etc/moda-edge/moda-edge.toml: unknown key `audio.sourse` \
         (known: source, out, period_frames, buffer_frames, retry_seconds)"
    );
    assert_eq!(
        error_of("latency = 3", &[]),
        "config /etc/moda-edge/moda-edge.toml: unknown key `latency` (known: models, avatar, \
         backend, threads, latency_ms, seed, noise, [audio], [motion], [video], [service])"
    );
    // The old example's layout: [models] was a table, [output] is gone.
    assert!(error_of("[output]\nsink = \"null://\"", &[]).contains("unknown key `output`"));
    // Dotted keys and sub-tables are keys of their table too.
    assert!(error_of("video.sink.x = 1", &[])
        .ends_with("video.sink = { x = 1 }: expected a URI v4l2:///dev/videoN, display://[?sink=NAME], file://PATH.mp4, y4m://PATH or null://"));
    assert!(error_of("[motion.extra]\na = 1", &[]).contains("unknown key `motion.extra`"));
    assert!(error_of("\"we ird\" = 1", &[]).contains("unknown key `\"we ird\"`"));
    // --set: the same sentence, naming the argument.
    assert_eq!(
        error_of("", &["video.sinc=null://"]),
        "--set video.sinc=null://: unknown key `video.sinc` (known: sink, time_code_period, stamp)"
    );
    assert!(error_of("", &["nope=1"]).contains("(known: models, avatar"));
    assert!(error_of("", &["nope.x=1"]).contains("(known: models, avatar"));
    assert_eq!(
        error_of("", &["service=1"]),
        "--set service=1: unknown key `service` \
         (known: service.status_interval_s, service.status_file)"
    );
}

#[test]
fn values_of_the_wrong_type_are_refused() {
    assert_eq!(
        error_of("threads = \"4\"", &[]),
        "config /etc/moda-edge/moda-edge.toml: threads = \"4\": expected an integer 1..=64"
    );
    assert_eq!(
        error_of("[video]\nstamp = 1", &[]),
        "config /etc/moda-edge/moda-edge.toml: video.stamp = 1: expected true or false"
    );
    assert_eq!(
        error_of("latency_ms = 400.0", &[]),
        "config /etc/moda-edge/moda-edge.toml: latency_ms = 400.0: expected an integer 1..=10000"
    );
    assert!(error_of("audio = 5", &[]).ends_with(
        "audio = 5: expected a table [audio] with the keys source, out, period_frames, \
         buffer_frames, retry_seconds"
    ));
    assert!(error_of("models = [\"/a\", 2]", &[]).contains("models = [\"/a\", 2]: expected"));
    // The old example wrote [models] as a table.
    assert!(error_of("[models]\ndir = \"/x\"", &[])
        .contains("models = { dir = \"/x\" }: expected a directory path"));
    assert!(error_of("noise = 1979-05-27", &[]).contains("noise = 1979-05-27: expected"));
}

#[test]
fn values_out_of_range_are_refused_and_the_bounds_accepted() {
    // (key, values refused, values accepted)
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("threads", &["0", "65", "-1"], &["1", "64"]),
        ("latency_ms", &["0", "10001"], &["1", "10000"]),
        ("seed", &["-1"], &["0", "9223372036854775807"]),
        (
            "backend",
            &["\"CPU\"", "\"gpu\"", "\"\""],
            &["\"cpu\"", "\"tensorrt\""],
        ),
        ("noise", &["\"random\""], &["\"zero\"", "\"seeded\""]),
        ("models", &["\"\""], &["\"relative/dir\""]),
        ("avatar", &["\"\""], &["\"/a\""]),
        ("audio.period_frames", &["15", "65537"], &["16", "1024"]),
        (
            "audio.buffer_frames",
            &["511", "1048577"],
            &["512", "1048576"],
        ),
        (
            "audio.retry_seconds",
            &["0.09", "600.5", "0"],
            &["0.1", "600"],
        ),
        ("motion.history_frames", &["-1", "596"], &["0", "590"]),
        ("motion.chunk_frames", &["0", "-5"], &["1", "505"]),
        (
            "motion.lookahead_frames",
            &["-1", "9223372036854775807"],
            &["0", "505"],
        ),
        ("motion.norm_seconds", &["0", "-1.0"], &["1e-9", "1e300"]),
        (
            "motion.norm_floor",
            &["0", "1.0000001", "-0.5", "1e-300"],
            &["1e-6", "1"],
        ),
        (
            "video.time_code_period",
            &["0", "-600"],
            &["1", "9223372036854775807"],
        ),
        (
            "service.status_interval_s",
            &["0.4", "3600.1", "-1"],
            &["0", "0.5", "3600"],
        ),
    ];
    for (key, bad, good) in cases {
        for value in *bad {
            let message = error_of(&text_with(&[(key, value)]), &[]);
            assert!(
                message.starts_with(&format!("config {ETC}: ")) && message.contains(key),
                "{key} = {value}: {message}"
            );
            assert!(message.contains(": expected "), "{message}");
        }
        for value in *good {
            // A small window, so that each window key can reach its own bounds.
            let mut pairs = vec![
                ("motion.history_frames", "1"),
                ("motion.chunk_frames", "1"),
                ("motion.lookahead_frames", "1"),
            ];
            pairs.retain(|(k, _)| k != key);
            pairs.push((key, value));
            let text = text_with(&pairs);
            if let Err(e) = parse_and_validate(&text) {
                panic!("{key} = {value} refused: {e}\n{text}");
            }
        }
    }
    assert_eq!(
        error_of("[motion]\nchunk_frames = 0", &[]),
        "config /etc/moda-edge/moda-edge.toml: motion.chunk_frames = 0: expected an integer >= 1"
    );
    assert_eq!(
        error_of("[audio]\nbuffer_frames = 300", &[]),
        "config /etc/moda-edge/moda-edge.toml: audio.buffer_frames = 300: expected an integer \
         512..=1048576 (at least 2 × audio.period_frames = 2 × 256)"
    );
    assert_eq!(
        error_of("[motion]\nhistory_frames = 595", &[]),
        "config /etc/moda-edge/moda-edge.toml: motion.history_frames + motion.chunk_frames + \
         motion.lookahead_frames = 595 + 5 + 5 = 605: expected a window of 2..=600 frames \
         (MODA's limits)"
    );
    assert!(error_of(
        "[motion]\nhistory_frames = 0\nchunk_frames = 1\nlookahead_frames = 0",
        &[]
    )
    .contains("= 0 + 1 + 0 = 1: expected a window of 2..=600 frames"));
    // No overflow on the sum of huge values.
    assert!(error_of(
        "[motion]\nhistory_frames = 9223372036854775807\nlookahead_frames = 9223372036854775807",
        &[]
    )
    .contains("expected a window of 2..=600 frames"));
}

#[test]
fn nan_and_infinity_are_refused_for_every_number() {
    for key in [
        "audio.retry_seconds",
        "motion.norm_seconds",
        "motion.norm_floor",
        "service.status_interval_s",
    ] {
        let (table, name) = key.split_once('.').unwrap();
        for value in ["nan", "+nan", "-nan", "inf", "+inf", "-inf"] {
            let message = error_of(&format!("[{table}]\n{name} = {value}"), &[]);
            let shown = value.trim_start_matches('+').replace("-nan", "nan");
            assert!(
                message.starts_with(&format!("config {ETC}: {key} = {shown}: expected ")),
                "{message}"
            );
            let message = error_of("", &[&format!("{key}={value}")]);
            assert!(
                message.starts_with(&format!("--set {key}={value}: expected ")),
                "{message}"
            );
        }
    }
    // 1e309 is not a TOML float (it overflows): a syntax error, not an infinity.
    assert!(error_of("[motion]\nnorm_seconds = 1e309", &[]).contains("line 2"));
}

#[test]
fn uris_with_another_scheme_or_shape_are_refused() {
    assert_eq!(
        error_of("[audio]\nsource = \"pulse://default\"", &[]),
        "config /etc/moda-edge/moda-edge.toml: audio.source = \"pulse://default\": expected a \
         URI alsa://DEVICE, file://PATH.wav[?loop=true], \
         pipe://?rate=R&format=s16le|f32le[&channels=N] or silence://"
    );
    assert!(error_of("[audio]\nsource = \"hw:1\"", &[]).contains("audio.source = \"hw:1\""));
    assert!(error_of("[audio]\nsource = \"alsa://\"", &[]).contains("audio.source"));
    assert_eq!(
        error_of("[audio]\nout = \"null://\"", &[]),
        "config /etc/moda-edge/moda-edge.toml: audio.out = \"null://\": expected \"\" (no \
         playback) or alsa://DEVICE"
    );
    assert!(error_of("[video]\nsink = \"out.mp4\"", &[])
        .contains("video.sink = \"out.mp4\": expected a URI v4l2:///dev/videoN"));
    assert!(error_of("", &["video.sink=rtsp://cam/1"])
        .starts_with("--set video.sink=rtsp://cam/1: expected a URI"));
    for ok in [
        "silence://",
        "pipe://?rate=8000&format=s16le",
        "file://a.wav",
    ] {
        let s = parse_and_validate(&format!("[audio]\nsource = \"{ok}\"")).unwrap();
        assert_eq!(s.audio.source, ok);
    }
}

#[test]
fn overrides_apply_as_toml_scalars_or_bare_strings() {
    let mut c = parse(EXAMPLE).unwrap();
    for arg in [
        "motion.chunk_frames=6",
        "latency_ms=500",
        "audio.retry_seconds=2", // an integer for a number
        "video.stamp=true",
        "audio.source=\"alsa://hw:1,0\"",   // quoted TOML string
        "audio.out=alsa://plughw:CARD=Usb", // bare string with '=' in it
        "video.sink=null://",
        "service.status_file=", // empty: off
        "backend='tensorrt'",   // literal string
        "seed=7",
        "seed=8", // the last one wins
        " threads =3",
    ] {
        c.set_arg(arg).unwrap_or_else(|e| panic!("{arg}: {e}"));
    }
    let s = c.validate_values().unwrap();
    assert_eq!(s.motion.window.chunk, 6);
    assert_eq!(s.latency, Duration::from_millis(500));
    assert_eq!(s.audio.retry, Duration::from_secs(2));
    assert!(s.video.stamp);
    assert_eq!(s.audio.source, "alsa://hw:1,0");
    assert_eq!(s.audio.playback(), Some("alsa://plughw:CARD=Usb"));
    assert_eq!(s.service.status_file, None);
    assert_eq!(s.backend, BackendKind::TensorRt);
    assert_eq!(s.seed, 8);
    assert_eq!(s.threads, 3);
    let overrides: Vec<_> = c.overrides().collect();
    assert!(overrides.contains(&("seed", "8")));
    // A key missing from the file, in a table missing from the file.
    let mut c = parse("").unwrap();
    c.set("service.status_interval_s", "0.5").unwrap();
    let s = c.validate_values().unwrap();
    assert_eq!(s.service.status_interval, Some(Duration::from_millis(500)));
    // The effective config reads back into the same settings.
    let again = parse(&c.effective_toml().unwrap())
        .unwrap()
        .validate_values()
        .unwrap();
    assert_eq!(again, s);
}

#[test]
fn override_errors_name_the_argument() {
    assert_eq!(
        error_of("", &["latency_ms=abc"]),
        "--set latency_ms=abc: expected an integer 1..=10000"
    );
    assert_eq!(
        error_of("", &["latency_ms=0"]),
        "--set latency_ms=0: expected an integer 1..=10000"
    );
    assert_eq!(
        error_of("", &["video.stamp=yes"]),
        "--set video.stamp=yes: expected true or false"
    );
    assert_eq!(
        error_of("", &["threads=2.0"]),
        "--set threads=2.0: expected an integer 1..=64"
    );
    assert_eq!(
        error_of("", &["threads=[1]"]),
        "--set threads=[1]: expected an integer 1..=64"
    );
    // A value from the file that only fails because of an override names the override.
    assert_eq!(
        error_of(
            "[audio]\nbuffer_frames = 2048",
            &["audio.period_frames=2048"]
        ),
        "--set audio.period_frames=2048: audio.buffer_frames = 2048: expected an integer \
         4096..=1048576 (at least 2 × audio.period_frames = 2 × 2048)"
    );
    // A value from the file is still reported with the file when overrides are present.
    assert!(error_of("threads = 0", &["seed=3"]).starts_with("config /etc/"));
    // Control characters are escaped: the message stays on one line.
    let message = error_of("", &["latency_ms=1\n2"]);
    assert_eq!(
        message,
        "--set \"latency_ms\"=\"1\\n2\": expected an integer 1..=10000"
    );
}

#[test]
fn malformed_set_arguments_are_refused() {
    let mut c = parse("").unwrap();
    for arg in ["latency_ms", "", "=5", " =5"] {
        let e = c.set_arg(arg).unwrap_err();
        assert!(matches!(e, ConfigError::BadSet { .. }), "{arg:?}: {e:?}");
        assert_eq!(
            e.to_string(),
            format!("--set {arg:?}: expected KEY=VALUE, e.g. motion.chunk_frames=6")
        );
    }
    assert!(matches!(
        c.set_arg("audio.=1"),
        Err(ConfigError::UnknownKey { .. })
    ));
}

#[test]
fn syntax_errors_give_the_line_and_column() {
    let e = parse("threads = 1\n[audio]\nsource = \"alsa://x\nout = \"\"\n").unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &e else {
        panic!("{e:?}");
    };
    // The string runs into the end of line 3 (after 18 characters).
    assert_eq!((*line, *column), (3, 19), "{e}");
    assert!(e
        .to_string()
        .starts_with(&format!("config {ETC}: line 3, column 19: ")));
    assert!(!e.to_string().contains('\n'));
    let e = parse("a = 1\na = 2").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn directories_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let avatar = dir.path().join("avatar");
    std::fs::create_dir(&models).unwrap();
    std::fs::write(&avatar, b"not a dir").unwrap();
    let text = format!(
        "models = {:?}\navatar = {:?}\n",
        models.display().to_string(),
        avatar.display().to_string()
    );
    let config = parse(&text).unwrap();
    assert!(config.validate_values().is_ok(), "values alone are fine");
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        format!(
            "config {ETC}: avatar = {:?}: expected an existing directory, but it is not a \
             directory",
            avatar.display().to_string()
        )
    );
    let missing = dir.path().join("missing");
    let mut config = parse(&text).unwrap();
    config
        .set("models", &missing.display().to_string())
        .unwrap();
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        format!(
            "--set models={}: expected an existing directory, but nothing is there",
            missing.display()
        )
    );
    config.set("models", &models.display().to_string()).unwrap();
    config.set("avatar", &models.display().to_string()).unwrap();
    let settings = config.validate().unwrap();
    assert_eq!(settings.models, models);
    // The status file's directory must exist; the file need not.
    config
        .set(
            "service.status_file",
            &missing.join("s.json").display().to_string(),
        )
        .unwrap();
    assert!(config
        .validate()
        .unwrap_err()
        .to_string()
        .contains("expected a file in an existing directory"));
    config
        .set(
            "service.status_file",
            &dir.path().join("s.json").display().to_string(),
        )
        .unwrap();
    assert!(config.validate().is_ok());
}

#[test]
fn a_file_that_cannot_be_read_names_it_and_keeps_the_cause_as_source() {
    let e = Config::load(Path::new("/nonexistent/moda-edge.toml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot read config /nonexistent/moda-edge.toml"
    );
    assert!(std::error::Error::source(&e).is_some());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "threads = 2\n").unwrap();
    assert_eq!(
        Config::load(&path)
            .unwrap()
            .validate_values()
            .unwrap()
            .threads,
        2
    );
}
