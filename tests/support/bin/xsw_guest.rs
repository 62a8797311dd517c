//! `xsw-guest`: stands in for a VM on an xsw tap port.
//!
//! A VM (QEMU) holds the fd of a tap whose host-side interface is a switch
//! port. This program does the same: it opens tap A by name in its current
//! network namespace, creates a second tap B (optionally inside another
//! network namespace) and relays every frame between the two fds. The
//! namespace holding B then plays the guest OS: give B an address and the
//! kernel stack there answers ARP, ping, UDP and TCP like a VM would.
//!
//! Tap B is opened without a virtio-net header and without offloads, so the
//! guest kernel finishes every checksum before a frame reaches the relay.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

const HELP: &str = "\
xsw-guest: stand in for a VM on an xsw tap port

USAGE:
    xsw-guest --tap <NAME> --peer <NAME> [--netns <NS>] [--vnet-hdr] [--no-stdin]

Opens tap <--tap> in the current network namespace (like QEMU does: TUNSETIFF
with IFF_TAP|IFF_NO_PI; attaches to the existing persistent tap of that name,
for example one made with `ip tuntap add mode tap name NAME` or by
`xswctl port add NAME --create-tap`, or creates a transient one if none
exists). Then creates tap <--peer> (the same flags: without --vnet-hdr no
vnet header, so the guest kernel finishes checksums) inside network namespace
<--netns>, and relays
frames both ways between the two taps until stopped.

The namespace holding the peer tap is the guest: configure it with ip, e.g.
    ip -n G link set PEER address 02:00:00:00:00:10
    ip -n G addr add 198.18.5.10/24 dev PEER
    ip -n G link set PEER up

OPTIONS:
    --tap <NAME>     tap to hold (the switch port side), opened in the current netns
    --peer <NAME>    name of the guest-side tap to create (at most 15 bytes)
    --netns <NS>     create the peer tap in this network namespace: a name from
                     `ip netns list` (/run/netns/NS) or a path such as
                     /proc/PID/ns/net. Default: the current namespace.
    --vnet-hdr       open both taps as QEMU opens a virtio-net guest's tap:
                     IFF_VNET_HDR with a 12-byte virtio-net header and the
                     offloads QEMU enables (TUNSETOFFLOAD: checksum, TSO4,
                     TSO6, TSO ECN). The guest kernel then sends and receives
                     frames with partial checksums and TCP segments up to
                     64 KiB, as a virtio guest at default offloads does; the
                     relay passes each frame with its header unchanged.
    --no-stdin       keep running when stdin reaches end-of-file. Without it the
                     relay stops when stdin closes, which ties its life to the
                     parent that spawned it. Use it when starting it in the
                     background from a shell script (`xsw-guest ... --no-stdin &`),
                     where stdin is /dev/null.
    -h, --help       print this help

OUTPUT:
    One line `ready tap=A peer=B netns=NS` on stdout once both taps exist and the
    relay runs. On exit (SIGTERM, SIGINT, stdin closed, or tap removed) a summary
    of relayed and dropped frames goes to stderr. The peer tap disappears with the
    process; tap A stays if it is persistent.

EXIT STATUS:
    0 on a requested stop (signal or stdin closed), 1 on errors (including the
    held tap being deleted under the relay), 2 on usage errors.
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

struct Args {
    tap: String,
    peer: String,
    netns: Option<String>,
    watch_stdin: bool,
    vnet_hdr: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut tap = None;
    let mut peer = None;
    let mut netns = None;
    let mut watch_stdin = true;
    let mut vnet_hdr = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--tap" => tap = Some(it.next().ok_or("--tap needs a value")?),
            "--peer" => peer = Some(it.next().ok_or("--peer needs a value")?),
            "--netns" => netns = Some(it.next().ok_or("--netns needs a value")?),
            "--no-stdin" => watch_stdin = false,
            "--vnet-hdr" => vnet_hdr = true,
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    let tap = tap.ok_or("--tap <NAME> is required")?;
    let peer = peer.ok_or("--peer <NAME> is required")?;
    for name in [&tap, &peer] {
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains('\0') {
            return Err(format!(
                "invalid interface name '{name}' (1-15 bytes, no '/')"
            ));
        }
    }
    Ok(Some(Args {
        tap,
        peer,
        netns,
        watch_stdin,
        vnet_hdr,
    }))
}

/// `struct ifreq` as TUNSETIFF reads it: name, then the flags member of the union.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// The virtio-net header QEMU uses with a virtio 1.0 device (with the
/// num_buffers field), in front of every frame read or written.
const VNET_HDR_LEN: libc::c_int = 12;

/// Opens /dev/net/tun and binds it to tap `name` (IFF_TAP|IFF_NO_PI, and with
/// `vnet_hdr` IFF_VNET_HDR plus QEMU's header size and offloads) in the
/// calling thread's network namespace.
fn open_tap(name: &str, vnet_hdr: bool) -> io::Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").map_err(io::Error::other)?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call;
    // open has no other memory-safety preconditions.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    let vnet_flag = if vnet_hdr { libc::IFF_VNET_HDR } else { 0 };
    req.flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet_flag) as libc::c_short;
    // `req` has struct ifreq's layout: 16-byte name, flags at 16, 40 bytes.
    // SAFETY: TUNSETIFF reads/writes an ifreq; `req` has that layout, a NUL-
    // terminated name (<= 15 bytes in 16), and lives across the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if vnet_hdr {
        let len = VNET_HDR_LEN;
        // SAFETY: TUNSETVNETHDRSZ reads one c_int through the pointer, which
        // points at `len` for the whole call.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETVNETHDRSZ,
                &len as *const libc::c_int,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
        // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned
        // long of flags); no memory is passed.
        if unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                offloads as libc::c_ulong,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}

/// Moves the calling (only) thread into the network namespace `ns`.
fn enter_netns(ns: &str) -> io::Result<()> {
    let path = if ns.contains('/') {
        ns.to_string()
    } else {
        format!("/run/netns/{ns}")
    };
    let cpath = CString::new(path.clone()).map_err(io::Error::other)?;
    // SAFETY: `cpath` is a valid NUL-terminated string that outlives the call.
    let raw = unsafe { libc::open(cpath.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("open {path}: {e}")));
    }
    // SAFETY: `raw` is a freshly opened fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: setns only reads its two integer arguments; `fd` is open. The
    // process is single-threaded here, so the whole process changes namespace.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("setns {path}: {e}")));
    }
    Ok(())
}

fn install_signal_handlers() -> io::Result<()> {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid starting value (empty mask, no flags).
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // No SA_RESTART: poll() must return EINTR so the loop sees STOP.
        sa.sa_flags = 0;
        // SAFETY: `sa` is fully initialised, the handler only stores to an
        // atomic (async-signal-safe), and a null old-action pointer is allowed.
        let rc = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[derive(Default)]
struct Counters {
    frames: u64,
    bytes: u64,
    dropped: u64,
}

enum Drain {
    Ok,
    /// The source tap is gone (device deleted): reading gives EBADFD/EIO.
    Gone(io::Error),
}

/// Moves every frame waiting on `from` to `to`. A frame the destination
/// refuses (tap down: EIO, or no buffer space) is counted and dropped, like a
/// NIC would drop it.
fn drain(from: RawFd, to: RawFd, buf: &mut [u8], c: &mut Counters) -> Drain {
    // Bounded batch so one busy direction cannot starve the other.
    for _ in 0..256 {
        // SAFETY: `buf` is a valid writable buffer of `buf.len()` bytes for
        // the whole call and `from` is an open fd.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Drain::Ok,
                _ => Drain::Gone(e),
            };
        }
        if n == 0 {
            return Drain::Ok;
        }
        let len = n as usize;
        // SAFETY: the first `len` bytes of `buf` were just filled by read(),
        // and `to` is an open fd.
        let w = unsafe { libc::write(to, buf.as_ptr().cast(), len) };
        if w == n {
            c.frames += 1;
            c.bytes += len as u64;
        } else {
            c.dropped += 1;
        }
    }
    Drain::Ok
}

fn run(args: Args) -> Result<ExitCode, String> {
    install_signal_handlers().map_err(|e| format!("sigaction: {e}"))?;

    let tap =
        open_tap(&args.tap, args.vnet_hdr).map_err(|e| format!("open tap {}: {e}", args.tap))?;
    if let Some(ns) = &args.netns {
        enter_netns(ns).map_err(|e| format!("entering netns {ns}: {e}"))?;
    }
    let peer = open_tap(&args.peer, args.vnet_hdr).map_err(|e| {
        format!(
            "create peer tap {} in {}: {e}",
            args.peer,
            args.netns.as_deref().unwrap_or("current netns")
        )
    })?;

    {
        let mut out = io::stdout().lock();
        let ns = args.netns.as_deref().unwrap_or("-");
        writeln!(out, "ready tap={} peer={} netns={ns}", args.tap, args.peer)
            .and_then(|_| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }

    let mut buf = vec![0u8; 65536 + 64];
    let mut to_guest = Counters::default();
    let mut from_guest = Counters::default();
    let stdin_open = args.watch_stdin;
    let mut status = ExitCode::SUCCESS;
    let mut reason = String::from("signal");

    while !STOP.load(Ordering::SeqCst) {
        let mut fds = [
            libc::pollfd {
                fd: tap.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: peer.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // A negative fd is ignored by poll().
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of 3 pollfd structs for the whole call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        let bad = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        if fds[0].revents & bad != 0 {
            reason = format!("tap {} was removed", args.tap);
            status = ExitCode::FAILURE;
            break;
        }
        if fds[1].revents & bad != 0 {
            reason = format!("peer tap {} was removed", args.peer);
            status = ExitCode::FAILURE;
            break;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            if let Drain::Gone(e) =
                drain(tap.as_raw_fd(), peer.as_raw_fd(), &mut buf, &mut to_guest)
            {
                reason = format!("reading tap {}: {e}", args.tap);
                status = ExitCode::FAILURE;
                break;
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            if let Drain::Gone(e) =
                drain(peer.as_raw_fd(), tap.as_raw_fd(), &mut buf, &mut from_guest)
            {
                reason = format!("reading peer tap {}: {e}", args.peer);
                status = ExitCode::FAILURE;
                break;
            }
        }
        if stdin_open && fds[2].revents != 0 {
            let mut sink = [0u8; 512];
            // SAFETY: `sink` is a valid writable buffer of its length; fd 0 is stdin.
            let n = unsafe { libc::read(0, sink.as_mut_ptr().cast(), sink.len()) };
            if n == 0 || (n < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)) {
                reason = String::from("stdin closed");
                break;
            }
        }
    }

    eprintln!(
        "xsw-guest: stopping ({reason}); to guest: {} frames {} bytes {} dropped; from guest: {} frames {} bytes {} dropped",
        to_guest.frames, to_guest.bytes, to_guest.dropped, from_guest.frames, from_guest.bytes, from_guest.dropped
    );
    Ok(status)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\nrun 'xsw-guest --help' for usage");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
