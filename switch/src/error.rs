//! Helpers for reporting errors to operators.

/// An error and every source under it, joined by ": ", for one log line or reply.
///
/// A source whose text the line already shows (some messages quote their
/// source in the middle, followed by a hint) is not repeated; the comparison
/// ignores case because such messages may quote it lower-cased.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let source_text = s.to_string();
        if !text.to_lowercase().contains(&source_text.to_lowercase()) {
            text.push_str(": ");
            text.push_str(&source_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::chain;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {name}")]
    struct Appends {
        name: &'static str,
        #[source]
        source: io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {name}: {} (a hint)", source.to_string().to_lowercase())]
    struct Quotes {
        name: &'static str,
        #[source]
        source: io::Error,
    }

    #[test]
    fn appends_every_source_the_message_does_not_show() {
        let e = Appends {
            name: "x",
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(
            chain(&e),
            "cannot open x: Device or resource busy (os error 16)"
        );
    }

    #[test]
    fn does_not_repeat_a_source_the_message_quotes() {
        let e = Quotes {
            name: "x",
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert_eq!(
            chain(&e),
            "cannot open x: device or resource busy (os error 16) (a hint)"
        );
    }
}
