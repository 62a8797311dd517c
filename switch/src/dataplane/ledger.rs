//! Where every UMEM frame of one worker is, at every moment.
//!
//! A frame is in exactly one place: the free list, a worker's hands (a batch
//! being switched), a socket's fill ring (or rx ring: the kernel moves it
//! from one to the other), or a socket's tx ring (or completion ring). The
//! worker is the only thread that touches its ledger, so this costs one
//! store per move and no atomics.
//!
//! The ledger makes two things possible: a port can be removed at any time
//! and the frames its socket held return to the pool (`reclaim`), and a
//! frame that shows up somewhere it should not (a double use) is counted in
//! `violations` instead of corrupting a frame in flight.

use xsk_rs::FrameDesc;

const FREE: u32 = 0;
const HELD: u32 = 1;

fn in_fill(slot: u16) -> u32 {
    2 + (u32::from(slot) << 1)
}
fn in_tx(slot: u16) -> u32 {
    3 + (u32::from(slot) << 1)
}

pub struct FrameLedger {
    all: Box<[FrameDesc]>,
    place: Box<[u32]>,
    free: Vec<FrameDesc>,
    frame_shift: u32,
    violations: u64,
}

impl FrameLedger {
    /// `frames` are the descriptors `Umem::new` handed out, one per frame.
    pub fn new(frames: Vec<FrameDesc>, frame_size: u32) -> Self {
        debug_assert!(frame_size.is_power_of_two());
        let count = frames.len();
        FrameLedger {
            place: vec![FREE; count].into_boxed_slice(),
            free: frames.clone(),
            all: frames.into_boxed_slice(),
            frame_shift: frame_size.trailing_zeros(),
            violations: 0,
        }
    }

    fn index(&self, desc: &FrameDesc) -> Option<usize> {
        let index = desc.addr() >> self.frame_shift;
        (index < self.place.len()).then_some(index)
    }

    fn moved(&mut self, desc: &FrameDesc, expected: u32, now: u32) {
        match self.index(desc) {
            Some(i) if self.place[i] == expected => self.place[i] = now,
            Some(i) => {
                self.violations += 1;
                self.place[i] = now;
            }
            None => self.violations += 1,
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn total(&self) -> usize {
        self.all.len()
    }

    pub fn violations(&self) -> u64 {
        self.violations
    }

    /// A free frame for the worker to write into (flood copies, handoffs).
    pub fn take(&mut self) -> Option<FrameDesc> {
        let desc = self.free.pop()?;
        self.moved(&desc, FREE, HELD);
        Some(desc)
    }

    pub fn release(&mut self, desc: FrameDesc) {
        match self.index(&desc) {
            Some(i) if self.place[i] == HELD => {
                self.place[i] = FREE;
                // Cannot grow: every frame has one place and `free` was
                // created with room for all of them.
                self.free.push(desc);
            }
            _ => self.violations += 1,
        }
    }

    /// Moves up to `out.len()` free frames towards socket `slot`'s fill ring.
    /// The caller must hand exactly the returned number to the ring.
    pub fn take_for_fill(&mut self, slot: u16, out: &mut [FrameDesc]) -> usize {
        let n = out.len().min(self.free.len());
        for entry in out.iter_mut().take(n) {
            if let Some(desc) = self.free.pop() {
                self.moved(&desc, FREE, in_fill(slot));
                *entry = desc;
            }
        }
        n
    }

    /// A frame the kernel filled on `slot`'s rx ring is now the worker's.
    pub fn received(&mut self, slot: u16, desc: &FrameDesc) {
        self.moved(desc, in_fill(slot), HELD);
    }

    pub fn queued_for_tx(&mut self, slot: u16, desc: &FrameDesc) {
        self.moved(desc, HELD, in_tx(slot));
    }

    /// A frame back from `slot`'s completion ring returns to the free list.
    pub fn completed(&mut self, slot: u16, desc: FrameDesc) {
        self.moved(&desc, in_tx(slot), HELD);
        self.release(desc);
    }

    /// Frames the worker holds (between turns: none, unless a path forgot to release
    /// one) and frames placed at a socket slot `live` says is closed (none, unless a
    /// closed socket's frames were not reclaimed): the two ways a frame can leak.
    /// A walk over every frame: for the once-a-second housekeeping, not the hot path.
    pub fn leaks(&self, live: impl Fn(u16) -> bool) -> (usize, usize) {
        let mut held = 0;
        let mut stranded = 0;
        for &place in self.place.iter() {
            if place == HELD {
                held += 1;
            } else if place != FREE && !live(((place - 2) >> 1) as u16) {
                stranded += 1;
            }
        }
        (held, stranded)
    }

    /// After socket `slot` is closed, everything it held is free again.
    pub fn reclaim(&mut self, slot: u16) -> usize {
        let (fill, tx) = (in_fill(slot), in_tx(slot));
        let mut reclaimed = 0;
        for (i, place) in self.place.iter_mut().enumerate() {
            if *place == fill || *place == tx {
                *place = FREE;
                self.free.push(self.all[i]);
                reclaimed += 1;
            }
        }
        reclaimed
    }
}
