//! BPF_PROG_RUN (BPF_PROG_TEST_RUN) in XDP live-frames mode, as a raw bpf(2)
//! call: aya 0.13 has no API for it.
//!
//! In live-frames mode the kernel builds real xdp_frames from `data_in`, runs
//! the program on each and acts on the verdict: XDP_TX becomes a redirect to
//! the ctx's ingress device (its ndo_xdp_xmit), so the frames really leave it.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `BPF_PROG_TEST_RUN` in `enum bpf_cmd` (include/uapi/linux/bpf.h).
const BPF_PROG_TEST_RUN: libc::c_long = 10;
/// `BPF_F_TEST_XDP_LIVE_FRAMES` (kernel >= 5.18).
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// TEST_XDP_MAX_BATCH in net/bpf/test_run.c: larger batches give E2BIG.
pub const MAX_BATCH: u32 = 256;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h), field
/// for field. The kernel rejects the call unless every byte after the last
/// field it knows is zero, so the tail padding is an explicit zero field.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md` (include/uapi/linux/bpf.h), the XDP context passed in.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// Runs `prog` over `repeat` copies of `frame` as if received on `ifindex`
/// (queue 0), `batch` frames per kernel batch. Blocks until all are done or
/// a signal arrives (then the error is EINTR and an unknown part was sent).
pub fn run_live(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
    batch: u32,
) -> std::io::Result<()> {
    let len =
        u32::try_from(frame.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?;
    // The kernel requires data == 0 (no metadata) and data_end == data_size_in.
    let ctx = XdpMd {
        data: 0,
        data_end: len,
        ingress_ifindex: ifindex,
        ..Default::default()
    };
    let attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: len,
        data_in: frame.as_ptr() as u64,
        repeat,
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        flags: BPF_F_TEST_XDP_LIVE_FRAMES,
        batch_size: batch,
        // data_out and ctx_out must stay 0: live mode refuses output buffers.
        ..Default::default()
    };
    // The kernel only reads what `attr` points to in live mode (no output
    // buffers are set).
    // SAFETY: `attr` is a fully initialised #[repr(C)] test-run attr whose
    // pointers (frame, ctx) refer to live memory of the lengths given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &attr as *const TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn attr_layout_matches_uapi() {
        assert_eq!(offset_of!(TestRunAttr, data_in), 16);
        assert_eq!(offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(offset_of!(TestRunAttr, flags), 64);
        assert_eq!(offset_of!(TestRunAttr, batch_size), 72);
        assert_eq!(size_of::<TestRunAttr>(), 80);
        assert_eq!(size_of::<XdpMd>(), 24);
        assert_eq!(offset_of!(XdpMd, ingress_ifindex), 12);
    }
}
