//! Loads xsw's XDP program (ebpf/xsw_steer.c) onto one interface and keeps
//! its maps: the XSKMAP that steers each rx queue into its AF_XDP socket,
//! and the host addresses whose frames stay with the kernel.
//!
//! The program is attached through a bpf_link owned by this value: dropping
//! it, or the death of xswd for any reason (SIGKILL included), detaches it.

pub mod fast;
#[cfg(test)]
mod fast_test_run;

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpFlags};
use aya::Ebpf;

use crate::packet::MacAddr;

const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

static STEER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsw_steer.o"));

/// How the program is hooked into the driver.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver, before an skb exists (fast).
    Native,
    /// After the skb is built; works on any device, costs more per frame.
    Generic,
}

/// What the operator asked for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeRequest {
    /// Native, and generic where the driver has no native XDP.
    #[default]
    Auto,
    Native,
    Generic,
}

impl std::str::FromStr for XdpModeRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            other => Err(format!(
                "unknown XDP mode {other:?}: use auto, native or generic"
            )),
        }
    }
}

const LOAD_HINT: &str = "xswd needs CAP_BPF, CAP_NET_ADMIN and a kernel with BPF enabled";

// Messages that quote their source keep it as `#[source]` too: `error::chain`
// does not print a source twice.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The object lacks a program it should hold (a build problem).
    #[error("cannot load the XDP program: {0} ({LOAD_HINT})")]
    Load(String),
    #[error("cannot load the XDP program: {} ({LOAD_HINT})", crate::error::chain(.source))]
    Object {
        #[source]
        source: aya::EbpfError,
    },
    #[error("cannot load the XDP program: {} ({LOAD_HINT})", crate::error::chain(.source))]
    Program {
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("cannot load the XDP program: cannot count CPUs ({path}): {source} ({LOAD_HINT})")]
    CountCpus {
        path: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{iface} already carries another XDP program (id {prog_id}); xsw will not replace it. \
         Remove it (`ip link set dev {iface} xdp off`) or add the port with --force"
    )]
    Occupied { iface: String, prog_id: u32 },
    #[error(
        "cannot remove the XDP program already on {iface}: {source} (a program attached \
         through a bpf_link can only be removed by the process that owns it)"
    )]
    ForceFailed {
        iface: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot attach XDP to {iface} in {mode} mode: {}", crate::error::chain(.source))]
    Attach {
        iface: String,
        mode: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// The object's map is absent or of another kind (a build problem).
    #[error("XDP map {0}: {1}")]
    Map(&'static str, &'static str),
    #[error("XDP map {map}: {source}")]
    MapAccess {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("XDP map {map}: {source}")]
    MapDescriptor {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("XDP map {map}: mmap: {source}")]
    MapMemory {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// How a failed access to map `map` is reported.
pub(crate) fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |source| XdpError::MapAccess { map, source }
}

pub struct SteeringProgram {
    // Holds the program, its maps and the bpf_link; dropping it detaches.
    ebpf: Ebpf,
    mode: XdpMode,
}

fn attached_program_id(ifindex: u32) -> Option<u32> {
    let mut prog_id: u32 = 0;
    // SAFETY: prog_id is a valid, writable u32 for the duration of the call;
    // libbpf writes at most one u32 there.
    let rc = unsafe { libxdp_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut prog_id) };
    (rc == 0 && prog_id != 0).then_some(prog_id)
}

/// Refuses an interface that already carries someone else's XDP program
/// (it would see the port's frames before xsw), or with `force` removes it.
pub(crate) fn clear_foreign_program(
    iface: &str,
    ifindex: u32,
    force: bool,
) -> Result<(), XdpError> {
    if let Some(prog_id) = attached_program_id(ifindex) {
        if !force {
            return Err(XdpError::Occupied {
                iface: iface.to_string(),
                prog_id,
            });
        }
        tracing::warn!(
            iface,
            prog_id,
            "removing the XDP program already attached (--force)"
        );
        // The foreign program may sit in driver or generic mode; a detach
        // names one mode (0 = the driver's default), so try each.
        let mut rc = 0;
        for mode_flags in [0u32, XDP_FLAGS_SKB_MODE, XDP_FLAGS_HW_MODE] {
            // SAFETY: integer arguments only; libbpf allows a null opts.
            rc =
                unsafe { libxdp_sys::bpf_xdp_detach(ifindex as i32, mode_flags, std::ptr::null()) };
            if attached_program_id(ifindex).is_none() {
                break;
            }
        }
        if attached_program_id(ifindex).is_some() {
            return Err(XdpError::ForceFailed {
                iface: iface.to_string(),
                source: std::io::Error::from_raw_os_error(-rc),
            });
        }
    }
    Ok(())
}

impl SteeringProgram {
    pub fn attach(
        iface: &str,
        ifindex: u32,
        request: XdpModeRequest,
        force: bool,
    ) -> Result<Self, XdpError> {
        clear_foreign_program(iface, ifindex, force)?;

        let mut ebpf = Ebpf::load(STEER_OBJECT).map_err(|source| XdpError::Object { source })?;
        let program: &mut Xdp = ebpf
            .program_mut("xsw_steer")
            .ok_or_else(|| XdpError::Load("program xsw_steer missing from the object".into()))?
            .try_into()
            .map_err(|source| XdpError::Program { source })?;
        program
            .load()
            .map_err(|source| XdpError::Program { source })?;

        let attempts: &[(XdpMode, XdpFlags, &'static str)] = match request {
            XdpModeRequest::Auto => &[
                (XdpMode::Native, XdpFlags::DRV_MODE, "native"),
                (XdpMode::Generic, XdpFlags::SKB_MODE, "generic"),
            ],
            XdpModeRequest::Native => &[(XdpMode::Native, XdpFlags::DRV_MODE, "native")],
            XdpModeRequest::Generic => &[(XdpMode::Generic, XdpFlags::SKB_MODE, "generic")],
        };
        let mut last_error = None;
        for &(mode, flags, mode_name) in attempts {
            match program.attach_to_if_index(ifindex, flags) {
                Ok(_link) => return Ok(SteeringProgram { ebpf, mode }),
                Err(e) => {
                    tracing::debug!(iface, mode = mode_name, error = %crate::error::chain(&e), "XDP attach failed");
                    last_error = Some(XdpError::Attach {
                        iface: iface.to_string(),
                        mode: mode_name,
                        source: e,
                    });
                }
            }
        }
        Err(last_error.unwrap_or_else(|| XdpError::Load("no XDP mode to try".into())))
    }

    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    fn xsk_map(&mut self) -> Result<XskMap<&mut MapData>, XdpError> {
        let map = self
            .ebpf
            .map_mut("xsks")
            .ok_or(XdpError::Map("xsks", "missing"))?;
        XskMap::try_from(map).map_err(map_error("xsks"))
    }

    /// Steers `queue`'s frames into the socket; until this is done they reach
    /// the kernel stack as if xsw were not there.
    pub fn set_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), XdpError> {
        self.xsk_map()?
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(map_error("xsks"))
    }

    /// Frames longer than `longest` bytes (what a worker's UMEM frame
    /// holds) are dropped by the program and counted (see [`Self::too_big`]).
    pub fn set_longest_frame(&mut self, longest: u32) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("too_big_config")
            .ok_or(XdpError::Map("too_big_config", "missing"))?;
        let mut array: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(map_error("too_big_config"))?;
        array
            .set(0, longest, 0)
            .map_err(map_error("too_big_config"))
    }

    /// Frames dropped for being longer than the workers receive, summed
    /// over the CPUs; 0 if the map cannot be read.
    pub fn too_big(&self) -> u64 {
        let Some(map) = self.ebpf.map("too_big") else {
            return 0;
        };
        let Ok(array) = PerCpuArray::<_, u64>::try_from(map) else {
            return 0;
        };
        array
            .get(&0, 0)
            .map(|per_cpu| per_cpu.iter().sum())
            .unwrap_or(0)
    }

    /// Sends `mac`'s frames to the kernel stack instead of the switch.
    pub fn add_host_mac(&mut self, mac: MacAddr) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("host_macs")
            .ok_or(XdpError::Map("host_macs", "missing"))?;
        let mut map: BpfHashMap<_, u64, u8> =
            BpfHashMap::try_from(map).map_err(map_error("host_macs"))?;
        let mut key = [0u8; 8];
        key[..6].copy_from_slice(&mac.0);
        map.insert(u64::from_ne_bytes(key), 1, 0)
            .map_err(map_error("host_macs"))
    }

    /// Sends ARP requests for `ip` to the kernel stack.
    pub fn add_host_ipv4(&mut self, ip: Ipv4Addr) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("host_ipv4")
            .ok_or(XdpError::Map("host_ipv4", "missing"))?;
        let mut map: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(map_error("host_ipv4"))?;
        map.insert(u32::from_ne_bytes(ip.octets()), 1, 0)
            .map_err(map_error("host_ipv4"))
    }
}
