//! A small switch for the pipeline target: port 1 a guarded access port, port 2 a plain
//! access port, port 3 a trunk carrying the tenant on VLAN 10 and another on VLAN 20; the
//! tenant has ingress and egress ACLs with a mix of rule shapes.
use xsw::pipeline::acl::{AclAction, AclRule, TenantAcl};
use xsw::pipeline::stages::{egress, ingress_batch, PortPolicy, TenantPolicy, Verdict};
use xsw::pipeline::guard::Trust;
use xsw::pipeline::storm::StormLimits;
use xsw::pipeline::tenant::{PortMode, TrunkMap};
use xsw::pipeline::{Decision, TenantId, Fdb, PortGuard, PortId};

pub const PORTS: [PortId; 3] = [1, 2, 3];
const TENANT: TenantId = 1;
const OTHER: TenantId = 2;
/// Small, so a fuzzed batch fills it and the eviction paths run.
const FDB_CAPACITY: usize = 64;
const BATCH: usize = 64;

pub struct Harness {
    fdb: Fdb,
    policies: Vec<PortPolicy>,
    tenants: Vec<TenantPolicy>,
    verdicts: Vec<Verdict>,
    now_ns: u64,
}

fn rules(json: &str) -> Vec<AclRule> {
    serde_json::from_str(json).expect("the harness's rules are valid JSON")
}

impl Harness {
    pub fn new() -> Harness {
        let guard: PortGuard = serde_json::from_str(
            r#"{"macs":["02:00:00:00:00:01"],"ipv4":["198.18.0.1/32"],"ipv6":["2001:db8::1/128"],"restrict_to_port":true}"#,
        )
        .expect("the harness's guard is valid");
        // Untrusted for RA and DHCP, with storm limits: the defaults, so their stages run.
        let access = |guard| PortPolicy {
            mode: PortMode::Access(TENANT),
            guard,
            trust: Trust::default(),
            storm: StormLimits::default(),
        };
        let policies = vec![
            access(Some(guard)),
            access(None),
            PortPolicy {
                mode: PortMode::Trunk(TrunkMap::new(&[(10, TENANT), (20, OTHER)])),
                guard: None,
                trust: Trust { ra: true, dhcp: true },
                storm: StormLimits::OFF,
            },
        ];
        let ingress = rules(
            r#"[{"proto":"tcp","dport":22,"action":"deny"},
                {"src":"198.18.0.0/24","proto":"udp","action":"allow"},
                {"dst":"2001:db8::/32","action":"deny"},
                {"proto":"icmp","icmp_type":8,"action":"allow"},
                {"proto":"tcp","established":true,"action":"allow"}]"#,
        );
        let egress_rules = rules(r#"[{"proto":"udp","sport":"1-1023","action":"deny"}]"#);
        let tenant = |ingress: Vec<AclRule>, egress: Vec<AclRule>| TenantPolicy {
            ingress: TenantAcl::new(ingress, AclAction::Allow).expect("valid rules"),
            egress: TenantAcl::new(egress, AclAction::Allow).expect("valid rules"),
        };
        let tenants = vec![tenant(Vec::new(), Vec::new()), tenant(ingress, egress_rules), tenant(Vec::new(), Vec::new())];
        Harness {
            fdb: Fdb::new(FDB_CAPACITY, 1_000_000),
            policies,
            tenants,
            verdicts: vec![Verdict::default(); BATCH],
            now_ns: 0,
        }
    }

    /// One batch in on `ingress`, then the egress side for every port a frame may go to.
    pub fn run(&mut self, ingress: PortId, frames: &[&[u8]]) {
        self.now_ns += 10_000;
        let policy = &self.policies[usize::from(ingress - 1)];
        let tenants = &self.tenants;
        for chunk in frames.chunks(BATCH) {
            let count = ingress_batch(
                &mut self.fdb,
                ingress,
                policy,
                |tenant_id| tenants.get(usize::from(tenant_id)),
                chunk,
                self.now_ns,
                &mut self.verdicts,
            );
            assert_eq!(count, chunk.len());
            for verdict in &self.verdicts[..count] {
                let Some(info) = verdict.info.as_ref() else {
                    assert!(matches!(verdict.decision, Decision::Drop(_)), "an unparsed frame must be dropped");
                    continue;
                };
                if matches!(verdict.decision, Decision::Drop(_)) {
                    continue;
                }
                for port in PORTS {
                    let _ = egress(&self.policies[usize::from(port - 1)], verdict.tenant_id, info);
                }
            }
        }
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}
