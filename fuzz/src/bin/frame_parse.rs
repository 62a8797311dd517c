//! Any bytes as a frame: the parser returns a summary or an error, never panics or reads
//! out of bounds (the frame is exactly as long as the input).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = xsw::packet::parse_frame(data);
        let mut summary = None;
        xsw::packet::parse_into(data, &mut summary);
        // Both ways of parsing agree on whether the frame is usable.
        assert_eq!(summary.is_some(), xsw::packet::parse_frame(data).is_ok());
    });
}
