//! The MAC table end to end: a host that moves to another port (served by
//! another worker) is found there at once, and the per-tenant learning limit
//! keeps one tenant from taking more than its share while others still learn.

use anyhow::{ensure, Context, Result};
use std::time::Duration;
use xsw_integration::{cmd, frames, lab, Lab};

/// h1 moves from one port to another (same MAC, same address; its old link
/// goes down), the two ports on different workers. Its first frame from the
/// new port moves its MAC table entry, and h2's unicast to it (h2's
/// neighbour cache still holds the MAC, so no ARP helps) reaches it there.
#[test]
fn a_host_moving_to_a_port_on_another_worker_is_found_there() -> Result<()> {
    let lab = lab!("fdbmove", "fmv", 215)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    // The same host (MAC and IP of host 1) behind another port.
    let moved = lab.add_veth_host("mv", 1)?;
    lab.start_xswd(&format!(
        "{}\n[dataplane]\nworkers = [0, 1]\n",
        Lab::config_with_ports(&[&h1.port, &h2.port, &moved.port])
    ))?;
    lab.ctl_ok(&["port", "queues", &h1.port, "--workers", "0"])?;
    lab.ctl_ok(&["port", "queues", &h2.port, "--workers", "0"])?;
    lab.ctl_ok(&["port", "queues", &moved.port, "--workers", "1"])?;
    // Only the original is up at first.
    cmd::ns_ok(&moved.ns, &["ip", "link", "set", &moved.ifname, "down"])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h2, &h1, 2)?;
    let port_of_h1 = |lab: &Lab| -> Result<Vec<String>> {
        Ok(lab
            .fdb_entries(&h1.mac)?
            .iter()
            .filter_map(|e| e["port"].as_str().map(str::to_string))
            .collect())
    };
    ensure!(
        port_of_h1(&lab)? == [h1.port.clone()],
        "h1 should be learned on {}: {:?}",
        h1.port,
        port_of_h1(&lab)?
    );

    // The move: the old link goes down, the new one up, and the host speaks.
    cmd::ns_ok(&h1.ns, &["ip", "link", "set", &h1.ifname, "down"])?;
    cmd::ns_ok(&moved.ns, &["ip", "link", "set", &moved.ifname, "up"])?;
    let mut at_new = lab.capture_as(&moved, "moved", &format!("icmp and src host {}", h2.ip), 3)?;
    lab.wait_reachable(&moved, &h2, Duration::from_secs(5))?;
    ensure!(
        port_of_h1(&lab)? == [moved.port.clone()],
        "after the move {} should be learned on {} only: {:?}",
        h1.mac,
        moved.port,
        port_of_h1(&lab)?
    );
    // h2's unicast to the MAC goes to the new port.
    lab.ping_all(&h2, &moved, 3)?;
    lab.expect_frame(
        &mut at_new,
        Duration::from_secs(3),
        "h2's ICMP to the moved host",
    )?;
    Ok(())
}

/// `mac_limit_per_tenant = 3`: a port spraying eight source MACs gets its
/// tenant no more than three entries, the refusals are counted on that port,
/// and another tenant's hosts are still learned and reach each other.
#[test]
fn the_per_tenant_mac_limit_holds_and_other_tenants_still_learn() -> Result<()> {
    let lab = lab!("fdbtenantlimit", "ftl", 216)?;
    let a1 = lab.add_veth_host("a1", 1)?;
    let a2 = lab.add_veth_host("a2", 2)?;
    let b1 = lab.add_veth_host("b1", 3)?;
    let b2 = lab.add_veth_host("b2", 4)?;
    let mut config = String::from(
        "[dataplane]\nmac_limit_per_tenant = 3\n\n[[tenant]]\nname = \"a\"\n\n[[tenant]]\nname = \"b\"\n",
    );
    for (h, t) in [(&a1, "a"), (&a2, "a"), (&b1, "b"), (&b2, "b")] {
        config.push_str(&format!(
            "\n[[port]]\nname = \"{}\"\ntenant = \"{t}\"\n",
            h.port
        ));
    }
    lab.start_xswd(&config)?;

    let spray = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        "02:5a:00:00:01:00",
        &[],
        frames::ETH_EXPERIMENTAL,
        &[0; 46],
    );
    lab.raw_send_from_many(&a1, &spray, 8, 8, 2)?;
    std::thread::sleep(Duration::from_millis(300));
    let in_tenant = |t: &str| -> Result<usize> {
        Ok(lab
            .fdb()?
            .iter()
            .filter(|e| e["tenant"] == t && e["static"] == false)
            .count())
    };
    ensure!(
        in_tenant("a")? == 3,
        "tenant a holds {} learned MACs with a limit of 3: {:?}",
        in_tenant("a")?,
        lab.fdb()?
    );
    let refused = lab.stats()?["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == a1.port.as_str()))
        .and_then(|p| p["learning_refused"].as_u64())
        .context("learning_refused")?;
    ensure!(
        refused >= 5,
        "only {refused} refusals counted on {}",
        a1.port
    );
    // a2, in the full tenant, is not learned either.
    let _ = lab.ping(&a2, &lab.ip(99), 1)?;
    ensure!(
        lab.fdb_entries(&a2.mac)?.is_empty() && in_tenant("a")? == 3,
        "a2 was learned in the full tenant a: {:?}",
        lab.fdb()?
    );
    // Tenant b is not affected.
    lab.wait_reachable(&b1, &b2, Duration::from_secs(5))?;
    lab.ping_all(&b1, &b2, 2)?;
    ensure!(
        in_tenant("b")? == 2,
        "tenant b should hold b1 and b2: {:?}",
        lab.fdb()?
    );
    Ok(())
}
