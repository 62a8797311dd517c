//! The fast path's kernel side (ebpf/xsw_fast.c): one object per data plane.
//! Its tc program sits at the ingress of every tc-hooked port and switches
//! frames that have a current flow entry; the rest it sends, tagged with the
//! ingress port id, to the internal slow-path device, whose XDP program hands
//! them to the workers' AF_XDP sockets.
//!
//! [`FlowTable`] is the handle workers and the flow keeper share: raw map
//! operations on the flow map's descriptor (no lock, no allocation per call)
//! and the generation counter, mapped into memory so that one atomic add
//! invalidates every entry.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, XskMap};
use aya::programs::tc::{SchedClassifierLink, TcAttachOptions};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpFlags};
use aya::{Ebpf, EbpfLoader};

use super::{map_error, XdpError};
use crate::packet::MacAddr;

static FAST_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsw_fast.o"));

/// `port_conf.flags`: install and use flow entries for frames entering here.
pub const PORT_FAST: u8 = 1;
/// `port_conf.flags`: the decision reads L3/L4 fields, so the key holds them.
pub const PORT_L3: u8 = 2;
/// `port_conf.flags`: the port has host MACs or host IPv4 addresses, so the
/// program looks a frame up in them (set by [`FastPath`] itself).
pub const PORT_HOST: u8 = 4;
/// `flow_key.vlan` of an untagged frame.
pub const UNTAGGED: u16 = 0xffff;
/// The largest port id the slow path's tag can carry.
pub const MAX_PORT_ID: u16 = 4094;

/// How wide a flow key is: only as wide as the decision needs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum KeyWidth {
    /// Ingress port, VLAN, MACs: for tenants without ACLs and ports without IP guards.
    L2 = 1,
    /// Those plus the IP 5-tuple, TCP flags and ICMP type.
    L3 = 2,
}

/// `struct port_conf`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default)]
pub struct PortConf {
    pub port: u16,
    pub flags: u8,
    pub pad: u8,
}

/// `struct flow_key`: every field the decision may read, for the key's width.
/// An L2-width key lives in the L2 table, keyed by its first
/// [`L2_KEY_LEN`] bytes (`struct flow_key_l2`: port, VLAN, MACs); the rest is
/// zero apart from `width`. [`FlowTable`] picks the table by `width`.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub port: u16,
    /// The whole TCI, or [`UNTAGGED`].
    pub vlan: u16,
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub width: u8,
    pub proto: u8,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    /// Network byte order, as the program reads it off the frame.
    pub ethertype: u16,
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub pad: u16,
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub pad2: [u8; 4],
}

/// `flow_entry.expires_ns` of an entry that never expires (a static
/// destination, a drop): the program reads no clock for it.
pub const NEVER_EXPIRES: u64 = u64::MAX;

/// The size of `struct flow_key_l2`, the prefix of [`FlowKey`] the L2 table
/// is keyed by.
pub const L2_KEY_LEN: usize = 16;

/// `flow_entry.action`
pub const FLOW_REDIRECT: u8 = 1;
/// `flow_entry.action`: straight into a veth's peer's receive
/// (bpf_redirect_peer); only for a peer in another namespace.
pub const FLOW_REDIRECT_PEER: u8 = 2;
/// Dropped in the kernel, as the pipeline would; `vid` holds the
/// `DropReason` index to count it under.
pub const FLOW_DROP: u8 = 3;

/// `flow_entry.tag_op`
pub const TAG_KEEP: u8 = 0;
pub const TAG_INSERT: u8 = 1;
pub const TAG_REMOVE: u8 = 2;
pub const TAG_REWRITE: u8 = 3;

/// `struct flow_entry`, one copy per CPU.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub packets: u64,
    pub bytes: u64,
    pub generation: u64,
    /// CLOCK_MONOTONIC deadline (the destination MAC's age limit).
    pub expires_ns: u64,
    pub egress_ifindex: u32,
    pub egress_port: u16,
    pub action: u8,
    pub tag_op: u8,
    pub vid: u16,
    /// The tenant the frame was switched in: for refreshing its MAC.
    pub tenant_id: u16,
    /// The ACL entries that decided, ingress and egress, for the hit counters
    /// (encoded by `dataplane::fastpath`).
    pub acl: [u16; 2],
}

#[repr(C)]
#[derive(Copy, Clone)]
struct HostMacKey {
    ifindex: u32,
    mac: [u8; 6],
    pad: u16,
}

#[repr(C)]
#[derive(Copy, Clone)]
struct HostIpv4Key {
    ifindex: u32,
    addr: u32,
}

// SAFETY: plain repr(C) data without padding holes the kernel could leak
// (every gap is an explicit field, zeroed by Default).
unsafe impl aya::Pod for PortConf {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowEntry {}
// SAFETY: as above.
unsafe impl aya::Pod for HostMacKey {}
// SAFETY: as above.
unsafe impl aya::Pod for HostIpv4Key {}

/// The object loaded once per data plane, with its programs and maps.
pub struct FastPath {
    ebpf: Ebpf,
    table: FlowTable,
    /// Each port's flags as the control plane set them, and whether it has
    /// host addresses ([`PORT_HOST`] is added when it does).
    ports: std::collections::HashMap<u32, (PortConf, bool)>,
}

/// A tc program attached to a port; dropping it detaches the program.
pub struct PortHook {
    _link: SchedClassifierLink,
}

/// The slow-path XDP program on the internal device; dropping it detaches it.
pub struct SlowPathHook {
    _link: aya::programs::xdp::XdpLink,
}

fn map_fd(ebpf: &Ebpf, name: &'static str) -> Result<OwnedFd, XdpError> {
    let map = ebpf
        .map(name)
        .ok_or(XdpError::Map(name, "missing from the object"))?;
    let data: &MapData = match map {
        Map::PerCpuHashMap(d) | Map::HashMap(d) | Map::Array(d) | Map::PerCpuArray(d) => d,
        _ => return Err(XdpError::Map(name, "unexpected map type")),
    };
    data.fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| XdpError::MapDescriptor { map: name, source })
}

impl FastPath {
    /// Loads the programs; `flow_capacity` bounds the flow table.
    pub fn load(flow_capacity: u32) -> Result<FastPath, XdpError> {
        let mut ebpf = EbpfLoader::new()
            .set_max_entries("flows", flow_capacity.max(1))
            .set_max_entries("flows_l2", flow_capacity.max(1))
            .load(FAST_OBJECT)
            .map_err(|source| XdpError::Object { source })?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut("xsw_port_ingress")
            .ok_or_else(|| XdpError::Load("program xsw_port_ingress missing".into()))?
            .try_into()
            .map_err(|source| XdpError::Program { source })?;
        tc.load().map_err(|source| XdpError::Program { source })?;
        let xdp: &mut Xdp = ebpf
            .program_mut("xsw_slow_path")
            .ok_or_else(|| XdpError::Load("program xsw_slow_path missing".into()))?
            .try_into()
            .map_err(|source| XdpError::Program { source })?;
        xdp.load().map_err(|source| XdpError::Program { source })?;
        let cpus =
            aya::util::nr_cpus().map_err(|(path, source)| XdpError::CountCpus { path, source })?;
        let table = FlowTable {
            inner: Arc::new(TableInner {
                flows: map_fd(&ebpf, "flows")?,
                flows_l2: map_fd(&ebpf, "flows_l2")?,
                generation: GenerationMap::map(map_fd(&ebpf, "gen")?)?,
                cpus,
                capacity: flow_capacity,
            }),
        };
        Ok(FastPath {
            ebpf,
            table,
            ports: std::collections::HashMap::new(),
        })
    }

    pub fn table(&self) -> FlowTable {
        self.table.clone()
    }

    /// Attaches the port program at `iface`'s ingress (tcx).
    pub fn attach_port(
        &mut self,
        iface: &str,
        ifindex: u32,
        force: bool,
    ) -> Result<PortHook, XdpError> {
        super::clear_foreign_program(iface, ifindex, force)?;
        let program: &mut SchedClassifier = program(&mut self.ebpf, "xsw_port_ingress")?;
        let attach = attach_error(iface, "tc");
        let id = program
            .attach_with_options(
                iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .map_err(attach)?;
        let link = program.take_link(id).map_err(attach)?;
        Ok(PortHook { _link: link })
    }

    /// Attaches the slow-path program to the internal device's receiving end.
    pub fn attach_slow_path(&mut self, iface: &str) -> Result<SlowPathHook, XdpError> {
        let program: &mut Xdp = program(&mut self.ebpf, "xsw_slow_path")?;
        let attach = attach_error(iface, "native");
        let id = program.attach(iface, XdpFlags::DRV_MODE).map_err(attach)?;
        let link = program.take_link(id).map_err(attach)?;
        Ok(SlowPathHook { _link: link })
    }

    fn hash_map<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<BpfHashMap<&mut MapData, K, V>, XdpError> {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(XdpError::Map(name, "missing"))?;
        BpfHashMap::try_from(map).map_err(map_error(name))
    }

    /// Makes `ifindex` a port (or changes its flags).
    pub fn set_port(&mut self, ifindex: u32, conf: PortConf) -> Result<(), XdpError> {
        let has_host = self.ports.get(&ifindex).is_some_and(|(_, host)| *host);
        self.write_port(ifindex, conf, has_host)
    }

    /// Writes `ifindex`'s entry in the `ports` map: `conf`, with
    /// [`PORT_HOST`] when the port has host addresses.
    fn write_port(&mut self, ifindex: u32, conf: PortConf, has_host: bool) -> Result<(), XdpError> {
        let mut written = conf;
        written.flags &= !PORT_HOST;
        if has_host {
            written.flags |= PORT_HOST;
        }
        self.hash_map::<u32, PortConf>("ports")?
            .insert(ifindex, written, 0)
            .map_err(map_error("ports"))?;
        self.ports.insert(ifindex, (conf, has_host));
        Ok(())
    }

    /// After a host address of `ifindex` was added: the program must look
    /// for host addresses on it from now on (if it is a port already; a
    /// later [`FastPath::set_port`] keeps the flag).
    fn mark_host(&mut self, ifindex: u32) -> Result<(), XdpError> {
        match self.ports.get(&ifindex).copied() {
            Some((conf, false)) => self.write_port(ifindex, conf, true),
            Some((_, true)) => Ok(()),
            None => {
                self.ports.insert(ifindex, (PortConf::default(), true));
                Ok(())
            }
        }
    }

    /// Forgets `ifindex` and its host addresses: its frames go up the stack.
    pub fn remove_port(&mut self, ifindex: u32) -> Result<(), XdpError> {
        self.ports.remove(&ifindex);
        let mut ports = self.hash_map::<u32, PortConf>("ports")?;
        // Absent already is fine: removal is idempotent.
        let _ = ports.remove(&ifindex);
        let mut macs = self.hash_map::<HostMacKey, u8>("host_macs")?;
        let doomed: Vec<HostMacKey> = macs
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.ifindex == ifindex)
            .collect();
        for key in doomed {
            let _ = macs.remove(&key);
        }
        let mut ips = self.hash_map::<HostIpv4Key, u8>("host_ipv4")?;
        let doomed: Vec<HostIpv4Key> = ips
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.ifindex == ifindex)
            .collect();
        for key in doomed {
            let _ = ips.remove(&key);
        }
        Ok(())
    }

    /// Sends frames to `mac` arriving on `ifindex` to the kernel stack.
    pub fn add_host_mac(&mut self, ifindex: u32, mac: MacAddr) -> Result<(), XdpError> {
        let key = HostMacKey {
            ifindex,
            mac: mac.0,
            pad: 0,
        };
        self.hash_map::<HostMacKey, u8>("host_macs")?
            .insert(key, 1, 0)
            .map_err(map_error("host_macs"))?;
        self.mark_host(ifindex)
    }

    /// Sends ARP requests for `ip` arriving on `ifindex` to the kernel stack.
    pub fn add_host_ipv4(&mut self, ifindex: u32, ip: Ipv4Addr) -> Result<(), XdpError> {
        let key = HostIpv4Key {
            ifindex,
            addr: u32::from_ne_bytes(ip.octets()),
        };
        self.hash_map::<HostIpv4Key, u8>("host_ipv4")?
            .insert(key, 1, 0)
            .map_err(map_error("host_ipv4"))?;
        self.mark_host(ifindex)
    }

    /// Where frames that miss are sent.
    pub fn set_slow_path(&mut self, ifindex: u32) -> Result<(), XdpError> {
        self.set_slow_path_entry(SLOW_PATH_IFINDEX, ifindex)
    }

    /// The longest frame (Ethernet header on, untagged) a worker's UMEM
    /// frame holds: a frame that misses and is longer is counted as
    /// `slow_path_drops.too_big` instead of vanishing at the socket.
    pub fn set_slow_path_longest(&mut self, longest: u32) -> Result<(), XdpError> {
        self.set_slow_path_entry(SLOW_PATH_LONGEST, longest)
    }

    fn set_slow_path_entry(&mut self, index: u32, value: u32) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("slow_path")
            .ok_or(XdpError::Map("slow_path", "missing"))?;
        let mut array: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(map_error("slow_path"))?;
        array.set(index, value, 0).map_err(map_error("slow_path"))
    }

    /// Steers the internal device's rx `queue` into `socket`.
    pub fn set_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("xsks")
            .ok_or(XdpError::Map("xsks", "missing"))?;
        XskMap::try_from(map)
            .map_err(map_error("xsks"))?
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(map_error("xsks"))
    }

    /// Frames that missed and that the slow path could not take, per port id
    /// (index), summed over CPUs.
    pub fn slow_path_drops(&self) -> Vec<SlowPathDrops> {
        let mut drops = vec![SlowPathDrops::default(); usize::from(MAX_PORT_ID) + 1];
        let Some(map) = self.ebpf.map("slow_path_drops") else {
            return drops;
        };
        let Ok(array) = aya::maps::PerCpuArray::<&MapData, u64>::try_from(map) else {
            return drops;
        };
        for (index, values) in array.iter().enumerate() {
            let Ok(values) = values else { continue };
            let count: u64 = values.iter().sum();
            if let Some(port) = drops.get_mut(index / 2) {
                if index % 2 == SLOW_PATH_TOO_BIG {
                    port.too_big += count;
                } else {
                    port.unavailable += count;
                }
            }
        }
        drops
    }
}

/// For the program tests (`xdp::fast_test_run`), which run the loaded
/// programs on crafted frames with BPF_PROG_TEST_RUN. Test builds only.
#[cfg(test)]
impl FastPath {
    /// The descriptor of the loaded program `name`.
    pub(crate) fn program_fd(&self, name: &str) -> std::os::fd::BorrowedFd<'_> {
        self.ebpf
            .program(name)
            .unwrap_or_else(|| panic!("program {name} is missing from the object"))
            .fd()
            .unwrap_or_else(|e| panic!("program {name} is not loaded: {e}"))
            .as_fd()
    }
}

/// Frames entering one port that the fast path missed and could not pass to
/// the workers.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SlowPathDrops {
    /// No internal device yet, or the port-id tag could not be pushed.
    pub unavailable: u64,
    /// Frames (not GSO packets) longer than the slow-path device's MTU.
    pub too_big: u64,
}

/// Must equal SLOW_PATH_TOO_BIG in xsw_fast.h.
const SLOW_PATH_TOO_BIG: usize = 1;
/// The slow_path map's keys: SLOW_PATH_IFINDEX and SLOW_PATH_LONGEST in xsw_fast.h.
const SLOW_PATH_IFINDEX: u32 = 0;
const SLOW_PATH_LONGEST: u32 = 1;

/// Program `name` of the object, as the kind `T` it must be.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, XdpError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| XdpError::Load(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|source| XdpError::Program { source })
}

/// How an attach failure of a program at `iface` (in `mode`) is reported.
fn attach_error<'a>(
    iface: &'a str,
    mode: &'static str,
) -> impl Fn(aya::programs::ProgramError) -> XdpError + Copy + 'a {
    move |source| XdpError::Attach {
        iface: iface.to_string(),
        mode,
        source,
    }
}

/// The generation counter, mapped into this process: entries are valid while
/// they carry its current value.
struct GenerationMap {
    base: *mut libc::c_void,
    len: usize,
    _fd: OwnedFd,
}

// SAFETY: the mapping is only accessed through an AtomicU64 (see `counter`),
// and stays mapped until drop.
unsafe impl Send for GenerationMap {}
// SAFETY: as above.
unsafe impl Sync for GenerationMap {}

impl GenerationMap {
    fn map(fd: OwnedFd) -> Result<GenerationMap, XdpError> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        // SAFETY: a fresh shared mapping of a BPF_F_MMAPABLE array map's fd;
        // the kernel checks the length and the fd.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(XdpError::MapMemory {
                map: "gen",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(GenerationMap {
            base,
            len: page,
            _fd: fd,
        })
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: element 0 of the array sits at the start of the mapping,
        // 8-byte aligned (page aligned), and lives as long as `self`; the
        // kernel side reads it with plain loads, which an atomic store
        // never tears.
        unsafe { &*(self.base as *const AtomicU64) }
    }
}

impl Drop for GenerationMap {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

struct TableInner {
    /// The L3 table (`flows`, 64-byte keys).
    flows: OwnedFd,
    /// The L2 table (`flows_l2`, keyed by a key's first [`L2_KEY_LEN`] bytes).
    flows_l2: OwnedFd,
    generation: GenerationMap,
    cpus: usize,
    capacity: u32,
}

/// The flow maps (one per key width, each of `capacity` entries) and the
/// generation, shared by the workers and the flow keeper. Every operation
/// takes a whole [`FlowKey`] and goes to the table of its width.
#[derive(Clone)]
pub struct FlowTable {
    inner: Arc<TableInner>,
}

/// Why an insert did not happen.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum InsertError {
    /// An entry for the key exists (stale, or installed by another worker).
    Exists,
    /// The table is at its size limit.
    Full,
    /// Any other errno.
    Other(i32),
}

impl FlowTable {
    /// How many per-CPU copies a value has.
    pub fn cpus(&self) -> usize {
        self.inner.cpus
    }

    /// The size limit of each table (L2 and L3).
    pub fn capacity(&self) -> u32 {
        self.inner.capacity
    }

    /// The map `key` belongs in. Either map reads as many bytes of the key
    /// as its own key size: the L2 map the first [`L2_KEY_LEN`].
    fn map_for(&self, key: &FlowKey) -> i32 {
        if key.width == KeyWidth::L2 as u8 {
            self.inner.flows_l2.as_raw_fd()
        } else {
            self.inner.flows.as_raw_fd()
        }
    }

    /// The current generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.inner.generation.counter().load(Ordering::Acquire)
    }

    /// Makes every entry stale at once: the program checks the generation on
    /// every hit, so from the moment this returns no entry switches a frame.
    pub fn invalidate(&self) {
        self.inner
            .generation
            .counter()
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Inserts `entry` for every CPU, if `key` has none. `scratch` must hold
    /// [`FlowTable::cpus`] entries (kept by the caller: no allocation here).
    pub fn insert(
        &self,
        key: &FlowKey,
        entry: &FlowEntry,
        scratch: &mut [FlowEntry],
    ) -> Result<(), InsertError> {
        if scratch.len() < self.inner.cpus {
            return Err(InsertError::Other(libc::EINVAL));
        }
        for slot in scratch.iter_mut() {
            *slot = *entry;
        }
        // SAFETY: key is a repr(C) value at least the map's key size (64 or
        // its 16-byte prefix); scratch holds cpus x value size (48, a
        // multiple of 8, so no per-CPU padding).
        let rc = unsafe {
            libxdp_sys::bpf_map_update_elem(
                self.map_for(key),
                (key as *const FlowKey).cast(),
                scratch.as_ptr().cast(),
                u64::from(libxdp_sys::BPF_NOEXIST),
            )
        };
        match rc {
            0 => Ok(()),
            rc if -rc == libc::EEXIST => Err(InsertError::Exists),
            rc if -rc == libc::E2BIG || -rc == libc::ENOMEM => Err(InsertError::Full),
            rc => Err(InsertError::Other(-rc)),
        }
    }

    /// Removes `key`'s entry and returns it with the counters summed over CPUs.
    pub fn take(&self, key: &FlowKey, scratch: &mut [FlowEntry]) -> Option<FlowEntry> {
        if scratch.len() < self.inner.cpus {
            return None;
        }
        // SAFETY: as in `insert`; the kernel writes cpus values into scratch.
        let rc = unsafe {
            libxdp_sys::bpf_map_lookup_and_delete_elem(
                self.map_for(key),
                (key as *const FlowKey).cast(),
                scratch.as_mut_ptr().cast(),
            )
        };
        (rc == 0).then(|| summed(&scratch[..self.inner.cpus]))
    }

    /// Every entry of both tables, counters summed over CPUs. For the keeper
    /// and `flows` requests, not the hot path (it allocates).
    pub fn read_all(&self) -> Vec<(FlowKey, FlowEntry)> {
        let mut out = Vec::new();
        self.read_map(self.inner.flows_l2.as_raw_fd(), KeyWidth::L2, &mut out);
        self.read_map(self.inner.flows.as_raw_fd(), KeyWidth::L3, &mut out);
        out
    }

    /// Appends every entry of the map `fd` (of keys of `width`) to `out`.
    fn read_map(&self, fd: i32, width: KeyWidth, out: &mut Vec<(FlowKey, FlowEntry)>) {
        let mut values = vec![FlowEntry::default(); self.inner.cpus];
        let mut key = FlowKey::default();
        let mut next = FlowKey::default();
        let mut first = true;
        loop {
            let previous: *const libc::c_void = if first {
                std::ptr::null()
            } else {
                (&key as *const FlowKey).cast()
            };
            // SAFETY: previous is null or a key of the map's size; next is
            // writable storage of that size.
            let rc = unsafe {
                libxdp_sys::bpf_map_get_next_key(fd, previous, (&mut next as *mut FlowKey).cast())
            };
            if rc != 0 {
                break;
            }
            first = false;
            key = next;
            // The L2 map wrote only the first L2_KEY_LEN bytes (the rest of
            // `next` is zero, as in every L2 key); its keys carry no width.
            if width == KeyWidth::L2 {
                key.width = KeyWidth::L2 as u8;
            }
            // SAFETY: values holds cpus entries, as the kernel writes.
            let rc = unsafe {
                libxdp_sys::bpf_map_lookup_elem(
                    fd,
                    (&key as *const FlowKey).cast(),
                    values.as_mut_ptr().cast(),
                )
            };
            if rc == 0 {
                out.push((key, summed(&values)));
            }
        }
    }

    /// Removes `key`'s entry if it is there.
    pub fn remove(&self, key: &FlowKey) -> bool {
        // SAFETY: key is at least the map's key size.
        unsafe {
            libxdp_sys::bpf_map_delete_elem(self.map_for(key), (key as *const FlowKey).cast()) == 0
        }
    }
}

/// One entry with its per-CPU counters added up (the other fields are the
/// same in every copy).
fn summed(copies: &[FlowEntry]) -> FlowEntry {
    let mut total = copies.first().copied().unwrap_or_default();
    total.packets = copies.iter().map(|c| c.packets).sum();
    total.bytes = copies.iter().map(|c| c.bytes).sum();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_c_structs() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 64);
        // struct flow_key_l2 is FlowKey's prefix up to `width`.
        assert_eq!(std::mem::offset_of!(FlowKey, width), L2_KEY_LEN);
        assert_eq!(std::mem::size_of::<FlowEntry>(), 48);
        assert_eq!(std::mem::size_of::<PortConf>(), 4);
        assert_eq!(std::mem::size_of::<HostMacKey>(), 12);
    }

    /// The value of `#define NAME VALUE` in xsw_fast.h.
    fn defined(name: &str) -> u64 {
        let header = include_str!("../../../ebpf/xsw_fast.h");
        let value = header
            .lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(name)).then(|| words.next()).flatten()
            })
            .unwrap_or_else(|| panic!("{name} is not defined in xsw_fast.h"));
        let value = value.trim_end_matches("ULL");
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .unwrap_or_else(|e| panic!("{name} = {value}: {e}"))
    }

    #[test]
    fn constants_match_the_c_header() {
        for (name, value) in [
            ("PORT_FAST", u64::from(PORT_FAST)),
            ("PORT_L3", u64::from(PORT_L3)),
            ("PORT_HOST", u64::from(PORT_HOST)),
            ("NEVER_EXPIRES", NEVER_EXPIRES),
            ("UNTAGGED", u64::from(UNTAGGED)),
            ("MAX_PORT_ID", u64::from(MAX_PORT_ID)),
            ("FLOW_REDIRECT", u64::from(FLOW_REDIRECT)),
            ("FLOW_REDIRECT_PEER", u64::from(FLOW_REDIRECT_PEER)),
            ("FLOW_DROP", u64::from(FLOW_DROP)),
            ("TAG_KEEP", u64::from(TAG_KEEP)),
            ("TAG_INSERT", u64::from(TAG_INSERT)),
            ("TAG_REMOVE", u64::from(TAG_REMOVE)),
            ("TAG_REWRITE", u64::from(TAG_REWRITE)),
            ("WIDTH_L2", KeyWidth::L2 as u64),
            ("WIDTH_L3", KeyWidth::L3 as u64),
            ("SLOW_PATH_TOO_BIG", SLOW_PATH_TOO_BIG as u64),
            ("SLOW_PATH_MTU", u64::from(crate::port::slow_path::MTU)),
            ("SLOW_PATH_IFINDEX", u64::from(SLOW_PATH_IFINDEX)),
            ("SLOW_PATH_LONGEST", u64::from(SLOW_PATH_LONGEST)),
        ] {
            assert_eq!(defined(name), value, "{name}");
        }
    }

    /// Needs root, as every test run does (scripts/test.sh).
    #[test]
    fn the_verifier_accepts_both_programs_and_the_generation_is_shared() {
        let fast = match FastPath::load(1024) {
            Ok(fast) => fast,
            Err(e) => panic!("{}", crate::error::chain(&e)),
        };
        let table = fast.table();
        let before = table.generation();
        table.clone().invalidate();
        assert_eq!(table.generation(), before + 1);
    }
}
