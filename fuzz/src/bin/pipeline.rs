//! Any bytes as a batch of frames through the whole ingress pipeline, then the egress
//! side for every port: a decision for each frame, never a panic. The switch has a guarded
//! access port, a plain access port and a trunk, one tenant with ingress and egress ACLs,
//! and a MAC table small enough for the input to fill it (eviction paths run too).
//!
//! Input: byte 0 picks the ingress port; the rest is frames, each preceded by one length
//! byte (a frame of up to 255 bytes reaches every header xsw reads).
use xsw_fuzz::pipeline::{Harness, PORTS};

fn main() {
    let mut harness = Harness::new();
    afl::fuzz!(|data: &[u8]| {
        let Some((&first, mut rest)) = data.split_first() else {
            return;
        };
        let ingress = PORTS[usize::from(first) % PORTS.len()];
        let mut frames: Vec<&[u8]> = Vec::new();
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len).min(tail.len());
            frames.push(&tail[..len]);
            rest = &tail[len..];
        }
        harness.run(ingress, &frames);
    });
}
