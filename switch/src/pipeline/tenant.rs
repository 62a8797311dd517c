//! Which tenant a frame belongs to, and how it must look when it leaves.
//!
//! An access port belongs to one tenant and carries untagged frames only. A
//! trunk carries several tenants, one 802.1Q VLAN ID each: frames arrive
//! tagged and are switched in the tenant the tag maps to; frames leave
//! tagged with the egress tenant's VID. Anything that could let a frame hop
//! tenants (a tag on an access port, a second tag on a trunk) is dropped.

use super::decision::{DropReason, TenantId};
use crate::packet::FrameInfo;

/// Highest usable 802.1Q VLAN ID (0 and 4095 are reserved).
pub const VLAN_MAX: u16 = 4094;
const NO_TENANT: TenantId = TenantId::MAX;

/// VID ↔ tenant mapping of one trunk port.
#[derive(Clone, Debug)]
pub struct TrunkMap {
    tenant_of_vid: Box<[TenantId]>,
    vid_of_tenant: Vec<u16>,
}

impl TrunkMap {
    /// `pairs`: (VID, tenant). VIDs outside 1..=4094 are ignored; callers
    /// validate them first.
    pub fn new(pairs: &[(u16, TenantId)]) -> Self {
        let mut tenant_of_vid = vec![NO_TENANT; usize::from(VLAN_MAX) + 1].into_boxed_slice();
        let mut vid_of_tenant = Vec::new();
        for &(vid, tenant_id) in pairs {
            if !(1..=VLAN_MAX).contains(&vid) || tenant_id == NO_TENANT {
                continue;
            }
            tenant_of_vid[usize::from(vid)] = tenant_id;
            let index = usize::from(tenant_id);
            if vid_of_tenant.len() <= index {
                vid_of_tenant.resize(index + 1, 0);
            }
            vid_of_tenant[index] = vid;
        }
        TrunkMap {
            tenant_of_vid,
            vid_of_tenant,
        }
    }

    #[inline]
    pub fn tenant_id(&self, vid: u16) -> Option<TenantId> {
        self.tenant_of_vid
            .get(usize::from(vid))
            .copied()
            .filter(|&d| d != NO_TENANT)
    }

    #[inline]
    pub fn vid(&self, tenant_id: TenantId) -> Option<u16> {
        self.vid_of_tenant
            .get(usize::from(tenant_id))
            .copied()
            .filter(|&v| v != 0)
    }

    /// The tenants this trunk carries.
    pub fn tenant_ids(&self) -> impl Iterator<Item = TenantId> + '_ {
        self.vid_of_tenant
            .iter()
            .enumerate()
            .filter(|(_, &v)| v != 0)
            .map(|(d, _)| d as TenantId)
    }
}

#[derive(Clone, Debug)]
pub enum PortMode {
    Access(TenantId),
    Trunk(TrunkMap),
}

/// The tenant of a frame that arrived on a port in `mode`.
#[inline]
pub fn classify(mode: &PortMode, info: &FrameInfo) -> Result<TenantId, DropReason> {
    match mode {
        PortMode::Access(tenant_id) => match info.vlan {
            // A tag from an access port would reach a trunk as a second tag.
            Some(_) => Err(DropReason::CrossTenant),
            None => Ok(*tenant_id),
        },
        PortMode::Trunk(map) => match info.vlan {
            None => Err(DropReason::VlanUnknown),
            Some(_) if info.inner_tagged => Err(DropReason::CrossTenant),
            Some(vid) => map.tenant_id(vid).ok_or(DropReason::VlanUnknown),
        },
    }
}

/// The tag a frame of tenant `tenant_id` carries on its way out of `mode`:
/// `Some(None)` untagged, `Some(Some(vid))` tagged, `None` if the port does
/// not carry that tenant at all.
#[inline]
pub fn egress_tag(mode: &PortMode, tenant_id: TenantId) -> Option<Option<u16>> {
    match mode {
        PortMode::Access(d) => (*d == tenant_id).then_some(None),
        PortMode::Trunk(map) => map.vid(tenant_id).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse_frame;

    fn frame(tags: &[u16]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        for vid in tags {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&[0x88, 0xb5]);
        f.resize(f.len() + 46, 0);
        f
    }

    fn info(tags: &[u16]) -> FrameInfo {
        parse_frame(&frame(tags)).expect("valid test frame")
    }

    #[test]
    fn access_ports_take_untagged_frames_into_their_tenant_only() {
        let access = PortMode::Access(3);
        assert_eq!(classify(&access, &info(&[])), Ok(3));
        assert_eq!(
            classify(&access, &info(&[100])),
            Err(DropReason::CrossTenant)
        );
    }

    #[test]
    fn trunks_map_tags_to_tenants_and_refuse_the_rest() {
        let trunk = PortMode::Trunk(TrunkMap::new(&[(100, 1), (200, 2)]));
        assert_eq!(classify(&trunk, &info(&[100])), Ok(1));
        assert_eq!(classify(&trunk, &info(&[200])), Ok(2));
        assert_eq!(
            classify(&trunk, &info(&[300])),
            Err(DropReason::VlanUnknown)
        );
        assert_eq!(classify(&trunk, &info(&[])), Err(DropReason::VlanUnknown));
        assert_eq!(
            classify(&trunk, &info(&[100, 200])),
            Err(DropReason::CrossTenant)
        );
    }

    #[test]
    fn egress_tags_follow_the_port_mode() {
        let trunk = PortMode::Trunk(TrunkMap::new(&[(100, 1), (200, 2)]));
        assert_eq!(egress_tag(&trunk, 2), Some(Some(200)));
        assert_eq!(egress_tag(&trunk, 5), None);
        assert_eq!(egress_tag(&PortMode::Access(1), 1), Some(None));
        assert_eq!(egress_tag(&PortMode::Access(1), 2), None);
        assert_eq!(
            TrunkMap::new(&[(100, 1), (200, 2)])
                .tenant_ids()
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn invalid_vids_are_ignored() {
        let map = TrunkMap::new(&[(0, 1), (4095, 2), (4094, 3)]);
        assert_eq!(map.tenant_id(0), None);
        assert_eq!(map.tenant_id(4095), None);
        assert_eq!(map.tenant_id(4094), Some(3));
    }
}
