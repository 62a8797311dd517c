//! 802.1Q trunks: one port carries tenant a on VID 100 and tenant b on VID
//! 200. The kernel here has no VLAN devices, so the trunk's far end is a
//! plain veth in a namespace where the test sends hand-made tagged frames
//! (raw-send) and reads the tags with tcpdump -e.

use anyhow::{ensure, Result};
use serde_json::Value;
use std::time::Duration;
use xsw_integration::frames::{self, ip4, ETH_ARP, ETH_EXPERIMENTAL, TPID_8021AD, TPID_8021Q};
use xsw_integration::{lab, normalize, Host, Lab};

struct Trunked {
    a1: Host,
    b1: Host,
    /// Far end of the trunk port.
    tr: Host,
}

/// a1 (tenant a) and b1 (tenant b) on access ports; tr on a trunk with
/// VID 100 -> a, VID 200 -> b.
fn setup(lab: &Lab) -> Result<Trunked> {
    let a1 = lab.add_veth_host("a1", 1)?;
    let b1 = lab.add_veth_host("b1", 2)?;
    let tr = lab.add_veth_host("tr", 9)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "a"])?;
    lab.ctl_ok(&["tenant", "create", "b"])?;
    lab.ctl_ok(&["port", "add", &a1.port, "--tenant", "a"])?;
    lab.ctl_ok(&["port", "add", &b1.port, "--tenant", "b"])?;
    lab.ctl_ok(&["port", "add", &tr.port, "--trunk"])?;
    lab.ctl_ok(&["vlan", "add", &tr.port, "100", "a"])?;
    lab.ctl_ok(&["vlan", "add", &tr.port, "200", "b"])?;
    Ok(Trunked { a1, b1, tr })
}

fn snapshot(lab: &Lab) -> Result<(Value, Value)> {
    Ok((
        normalize(&Value::Array(lab.ports()?)),
        normalize(&Value::Array(lab.tenants()?)),
    ))
}

#[test]
fn trunk_tags_each_tenant_with_its_vid() -> Result<()> {
    let lab = lab!("trunk", "tka", 163)?;
    let Trunked { a1, b1, tr } = setup(&lab)?;

    // What the control plane shows.
    let p = lab.port(&tr.port)?.unwrap_or_default();
    let mut vlans: Vec<(u64, String)> = p["vlans"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                v["vlan"].as_u64().unwrap_or(0),
                v["tenant"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    vlans.sort();
    ensure!(
        p["trunk"] == true
            && p["tenant"].is_null()
            && vlans == vec![(100, "a".into()), (200, "b".into())],
        "port list row of the trunk: {p}"
    );
    let a = lab.port(&a1.port)?.unwrap_or_default();
    ensure!(
        a["trunk"] == false && a["tenant"] == "a",
        "port list row of a1: {a}"
    );
    let ta = lab.tenant("a")?.unwrap_or_default();
    ensure!(
        ta["vlans"].as_array().is_some_and(|v| v
            .iter()
            .any(|x| x["port"] == tr.port.as_str() && x["vlan"] == 100)),
        "tenant list: a should list VLAN 100 on {}: {ta}",
        tr.port
    );

    // Refused VLAN requests change nothing.
    let before = snapshot(&lab)?;
    let e = lab.ctl_err(&["vlan", "add", &tr.port, "4095", "a"])?;
    ensure!(
        e.stderr.contains("VLAN ID 4095 is out of range 1-4094"),
        "vlan add VID 4095: {}",
        e.describe()
    );
    for args in [
        vec!["vlan", "add", tr.port.as_str(), "0", "a"],
        vec!["vlan", "add", tr.port.as_str(), "100", "b"], // VID already mapped
        vec!["vlan", "add", a1.port.as_str(), "300", "a"], // not a trunk
        vec!["vlan", "add", tr.port.as_str(), "300", "nosuch"],
        vec!["vlan", "del", tr.port.as_str(), "300"],
    ] {
        lab.ctl_err(&args)?;
    }
    let e = lab.ctl_err(&["tenant", "delete", "a"])?;
    ensure!(
        e.stderr.contains(&a1.port) && e.stderr.contains("VLAN 100") && e.stderr.contains(&tr.port),
        "tenant delete a (port {}, VLAN 100 on {}): {}",
        a1.port,
        tr.port,
        e.describe()
    );
    ensure!(
        snapshot(&lab)? == before,
        "refused requests changed ports/tenants: {before:?} -> {:?}",
        snapshot(&lab)?
    );

    // Into the trunk, tagged: an ARP request for each tenant's host, from a
    // station behind the trunk. The host gets it untagged, the other tenant
    // nothing, and the reply leaves the trunk tagged with the tenant's VID.
    for (vid, host, other, idx) in [(100u16, &a1, &b1, 100u8), (200, &b1, &a1, 101)] {
        let st_mac = lab.mac(idx);
        let st_ip = lab.ip(idx);
        let req = frames::arp(1, &st_mac, ip4(&st_ip), "00:00:00:00:00:00", ip4(&host.ip));
        let frame = frames::eth(
            "ff:ff:ff:ff:ff:ff",
            &st_mac,
            &[(TPID_8021Q, vid)],
            ETH_ARP,
            &req,
        );
        let f = format!("ether src {st_mac}");
        let mut at_host = lab.capture_as(host, &format!("in{vid}"), &f, 1)?;
        let mut at_other = lab.capture_as(other, &format!("in{vid}"), &f, 1)?;
        let f = format!("ether src {} and ether dst {st_mac}", host.mac);
        let mut reply = lab.capture_as(&tr, &format!("reply{vid}"), &f, 1)?;
        lab.raw_send(&tr, &frame, 1)?;
        let line = lab.expect_frame(
            &mut at_host,
            Duration::from_secs(3),
            &format!("ARP request tagged {vid} from the trunk at {}", host.name),
        )?;
        ensure!(
            !line.contains("802.1Q") && !line.contains("vlan") && line.contains("Request"),
            "{} should get the VID {vid} ARP request untagged: {line}",
            host.name
        );
        let line = lab.expect_frame(
            &mut reply,
            Duration::from_secs(3),
            &format!("{}'s ARP reply on the trunk", host.name),
        )?;
        ensure!(
            line.contains(&format!("vlan {vid},")) && line.contains("Reply"),
            "{}'s ARP reply should leave the trunk tagged {vid}: {line}",
            host.name
        );
        lab.expect_silence(
            &mut at_other,
            Duration::from_millis(500),
            &format!(
                "ARP request tagged {vid} reached {} (other tenant)",
                other.name
            ),
        )?;
        let e = lab.fdb_entries(&st_mac)?;
        let t = if vid == 100 { "a" } else { "b" };
        ensure!(
            e.len() == 1 && e[0]["port"] == tr.port.as_str() && e[0]["tenant"] == t,
            "fdb: station {st_mac} behind the trunk on VID {vid} should be learned on {} in tenant {t}: {e:?}",
            tr.port
        );
    }

    // A broadcast from tenant a's access host leaves the trunk tagged 100,
    // never 200, and never reaches tenant b.
    let f = format!("ether src {}", a1.mac);
    let mut on_trunk = lab.capture_as(&tr, "bcast", &f, 2)?;
    let mut tagged200 = lab.capture_as(
        &tr,
        "bcast200",
        &format!("vlan 200 and ether src {}", a1.mac),
        1,
    )?;
    let mut at_b1 = lab.capture_as(&b1, "bcast", &f, 1)?;
    let _ = lab.ping(&a1, &lab.ip(200), 2)?; // nobody has .200: a1 broadcasts ARP requests
    for i in 0..2 {
        let line = lab.expect_frame(
            &mut on_trunk,
            Duration::from_secs(3),
            &format!("a1's ARP broadcast {i} on the trunk"),
        )?;
        ensure!(
            line.contains("ff:ff:ff:ff:ff:ff")
                && line.contains("vlan 100,")
                && !line.contains("vlan 200"),
            "a1's broadcast should leave the trunk tagged 100: {line}"
        );
    }
    lab.expect_silence(
        &mut tagged200,
        Duration::from_millis(500),
        "a1's broadcast left the trunk tagged 200",
    )?;
    lab.expect_silence(
        &mut at_b1,
        Duration::from_millis(200),
        "a1's broadcast (tenant a) reached b1 (tenant b)",
    )?;

    // A frame tagged 200 into the trunk reaches b1 untagged, not a1.
    let st = lab.mac(102);
    let frame = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &st,
        &[(TPID_8021Q, 200)],
        ETH_EXPERIMENTAL,
        b"vid 200",
    );
    let f = format!("ether src {st}");
    let mut at_b1 = lab.capture_as(&b1, "raw200", &f, 1)?;
    let mut at_a1 = lab.capture_as(&a1, "raw200", &f, 1)?;
    lab.raw_send(&tr, &frame, 2)?;
    let line = lab.expect_frame(
        &mut at_b1,
        Duration::from_secs(3),
        "broadcast tagged 200 at b1",
    )?;
    ensure!(
        !line.contains("802.1Q") && !line.contains("vlan") && line.contains("0x88b5"),
        "b1 should get the VID 200 frame untagged: {line}"
    );
    lab.expect_silence(
        &mut at_a1,
        Duration::from_millis(800),
        "a frame tagged 200 reached a1 (tenant a)",
    )?;
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

#[test]
fn trunk_drops_unknown_vids_double_tags_and_tags_from_access_ports() -> Result<()> {
    let lab = lab!("trunkdrop", "tkb", 164)?;
    let Trunked { a1, b1, tr } = setup(&lab)?;
    let st = lab.mac(110);

    struct Case {
        what: &'static str,
        tags: Vec<(u16, u16)>,
        from_trunk: bool,
        reason: &'static str,
    }
    let cases = [
        Case {
            what: "VID 300 (not mapped) into the trunk",
            tags: vec![(TPID_8021Q, 300)],
            from_trunk: true,
            reason: "vlan_unknown",
        },
        Case {
            what: "untagged into the trunk",
            tags: vec![],
            from_trunk: true,
            reason: "vlan_unknown",
        },
        Case {
            what: "double tag 100 then 200 into the trunk",
            tags: vec![(TPID_8021Q, 100), (TPID_8021Q, 200)],
            from_trunk: true,
            reason: "cross_tenant",
        },
        Case {
            what: "802.1ad 100 then 802.1Q 200 into the trunk",
            tags: vec![(TPID_8021AD, 100), (TPID_8021Q, 200)],
            from_trunk: true,
            reason: "cross_tenant",
        },
        Case {
            what: "tagged 200 from access host a1",
            tags: vec![(TPID_8021Q, 200)],
            from_trunk: false,
            reason: "cross_tenant",
        },
        Case {
            what: "tagged 100 from access host a1",
            tags: vec![(TPID_8021Q, 100)],
            from_trunk: false,
            reason: "cross_tenant",
        },
    ];
    for (n, c) in cases.iter().enumerate() {
        let (sender, counted_on) = if c.from_trunk {
            (&tr, &tr.port)
        } else {
            (&a1, &a1.port)
        };
        let frame = frames::eth(
            "ff:ff:ff:ff:ff:ff",
            &st,
            &c.tags,
            ETH_EXPERIMENTAL,
            c.what.as_bytes(),
        );
        let f = format!("ether src {st}");
        let mut caps = Vec::new();
        for h in [&a1, &b1, &tr] {
            if h.name != sender.name {
                caps.push((
                    h.name.clone(),
                    lab.capture_as(h, &format!("case{n}"), &f, 1)?,
                ));
            }
        }
        let before = lab.drop_count(counted_on, c.reason)?;
        lab.raw_send(sender, &frame, 5)?;
        lab.expect_drops(counted_on, c.reason, before, 5)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", c.what))?;
        for (name, cap) in caps.iter_mut() {
            lab.expect_silence(
                cap,
                Duration::from_millis(300),
                &format!("{}: delivered to {name}", c.what),
            )?;
        }
    }
    // Still switching tagged traffic after all that.
    let ok = lab.mac(111);
    let frame = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &ok,
        &[(TPID_8021Q, 100)],
        ETH_EXPERIMENTAL,
        b"fine",
    );
    let mut at_a1 = lab.capture_as(&a1, "ok", &format!("ether src {ok}"), 1)?;
    lab.raw_send(&tr, &frame, 1)?;
    lab.expect_frame(
        &mut at_a1,
        Duration::from_secs(3),
        "a frame tagged 100 at a1 after the drops",
    )?;
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

/// Trunk to trunk: tenant a travels as VID 100 on one trunk and VID 300 on
/// the other. A frame entering tagged 100 with priority 5 leaves the other
/// trunk tagged 300 with priority 5 (the VID is rewritten, the PCP kept),
/// and a reply the other way is rewritten back, its priority kept too.
#[test]
fn trunk_to_trunk_rewrites_the_vid_and_keeps_the_priority() -> Result<()> {
    let lab = lab!("trunk2", "tk2", 214)?;
    let t1 = lab.add_veth_host("t1", 1)?;
    let t2 = lab.add_veth_host("t2", 2)?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "a"])?;
    lab.ctl_ok(&["port", "add", &t1.port, "--trunk"])?;
    lab.ctl_ok(&["port", "add", &t2.port, "--trunk"])?;
    lab.ctl_ok(&["vlan", "add", &t1.port, "100", "a"])?;
    lab.ctl_ok(&["vlan", "add", &t2.port, "300", "a"])?;

    // A tag control field with priority `pcp` and VID `vid`.
    let tagged = |dst: &str, src: &str, pcp: u16, vid: u16, payload: &[u8]| {
        let mut f = frames::eth(dst, src, &[(TPID_8021Q, vid)], ETH_EXPERIMENTAL, payload);
        f[14..16].copy_from_slice(&((pcp << 13) | vid).to_be_bytes());
        f
    };
    let (s1, s2) = (lab.mac(101), lab.mac(102));
    for (from, to, src, dst, pcp, vid_in, vid_out) in [
        (&t1, &t2, &s1, "ff:ff:ff:ff:ff:ff", 5u16, 100u16, 300u16),
        (&t2, &t1, &s2, s1.as_str(), 3, 300, 100),
    ] {
        let mut out =
            lab.capture_as(to, &format!("out{vid_out}"), &format!("ether src {src}"), 1)?;
        lab.raw_send(from, &tagged(dst, src, pcp, vid_in, b"trunk to trunk"), 1)?;
        let line = lab.expect_frame(
            &mut out,
            Duration::from_secs(3),
            &format!(
                "frame tagged {vid_in} p {pcp} from {} at {}",
                from.name, to.name
            ),
        )?;
        ensure!(
            line.contains(&format!("vlan {vid_out}, p {pcp},"))
                && !line.contains(&format!("vlan {vid_in},")),
            "tagged {vid_in} priority {pcp} in, expected tag {vid_out} priority {pcp} out: {line}"
        );
    }
    // The reply was unicast to s1, learned behind t1 on VID 100.
    let e = lab.fdb_entries(&s1)?;
    ensure!(
        e.len() == 1 && e[0]["port"] == t1.port.as_str() && e[0]["tenant"] == "a",
        "{s1} should be learned on {} in a: {e:?}",
        t1.port
    );
    Ok(())
}
