//! Bounded logging of refused control requests. Any local user can connect
//! to the control socket, so what a refusal writes to the log must not grow
//! with what the user sends: each line carries at most [`MAX_DETAIL`] bytes of
//! the request or reason, and each uid gets at most [`BURST`] lines per
//! [`WINDOW`]; the first line after a window says how many were suppressed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes of request text or reason a log line (or a reply) carries at most.
pub const MAX_DETAIL: usize = 300;
/// Refusal lines per uid per window.
const BURST: u32 = 10;
const WINDOW: Duration = Duration::from_secs(10);
/// uids remembered at once; beyond that the oldest windows are forgotten.
const MAX_UIDS: usize = 4096;

struct Window {
    started: Instant,
    logged: u32,
    suppressed: u64,
}

static WINDOWS: Mutex<Option<HashMap<u32, Window>>> = Mutex::new(None);

/// `text` cut to at most [`MAX_DETAIL`] bytes (on a character boundary),
/// with the cut said.
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_DETAIL {
        return text.to_string();
    }
    let mut end = MAX_DETAIL;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

/// Whether a refusal for `uid` may be logged now; if so, how many were
/// suppressed since the last logged one.
pub fn admit(uid: u32) -> Option<u64> {
    let now = Instant::now();
    let mut guard = WINDOWS.lock().unwrap_or_else(|p| p.into_inner());
    let windows = guard.get_or_insert_with(HashMap::new);
    if windows.len() >= MAX_UIDS && !windows.contains_key(&uid) {
        windows.retain(|_, w| now.duration_since(w.started) < WINDOW);
        if windows.len() >= MAX_UIDS {
            windows.clear();
        }
    }
    let window = windows.entry(uid).or_insert(Window {
        started: now,
        logged: 0,
        suppressed: 0,
    });
    if now.duration_since(window.started) >= WINDOW {
        window.started = now;
        window.logged = 0;
    }
    if window.logged >= BURST {
        window.suppressed += 1;
        return None;
    }
    window.logged += 1;
    Some(std::mem::take(&mut window.suppressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        let text = "é".repeat(1000);
        let cut = bounded(&text);
        assert!(cut.len() < MAX_DETAIL + 40, "{}", cut.len());
        assert!(cut.ends_with("(2000 bytes in all)"), "{cut}");
        assert_eq!(bounded("short"), "short");
    }

    #[test]
    fn each_uid_gets_a_burst_then_silence_counted() {
        let uid = 4_000_000_001;
        for _ in 0..BURST {
            assert_eq!(admit(uid), Some(0));
        }
        assert_eq!(admit(uid), None);
        assert_eq!(admit(uid), None);
        // Another uid is not affected.
        assert_eq!(admit(4_000_000_002), Some(0));
    }
}
