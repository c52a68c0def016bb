pub mod fsx;
pub mod npy;
pub mod numpy_sum;

/// An error and its causes on one line, joined by ": " (what the command line prints).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}
