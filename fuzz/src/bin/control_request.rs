//! Any bytes as a control request line: refused with a reason or decoded, never a panic;
//! a decoded request encodes back to a line that decodes to the same request.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(line) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(request) = xsw::control::protocol::parse_request(line) {
            let again = xsw::control::protocol::encode_request(&request);
            let decoded = xsw::control::protocol::parse_request(&again);
            assert!(decoded.is_ok(), "re-encoded request refused: {again}");
        }
    });
}
