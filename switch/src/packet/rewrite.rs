//! In-place 802.1Q tag edits for frames leaving on a port whose tagging
//! differs from the port they came in on. The frame buffer has room after
//! the frame (a UMEM frame is larger than any Ethernet frame), so a tag is
//! inserted by moving everything after the MAC addresses 4 bytes on.

const MACS_LEN: usize = 12;
const TAG_LEN: usize = 4;
const TPID_8021Q: [u8; 2] = [0x81, 0x00];

/// What to do to a frame's tag.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TagEdit {
    Keep,
    Insert(u16),
    Remove,
    /// Change the VID of the existing outer tag (priority bits kept).
    Rewrite(u16),
}

impl TagEdit {
    /// From the tag the frame has (`current`) to the tag it must have.
    #[inline]
    pub fn between(current: Option<u16>, wanted: Option<u16>) -> TagEdit {
        match (current, wanted) {
            (None, None) => TagEdit::Keep,
            (None, Some(vid)) => TagEdit::Insert(vid),
            (Some(_), None) => TagEdit::Remove,
            (Some(have), Some(want)) if have == want => TagEdit::Keep,
            (Some(_), Some(want)) => TagEdit::Rewrite(want),
        }
    }

    /// How the frame's length changes.
    #[inline]
    pub fn new_len(self, len: usize) -> Option<usize> {
        match self {
            TagEdit::Insert(_) => Some(len + TAG_LEN),
            TagEdit::Remove => len.checked_sub(TAG_LEN).filter(|&l| l >= MACS_LEN + 2),
            TagEdit::Keep | TagEdit::Rewrite(_) => Some(len),
        }
    }

    /// Applies the edit to `buf`, whose first `old_len` bytes are the frame
    /// and which is at least `new_len(old_len)` long. Returns the new length,
    /// or None (buffer untouched) when the frame or buffer is too short.
    pub fn apply(self, buf: &mut [u8], old_len: usize) -> Option<usize> {
        let new_len = self.new_len(old_len)?;
        if buf.len() < new_len.max(old_len) || old_len < MACS_LEN + 2 {
            return None;
        }
        match self {
            TagEdit::Keep => {}
            TagEdit::Insert(vid) => {
                buf.copy_within(MACS_LEN..old_len, MACS_LEN + TAG_LEN);
                buf[MACS_LEN..MACS_LEN + 2].copy_from_slice(&TPID_8021Q);
                buf[MACS_LEN + 2..MACS_LEN + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
            }
            TagEdit::Remove => {
                buf.copy_within(MACS_LEN + TAG_LEN..old_len, MACS_LEN);
            }
            TagEdit::Rewrite(vid) => {
                if old_len < MACS_LEN + TAG_LEN {
                    return None;
                }
                let tci = u16::from_be_bytes([buf[MACS_LEN + 2], buf[MACS_LEN + 3]]);
                let tci = (tci & 0xf000) | (vid & 0x0fff);
                buf[MACS_LEN + 2..MACS_LEN + 4].copy_from_slice(&tci.to_be_bytes());
            }
        }
        Some(new_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untagged() -> Vec<u8> {
        let mut f: Vec<u8> = (0..12).collect();
        f.extend_from_slice(&[0x08, 0x00, 0xaa, 0xbb, 0xcc]);
        f
    }

    #[test]
    fn insert_then_remove_gives_back_the_frame() {
        let original = untagged();
        let mut buf = original.clone();
        buf.resize(64, 0);
        let len = TagEdit::Insert(100)
            .apply(&mut buf, original.len())
            .expect("insert");
        assert_eq!(len, original.len() + 4);
        assert_eq!(&buf[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(&buf[16..len], &original[12..]);
        let len = TagEdit::Remove.apply(&mut buf, len).expect("remove");
        assert_eq!(&buf[..len], &original[..]);
    }

    #[test]
    fn rewrite_keeps_the_priority_bits() {
        let mut buf = untagged();
        buf.resize(64, 0);
        let len = TagEdit::Insert(100).apply(&mut buf, 17).expect("insert");
        buf[14] |= 0xa0;
        TagEdit::Rewrite(200).apply(&mut buf, len).expect("rewrite");
        assert_eq!(u16::from_be_bytes([buf[14], buf[15]]), 0xa000 | 200);
    }

    #[test]
    fn short_buffers_and_frames_are_refused_untouched() {
        let mut buf = untagged();
        let before = buf.clone();
        assert_eq!(
            TagEdit::Insert(5).apply(&mut buf, 17),
            None,
            "no room for the tag"
        );
        assert_eq!(buf, before);
        assert_eq!(TagEdit::Remove.apply(&mut [0u8; 10], 10), None);
        assert_eq!(TagEdit::Rewrite(5).apply(&mut [0u8; 14], 14), None);
    }

    #[test]
    fn edits_follow_from_the_tags() {
        assert_eq!(TagEdit::between(None, None), TagEdit::Keep);
        assert_eq!(TagEdit::between(None, Some(7)), TagEdit::Insert(7));
        assert_eq!(TagEdit::between(Some(7), None), TagEdit::Remove);
        assert_eq!(TagEdit::between(Some(7), Some(7)), TagEdit::Keep);
        assert_eq!(TagEdit::between(Some(7), Some(8)), TagEdit::Rewrite(8));
    }
}
