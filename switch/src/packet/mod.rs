//! Zero-copy views over wire formats. Parsing validates a buffer's length once; after that
//! accessors cannot fail, so the data path never handles errors per field.

pub mod ethernet;
pub mod mac;

pub use ethernet::{EthernetFrame, WireError, HEADER_LEN};
pub use mac::{MacAddr, MacParseError};
