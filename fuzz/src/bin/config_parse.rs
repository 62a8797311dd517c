//! Any bytes as a config file: accepted or refused with a message, never a panic.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let _ = xsw::config::Config::parse(text, "fuzz.toml");
    });
}
