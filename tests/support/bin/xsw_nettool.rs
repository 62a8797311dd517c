//! `xsw-nettool`: small, bounded traffic tools for the xsw integration tests.
//!
//! Every subcommand stops by itself: each has an overall `--timeout` after
//! which the process exits with status 124. Results are one JSON line on
//! stdout; servers print `ready` first, once they are bound.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const HELP: &str = "\
xsw-nettool: bounded traffic tools for xsw tests

USAGE:
    xsw-nettool udp-echo  --bind IP:PORT [--timeout SECS]
    xsw-nettool udp-probe --to IP:PORT [--count N] [--interval-ms MS] [--size BYTES]
                          [--wait-ms MS] [--timeout SECS]
    xsw-nettool tcp-sink  --bind IP:PORT [--timeout SECS]
    xsw-nettool tcp-send  --to IP:PORT --bytes N [--seed S] [--timeout SECS]
    xsw-nettool raw-send  --iface IF --frame HEX [--count N] [--interval-ms MS] [--src-count K]
    xsw-nettool tcx-query --iface IF

udp-echo   answers every datagram with the same bytes; prints `ready` once bound,
           and {\"echoed\":N} when the timeout ends it.
udp-probe  sends N numbered datagrams, one every MS ms, and counts the echoes that
           come back intact; waits --wait-ms after the last send, then prints
           {\"sent\":N,\"received\":R,\"lost\":L,\"corrupt\":C,\"max_consecutive_lost\":M}.
tcp-sink   accepts one connection, reads to end-of-stream, prints
           {\"bytes\":N,\"fnv64\":\"HEX\"} and closes.
tcp-send   connects, sends N pseudo-random bytes (xorshift seeded by S), half-closes,
           waits for the peer to close, prints {\"bytes\":N,\"fnv64\":\"HEX\"}.
raw-send   sends the Ethernet frame given in hex (whole frame, from the destination
           MAC on) N times out of IF through AF_PACKET; prints {\"sent\":N}. With
           --src-count K, frame i carries the frame's source MAC plus i mod K (in its
           low 24 bits): K different sources.
tcx-query  asks the kernel (BPF_PROG_QUERY) which programs are attached to IF's
           tcx ingress hook; prints {\"tcx_ingress\":[PROG_ID,...]}. (bpftool 7.1
           lists tcx links without their interface.)

--timeout (default 10 s) bounds the whole run; on expiry the tool exits with 124.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprint!("error: missing subcommand\n\n{HELP}");
        return ExitCode::from(2);
    };
    if cmd == "-h" || cmd == "--help" {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let opts = match Opts::parse(&args[1..]) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Hard bound on the whole run, whatever happens on the network.
    let limit = Duration::from_secs_f64(opts.timeout);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("xsw-nettool: timeout after {:.1} s", limit.as_secs_f64());
        std::process::exit(124);
    });
    let result = match cmd.as_str() {
        "udp-echo" => udp_echo(&opts),
        "raw-send" => raw_send(&opts),
        "udp-probe" => udp_probe(&opts),
        "tcp-sink" => tcp_sink(&opts),
        "tcp-send" => tcp_send(&opts),
        "tcx-query" => tcx_query(&opts),
        other => Err(format!("unknown subcommand '{other}'")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Opts {
    bind: Option<SocketAddr>,
    to: Option<SocketAddr>,
    count: u64,
    interval_ms: u64,
    size: usize,
    wait_ms: u64,
    bytes: u64,
    seed: u64,
    timeout: f64,
    iface: Option<String>,
    frame: Vec<u8>,
    /// raw-send: give frame i the source MAC of the frame + (i mod this).
    src_count: u64,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts {
            bind: None,
            to: None,
            count: 10,
            interval_ms: 10,
            size: 64,
            wait_ms: 500,
            src_count: 1,
            bytes: 1 << 20,
            seed: 1,
            timeout: 10.0,
            iface: None,
            frame: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("bad value for {k}: '{v}': {e}");
            match k.as_str() {
                "--bind" => o.bind = Some(v.parse().map_err(|e| bad(&e))?),
                "--to" => o.to = Some(v.parse().map_err(|e| bad(&e))?),
                "--count" => o.count = v.parse().map_err(|e| bad(&e))?,
                "--interval-ms" => o.interval_ms = v.parse().map_err(|e| bad(&e))?,
                "--size" => o.size = v.parse().map_err(|e| bad(&e))?,
                "--wait-ms" => o.wait_ms = v.parse().map_err(|e| bad(&e))?,
                "--bytes" => o.bytes = v.parse().map_err(|e| bad(&e))?,
                "--seed" => o.seed = v.parse().map_err(|e| bad(&e))?,
                "--timeout" => o.timeout = v.parse().map_err(|e| bad(&e))?,
                "--iface" => o.iface = Some(v.clone()),
                "--frame" => o.frame = parse_hex(v)?,
                "--src-count" => o.src_count = v.parse().map_err(|e| bad(&e))?,
                _ => return Err(format!("unknown option {k}")),
            }
        }
        if !(o.timeout > 0.0 && o.timeout < 3600.0) {
            return Err("--timeout must be between 0 and 3600 seconds".into());
        }
        if o.size < 16 || o.size > 1400 {
            return Err("--size must be 16..=1400".into());
        }
        Ok(o)
    }
    fn bind(&self) -> Result<SocketAddr, String> {
        self.bind
            .ok_or_else(|| "--bind IP:PORT is required".to_string())
    }
    fn to(&self) -> Result<SocketAddr, String> {
        self.to
            .ok_or_else(|| "--to IP:PORT is required".to_string())
    }
}

fn ready() -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready")
        .and_then(|_| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn print_line(s: &str) -> Result<(), String> {
    let mut out = io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

fn udp_echo(o: &Opts) -> Result<(), String> {
    let addr = o.bind()?;
    let sock = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    ready()?;
    // Stop a little before the hard timeout so the count gets printed.
    let end = Instant::now() + Duration::from_secs_f64((o.timeout - 0.3).max(0.1));
    let mut buf = [0u8; 2048];
    let mut echoed = 0u64;
    while Instant::now() < end {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if sock.send_to(&buf[..n], from).is_ok() {
                    echoed += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    print_line(&format!("{{\"echoed\":{echoed}}}"))
}

const MAGIC: &[u8; 8] = b"xswprobe";

fn fill_probe(buf: &mut [u8], seq: u64) {
    buf[..8].copy_from_slice(MAGIC);
    buf[8..16].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in buf[16..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_mul(31).wrapping_add(i as u8);
    }
}

fn udp_probe(o: &Opts) -> Result<(), String> {
    let to = o.to()?;
    let local: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|e| format!("{e}"))?;
    let sock = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
    sock.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let count = o.count as usize;
    let mut got = vec![false; count];
    let mut received = 0u64;
    let mut corrupt = 0u64;
    let mut sent = 0u64;
    let mut out = vec![0u8; o.size];
    let mut expect = vec![0u8; o.size];
    let mut inb = [0u8; 2048];
    let interval = Duration::from_millis(o.interval_ms);
    let start = Instant::now();
    // Takes every echo waiting on the socket. A receive error (would block,
    // or ECONNREFUSED from an ICMP port unreachable) ends this round only.
    let mut recv_all = |got: &mut Vec<bool>, received: &mut u64, corrupt: &mut u64| {
        while let Ok(n) = sock.recv(&mut inb) {
            if n != o.size || &inb[..8] != MAGIC {
                *corrupt += 1;
                continue;
            }
            let mut s = [0u8; 8];
            s.copy_from_slice(&inb[8..16]);
            let seq = u64::from_be_bytes(s);
            fill_probe(&mut expect, seq);
            if (seq as usize) < got.len() && inb[..n] == expect[..] {
                if !got[seq as usize] {
                    got[seq as usize] = true;
                    *received += 1;
                }
            } else {
                *corrupt += 1;
            }
        }
    };
    for seq in 0..o.count {
        let due = start + interval * seq as u32;
        while Instant::now() < due {
            recv_all(&mut got, &mut received, &mut corrupt);
            std::thread::sleep(Duration::from_micros(500));
        }
        fill_probe(&mut out, seq);
        if sock.send(&out).is_ok() {
            sent += 1;
        }
        recv_all(&mut got, &mut received, &mut corrupt);
    }
    let end = Instant::now() + Duration::from_millis(o.wait_ms);
    while Instant::now() < end && received < o.count {
        recv_all(&mut got, &mut received, &mut corrupt);
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut max_run = 0u64;
    let mut run = 0u64;
    for g in &got {
        if *g {
            run = 0;
        } else {
            run += 1;
            max_run = max_run.max(run);
        }
    }
    print_line(&format!(
        "{{\"sent\":{sent},\"received\":{received},\"lost\":{},\"corrupt\":{corrupt},\"max_consecutive_lost\":{max_run}}}",
        o.count - received
    ))
}

/// FNV-1a, 64 bit.
struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn tcp_sink(o: &Opts) -> Result<(), String> {
    let addr = o.bind()?;
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    ready()?;
    let (mut conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let mut h = Fnv::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e} after {total} bytes")),
        }
    }
    let _ = conn.shutdown(Shutdown::Both);
    print_line(&format!("{{\"bytes\":{total},\"fnv64\":\"{:016x}\"}}", h.0))
}

fn tcp_send(o: &Opts) -> Result<(), String> {
    let to = o.to()?;
    let mut conn =
        TcpStream::connect_timeout(&to, Duration::from_secs_f64((o.timeout / 2.0).max(0.5)))
            .map_err(|e| format!("connect {to}: {e}"))?;
    let mut h = Fnv::new();
    let mut x = o.seed | 1;
    let mut left = o.bytes;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = x.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        conn.write_all(&buf[..n])
            .map_err(|e| format!("write: {e} after {} bytes", o.bytes - left))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    conn.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait until the sink has read everything and closed its side.
    let mut rest = Vec::new();
    let _ = io::BufReader::new(&conn).read_until(0, &mut rest);
    print_line(&format!(
        "{{\"bytes\":{},\"fnv64\":\"{:016x}\"}}",
        o.bytes, h.0
    ))
}

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b":- ".contains(b)).collect();
    if !digits.len().is_multiple_of(2) {
        return Err(format!("--frame {text:?}: odd number of hex digits"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|e| format!("--frame {text:?}: {e}"))
        })
        .collect()
}

/// Sends `--frame` (hex, the whole Ethernet frame) `--count` times out of
/// `--iface` through an AF_PACKET socket: frames no IP stack would build,
/// such as ones with a multicast source MAC.
fn raw_send(o: &Opts) -> Result<(), String> {
    let iface = o.iface.as_deref().ok_or("raw-send needs --iface")?;
    if o.frame.len() < 14 {
        return Err("raw-send needs --frame with at least 14 bytes".into());
    }
    let name = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no interface {iface}"));
    }
    // SAFETY: socket() takes no pointers; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!(
            "AF_PACKET socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd is a fresh descriptor nothing else owns; OwnedFd closes it.
    let _owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&o.frame[..6]);
    let mut frame = o.frame.clone();
    let base = u32::from_be_bytes([0, frame[9], frame[10], frame[11]]);
    for i in 0..o.count {
        if o.src_count > 1 {
            let low = base.wrapping_add((i % o.src_count) as u32).to_be_bytes();
            frame[9..12].copy_from_slice(&low[1..]);
        }
        // SAFETY: the buffer and address are live for the call with the
        // lengths given.
        let rc = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &addr as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(format!("sendto: {}", std::io::Error::last_os_error()));
        }
        std::thread::sleep(Duration::from_millis(o.interval_ms));
    }
    println!("{{\"sent\":{}}}", o.count);
    Ok(())
}

/// The ids of the programs on IF's tcx ingress hook, from BPF_PROG_QUERY.
fn tcx_query(opts: &Opts) -> Result<(), String> {
    const BPF_PROG_QUERY: libc::c_long = 16;
    const BPF_TCX_INGRESS: u32 = 46;
    let iface = opts.iface.as_deref().ok_or("--iface is required")?;
    let name = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
    // SAFETY: name is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!(
            "no interface {iface}: {}",
            io::Error::last_os_error()
        ));
    }
    let mut ids = [0u32; 64];
    // union bpf_attr, query part: target_ifindex, attach_type, query_flags,
    // attach_flags, prog_ids (u64 pointer), prog_cnt, then fields left zero.
    let mut attr = [0u8; 64];
    attr[0..4].copy_from_slice(&ifindex.to_ne_bytes());
    attr[4..8].copy_from_slice(&BPF_TCX_INGRESS.to_ne_bytes());
    attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
    attr[24..28].copy_from_slice(&(ids.len() as u32).to_ne_bytes());
    // SAFETY: attr is a bpf_attr-sized buffer; the kernel writes at most
    // prog_cnt ids into `ids`, which outlives the call, and prog_cnt back.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(format!(
            "BPF_PROG_QUERY on {iface}: {}",
            io::Error::last_os_error()
        ));
    }
    let count = u32::from_ne_bytes([attr[24], attr[25], attr[26], attr[27]]) as usize;
    let found: Vec<u32> = ids.iter().take(count.min(ids.len())).copied().collect();
    println!("{}", serde_json::json!({ "tcx_ingress": found }));
    Ok(())
}
