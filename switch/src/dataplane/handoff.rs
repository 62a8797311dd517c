//! What one worker passes to another: frames for a port whose transmit
//! socket the other worker owns, and MAC learning events.
//!
//! A frame cannot move between UMEMs by address, so its bytes are copied
//! into a preallocated slot here and again into the receiving worker's UMEM.
//! Slot indices travel through two lock-free queues (free and ready); the
//! side that holds an index is the only one touching that slot.

use std::cell::UnsafeCell;

use crossbeam::queue::ArrayQueue;

use super::wake::Wake;
use crate::packet::MacAddr;
use crate::pipeline::{PortId, TenantId};

/// Largest frame a worker hands over: a 1500-byte MTU frame with two VLAN
/// tags, rounded up. Larger frames are not forwarded across workers.
pub const HANDOFF_FRAME_MAX: usize = 1536;

struct Slot {
    bytes: UnsafeCell<[u8; HANDOFF_FRAME_MAX]>,
}

#[derive(Copy, Clone)]
struct Ready {
    slot: u32,
    len: u16,
    port: PortId,
}

pub struct FrameRing {
    slots: Box<[Slot]>,
    free: ArrayQueue<u32>,
    ready: ArrayQueue<Ready>,
}

// SAFETY: a slot's bytes are only touched by the side that popped its index
// from `free` (writer) or `ready` (reader); the queues hand each index to one
// side at a time, with the release/acquire ordering the queues provide.
unsafe impl Sync for FrameRing {}

impl FrameRing {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let free = ArrayQueue::new(capacity);
        for i in 0..capacity as u32 {
            let _ = free.push(i);
        }
        FrameRing {
            slots: (0..capacity)
                .map(|_| Slot {
                    bytes: UnsafeCell::new([0; HANDOFF_FRAME_MAX]),
                })
                .collect(),
            free,
            ready: ArrayQueue::new(capacity),
        }
    }

    /// Copies `frame` in for `port`. False when the ring is full or the frame
    /// too large: the caller counts the drop.
    pub fn push(&self, port: PortId, frame: &[u8]) -> bool {
        if frame.len() > HANDOFF_FRAME_MAX {
            return false;
        }
        let Some(slot) = self.free.pop() else {
            return false;
        };
        let Some(cell) = self.slots.get(slot as usize) else {
            return false;
        };
        // SAFETY: popping `slot` from `free` gave this thread sole access to it
        // until it is pushed to `ready` below.
        let bytes = unsafe { &mut *cell.bytes.get() };
        bytes[..frame.len()].copy_from_slice(frame);
        // Cannot fail: `ready` holds as many entries as there are slots.
        let _ = self.ready.push(Ready {
            slot,
            len: frame.len() as u16,
            port,
        });
        true
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Hands the oldest frame to `consume`, then recycles its slot.
    pub fn pop_with(&self, consume: impl FnOnce(PortId, &[u8])) -> bool {
        let Some(ready) = self.ready.pop() else {
            return false;
        };
        if let Some(cell) = self.slots.get(ready.slot as usize) {
            // SAFETY: popping the index from `ready` gave this thread sole
            // access to the slot until it is pushed back to `free`.
            let bytes = unsafe { &*cell.bytes.get() };
            consume(ready.port, &bytes[..usize::from(ready.len)]);
        }
        let _ = self.free.push(ready.slot);
        true
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LearnEvent {
    pub tenant_id: TenantId,
    pub mac: MacAddr,
    pub port: PortId,
    /// For a MAC behind a tunnel port: which of its remotes (1-based), else 0.
    pub remote: u8,
}

/// Every ordered pair of workers gets its own rings, so each ring has one
/// producer and one consumer.
pub struct Mesh {
    workers: usize,
    frames: Box<[FrameRing]>,
    learned: Box<[ArrayQueue<LearnEvent>]>,
    wakes: Box<[Wake]>,
}

impl Mesh {
    pub fn new(
        workers: usize,
        frames_per_ring: usize,
        events_per_ring: usize,
    ) -> std::io::Result<Self> {
        let pairs = workers * workers;
        Ok(Mesh {
            wakes: (0..workers)
                .map(|_| Wake::new())
                .collect::<Result<_, _>>()?,
            workers,
            frames: (0..pairs)
                .map(|_| FrameRing::new(if workers > 1 { frames_per_ring } else { 1 }))
                .collect(),
            learned: (0..pairs)
                .map(|_| ArrayQueue::new(events_per_ring.max(1)))
                .collect(),
        })
    }

    /// Worker `id`'s wake-up; every worker has one.
    pub fn wake(&self, id: usize) -> &Wake {
        &self.wakes[id.min(self.wakes.len() - 1)]
    }

    /// Wakes the peers of `id` that sleep; a load per peer when none does.
    pub fn notify_peers(&self, id: usize) {
        for (peer, wake) in self.wakes.iter().enumerate() {
            if peer != id {
                wake.notify();
            }
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    fn pair(&self, from: usize, to: usize) -> usize {
        from * self.workers + to
    }

    pub fn frames(&self, from: usize, to: usize) -> Option<&FrameRing> {
        self.frames.get(self.pair(from, to))
    }

    pub fn learned(&self, from: usize, to: usize) -> Option<&ArrayQueue<LearnEvent>> {
        self.learned.get(self.pair(from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_with_their_port_and_bytes() {
        let ring = FrameRing::new(2);
        assert!(ring.push(3, &[1, 2, 3]));
        assert!(ring.push(4, &[9; 60]));
        assert!(!ring.push(5, &[0]), "a full ring must refuse");
        let mut seen = Vec::new();
        while ring.pop_with(|port, bytes| seen.push((port, bytes.to_vec()))) {}
        assert_eq!(seen, vec![(3, vec![1, 2, 3]), (4, vec![9; 60])]);
        assert!(ring.push(6, &[7]), "slots must be recycled after pop");
    }

    #[test]
    fn oversized_frames_are_refused() {
        let ring = FrameRing::new(1);
        assert!(!ring.push(0, &[0; HANDOFF_FRAME_MAX + 1]));
        assert!(ring.push(0, &[0; HANDOFF_FRAME_MAX]));
    }

    #[test]
    fn crossing_threads_keeps_every_frame_intact() {
        let ring = std::sync::Arc::new(FrameRing::new(64));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                let mut sent = 0u32;
                while sent < 10_000 {
                    if ring.push(sent as u16, &sent.to_le_bytes()) {
                        sent += 1;
                    }
                }
            })
        };
        let mut next = 0u32;
        while next < 10_000 {
            ring.pop_with(|port, bytes| {
                assert_eq!(port, next as u16);
                assert_eq!(bytes, next.to_le_bytes());
                next += 1;
            });
        }
        producer.join().expect("producer panicked");
    }
}
