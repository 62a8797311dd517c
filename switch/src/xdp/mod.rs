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

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("cannot load the XDP program: {0} (xswd needs CAP_BPF, CAP_NET_ADMIN and a kernel with BPF enabled)")]
    Load(String),
    #[error(
        "{iface} already carries another XDP program (id {prog_id}); xsw will not replace it. \
         Remove it (`ip link set dev {iface} xdp off`) or add the port with --force"
    )]
    Occupied { iface: String, prog_id: u32 },
    #[error("cannot remove the XDP program already on {iface}: {reason}")]
    ForceFailed { iface: String, reason: String },
    #[error("cannot attach XDP to {iface} in {mode} mode: {reason}")]
    Attach {
        iface: String,
        mode: &'static str,
        reason: String,
    },
    #[error("XDP map {0}: {1}")]
    Map(&'static str, String),
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
                reason: format!(
                    "{} (a program attached through a bpf_link can only be removed by the process that owns it)",
                    std::io::Error::from_raw_os_error(-rc)
                ),
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

        let mut ebpf = Ebpf::load(STEER_OBJECT).map_err(|e| XdpError::Load(e.to_string()))?;
        let program: &mut Xdp = ebpf
            .program_mut("xsw_steer")
            .ok_or_else(|| XdpError::Load("program xsw_steer missing from the object".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
        program
            .load()
            .map_err(|e| XdpError::Load(crate::error::chain(&e)))?;

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
                        reason: crate::error::chain(&e),
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
            .ok_or(XdpError::Map("xsks", "missing".into()))?;
        XskMap::try_from(map).map_err(|e| XdpError::Map("xsks", e.to_string()))
    }

    /// Steers `queue`'s frames into the socket; until this is done they reach
    /// the kernel stack as if xsw were not there.
    pub fn set_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), XdpError> {
        self.xsk_map()?
            .set(queue, socket.as_raw_fd(), 0)
            .map_err(|e| XdpError::Map("xsks", e.to_string()))
    }

    /// Frames longer than `longest` bytes (what a worker's UMEM frame
    /// holds) are dropped by the program and counted (see [`Self::too_big`]).
    pub fn set_longest_frame(&mut self, longest: u32) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("too_big_config")
            .ok_or(XdpError::Map("too_big_config", "missing".into()))?;
        let mut array: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(|e| XdpError::Map("too_big_config", e.to_string()))?;
        array
            .set(0, longest, 0)
            .map_err(|e| XdpError::Map("too_big_config", e.to_string()))
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
            .ok_or(XdpError::Map("host_macs", "missing".into()))?;
        let mut map: BpfHashMap<_, u64, u8> =
            BpfHashMap::try_from(map).map_err(|e| XdpError::Map("host_macs", e.to_string()))?;
        let mut key = [0u8; 8];
        key[..6].copy_from_slice(&mac.0);
        map.insert(u64::from_ne_bytes(key), 1, 0)
            .map_err(|e| XdpError::Map("host_macs", e.to_string()))
    }

    /// Sends ARP requests for `ip` to the kernel stack.
    pub fn add_host_ipv4(&mut self, ip: Ipv4Addr) -> Result<(), XdpError> {
        let map = self
            .ebpf
            .map_mut("host_ipv4")
            .ok_or(XdpError::Map("host_ipv4", "missing".into()))?;
        let mut map: BpfHashMap<_, u32, u8> =
            BpfHashMap::try_from(map).map_err(|e| XdpError::Map("host_ipv4", e.to_string()))?;
        map.insert(u32::from_ne_bytes(ip.octets()), 1, 0)
            .map_err(|e| XdpError::Map("host_ipv4", e.to_string()))
    }
}
