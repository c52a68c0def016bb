//! The service config as `moda-edged` reads it: the shipped example file, `--set` overrides and
//! the validation with its directory checks, through the public API only.

use std::path::Path;
use std::time::Duration;

use moda_edge::config::{self, Config, ConfigError};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/moda-edge.toml");

#[test]
fn the_example_with_overrides_validates_into_settings() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let avatar = dir.path().join("avatar");
    std::fs::create_dir(&models).unwrap();
    std::fs::create_dir(&avatar).unwrap();

    let mut config = Config::load(Path::new(EXAMPLE)).unwrap();
    // The packaged paths do not exist on a build machine.
    let e = config.validate().unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "config {EXAMPLE}: models = \"/var/lib/moda-edge/models\": expected an existing \
             directory"
        )),
        "{e}"
    );

    for arg in [
        format!("models={}", models.display()),
        format!("avatar={}", avatar.display()),
        "audio.source=silence://".into(),
        "video.sink=y4m://out.y4m".into(),
        "motion.lookahead_frames=3".into(),
        format!(
            "service.status_file={}",
            dir.path().join("status.json").display()
        ),
    ] {
        config.set_arg(&arg).unwrap();
    }
    let s = config.validate().unwrap();
    assert_eq!(s.models, models);
    assert_eq!(s.avatar, avatar);
    assert_eq!(s.audio.source, "silence://");
    assert_eq!(s.video.sink, "y4m://out.y4m");
    assert_eq!(s.motion.window.lookahead, 3);
    assert_eq!(s.latency, Duration::from_millis(400));
    assert_eq!(s.service.status_interval, Some(Duration::from_secs(10)));
}

#[test]
fn the_fuzz_entry_point_reports_instead_of_panicking() {
    assert!(config::parse_and_validate("").is_ok());
    let e = config::parse_and_validate("[motion]\nchunk_frames = 0\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "config <input>: motion.chunk_frames = 0: expected an integer >= 1"
    );
    assert!(matches!(
        config::parse_and_validate("[[audio]]\n"),
        Err(ConfigError::Invalid { .. })
    ));
    assert!(matches!(
        config::parse_and_validate("= = ="),
        Err(ConfigError::Syntax { .. })
    ));
}
