//! The scheme and shape of the URIs in the config, checked when the config is validated so that
//! a typo is reported with the file and key. The full parsers belong to the modules that open
//! the devices (`audio::SourceUri::parse`, `sink::SinkUri::parse`), which the pipeline runs on
//! these strings when it opens them. Here the scheme must be written out (no bare `out.mp4`) and
//! be one the design lists, and the part after it must have the scheme's shape (a device or
//! path where one is needed, nothing where none is); device names, extensions and query keys
//! are left to those parsers.

/// `scheme://rest` with the scheme lower-cased; `None` without `://`.
fn split(uri: &str) -> Option<(String, &str)> {
    let (scheme, rest) = uri.split_once("://")?;
    Some((scheme.to_ascii_lowercase(), rest))
}

/// The part before a `?` query, and the query (without the `?`).
fn path_query(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    }
}

/// `alsa://DEVICE`, `file://PATH[?QUERY]`, `pipe://?QUERY`, `silence://`.
pub(crate) fn is_source(uri: &str) -> bool {
    let Some((scheme, rest)) = split(uri) else {
        return false;
    };
    let (path, query) = path_query(rest);
    match scheme.as_str() {
        "alsa" => !rest.is_empty(),
        "file" => !path.is_empty(),
        "pipe" => path.is_empty() && query.is_some_and(|q| !q.is_empty()),
        "silence" => rest.is_empty(),
        _ => false,
    }
}

/// `""` or `alsa://DEVICE`.
pub(crate) fn is_playback(uri: &str) -> bool {
    uri.is_empty() || matches!(split(uri), Some((s, rest)) if s == "alsa" && !rest.is_empty())
}

/// `v4l2://PATH`, `display://…` (anything: `?sink=NAME` or a display name), `file://PATH`,
/// `y4m://PATH`, `null://`.
pub(crate) fn is_sink(uri: &str) -> bool {
    let Some((scheme, rest)) = split(uri) else {
        return false;
    };
    let (path, _) = path_query(rest);
    match scheme.as_str() {
        "v4l2" | "file" | "y4m" => !path.is_empty(),
        "display" => true,
        "null" => rest.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        for ok in [
            "alsa://default",
            "alsa://hw:1,0",
            "ALSA://plughw:CARD=Mic",
            "file:///srv/a.wav",
            "file://a.wav?loop=true",
            "pipe://?rate=48000&format=s16le",
            "pipe://?rate=16000&format=f32le&channels=2",
            "silence://",
        ] {
            assert!(is_source(ok), "{ok}");
        }
        for bad in [
            "",
            "default",
            "alsa://",
            "file://",
            "file://?loop=true",
            "pipe://",
            "pipe://x?rate=1",
            "pipe://?",
            "silence://x",
            "pulse://default",
            "hw:1",
        ] {
            assert!(!is_source(bad), "{bad}");
        }
    }

    #[test]
    fn playback() {
        assert!(is_playback(""));
        assert!(is_playback("alsa://default"));
        assert!(!is_playback("alsa://"));
        assert!(!is_playback("default"));
        assert!(!is_playback("null://"));
        assert!(!is_playback("file://x.wav"));
    }

    #[test]
    fn sinks() {
        for ok in [
            "v4l2:///dev/video10",
            "display://",
            "display://?sink=fakesink",
            "display://0",
            "file:///tmp/out.mp4",
            "y4m://out.y4m",
            "null://",
            "NULL://",
        ] {
            assert!(is_sink(ok), "{ok}");
        }
        for bad in [
            "",
            "null",
            "null://x",
            "v4l2://",
            "y4m://",
            "file://",
            "out.mp4",
            "rtsp://host/x",
        ] {
            assert!(!is_sink(bad), "{bad}");
        }
    }
}
