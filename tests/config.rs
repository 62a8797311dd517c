//! The configuration lifecycle: every change made with xswctl is saved to
//! the config file, a restart (even after SIGKILL) brings everything back
//! and traffic flows again, a reload applies only the difference without
//! disturbing unchanged ports, and a bad file changes nothing.

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use std::time::{Duration, Instant};
use xsw_integration::users::TestUser;
use xsw_integration::{cmd, frames, lab, normalize, threads, Host, Lab};

fn state(lab: &Lab) -> Result<Vec<Value>> {
    Ok(vec![
        normalize(&lab.ctl_json(&["port", "list"])?),
        normalize(&lab.ctl_json(&["tenant", "list"])?),
        normalize(&lab.ctl_json(&["acl", "list", "web"])?["ingress"]["rules"].clone()),
        normalize(
            &lab.ctl_json(&["fdb", "show"])?
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .filter(|r| r["static"] == true)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
                .into(),
        ),
    ])
}

fn config_show(lab: &Lab) -> Result<String> {
    Ok(lab.ctl_json(&["config", "show"])?["toml"]
        .as_str()
        .context("config show toml")?
        .to_string())
}

#[test]
fn changes_are_saved_and_a_restart_after_sigkill_restores_them() -> Result<()> {
    let lab = lab!("cfgrt", "cfr", 181)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let tr = lab.add_veth_host("tr", 9)?;
    let user = TestUser::create(&[])?;
    lab.start_xswd("")?;
    lab.ctl_ok(&["tenant", "create", "web"])?;
    lab.ctl_ok(&["port", "add", &h1.port, "--tenant", "web"])?;
    lab.ctl_ok(&["port", "add", &h2.port, "--tenant", "web"])?;
    lab.ctl_ok(&[
        "acl", "add", "web", "ingress", "deny", "--proto", "tcp", "--dport", "25",
    ])?;
    lab.ctl_ok(&[
        "antispoof",
        "set",
        &h1.port,
        "--mac",
        &h1.mac,
        "--ip",
        &h1.ip,
    ])?;
    lab.ctl_ok(&["fdb", "add", &h2.mac, &h2.port, "--tenant", "web"])?;
    // A tap xsw created outlives xswd (a VM may hold it): a restart adopts it.
    let tap = format!("{}-vm", lab.tag);
    lab.ctl_ok(&["port", "add", &tap, "--create-tap", "--tenant", "web"])?;
    // A trunk VLAN, a grant and an egress policy: each must survive too.
    lab.ctl_ok(&["port", "add", &tr.port, "--trunk"])?;
    lab.ctl_ok(&["vlan", "add", &tr.port, "100", "web"])?;
    lab.ctl_ok(&["tenant", "grant", "web", "--uid", &user.uid.to_string()])?;
    lab.ctl_ok(&["acl", "add", "web", "egress", "allow", "--proto", "icmp"])?;
    lab.ctl_ok(&["acl", "policy", "web", "egress", "deny"])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    restored_policies_decide(&lab, &h1, &h2, &tr, &user, "before the restart")?;

    // What xswctl changed is in the file, exactly as `config show` prints it.
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved == config_show(&lab)?,
        "saved file differs from config show:\n{saved}"
    );
    let checked = lab.ctl_ok(&["config", "check", &lab.config_path().display().to_string()])?;
    ensure!(
        checked.contains(": ok"),
        "config check of the saved file: {checked}"
    );
    let before = state(&lab)?;
    let grants_and_policies_before: std::collections::HashMap<&str, Value> = [
        ("grants", lab.ctl_json(&["tenant", "show", "web"])?),
        ("ACL policies", lab.ctl_json(&["acl", "list", "web"])?),
    ]
    .into();

    lab.kill_xswd()?;
    let restarted = Instant::now();
    lab.relaunch_xswd()?;
    let after = state(&lab)?;
    ensure!(
        before[..3] == after[..3],
        "state differs after restart:\nbefore {before:?}\nafter  {after:?}"
    );
    for (what, args) in [
        ("grants", vec!["tenant", "show", "web"]),
        ("ACL policies", vec!["acl", "list", "web"]),
    ] {
        let (b, a) = (&grants_and_policies_before[what], lab.ctl_json(&args)?);
        let pick = |v: &Value| {
            if what == "grants" {
                v["grants"].clone()
            } else {
                serde_json::json!([
                    v["ingress"]["default"],
                    v["egress"]["default"],
                    v["egress"]["rules"].as_array().map(|r| r.len())
                ])
            }
        };
        ensure!(
            pick(b) == pick(&a),
            "{what} differ after restart:\nbefore {b}\nafter  {a}"
        );
    }
    ensure!(
        before[3] == after[3],
        "static MACs differ after restart:\nbefore {:?}\nafter  {:?}",
        before[3],
        after[3]
    );
    // Flowing again is the behaviour; the bound only catches a hang (about
    // 1 s here, so a machine ten times slower still meets it).
    lab.wait_reachable(&h1, &h2, Duration::from_secs(30))?;
    eprintln!(
        "traffic flowed {:?} after the restart began",
        restarted.elapsed()
    );
    lab.ping_all(&h1, &h2, 3)?;
    restored_policies_decide(&lab, &h1, &h2, &tr, &user, "after the restart")?;
    Ok(())
}

/// What the restart test set up, checked by behaviour: the egress policy
/// (deny, allow ICMP) lets pings through and stops TCP; the trunk carries web
/// on VID 100 (an ARP request tagged 100 gets h2's reply tagged 100); the
/// user granted web may read its ACLs.
fn restored_policies_decide(
    lab: &Lab,
    h1: &Host,
    h2: &Host,
    tr: &Host,
    user: &TestUser,
    when: &str,
) -> Result<()> {
    lab.ping_all(h1, h2, 2)?;
    let tcp = lab.tcp_try(h1, h2, &h2.ip, 8080, 2)?;
    ensure!(
        !tcp.connected,
        "{when}: web's egress policy deny let TCP through: {}",
        tcp.detail
    );

    let (st_mac, st_ip) = (lab.mac(100), lab.ip(100));
    let req = frames::arp(
        1,
        &st_mac,
        frames::ip4(&st_ip),
        "00:00:00:00:00:00",
        frames::ip4(&h2.ip),
    );
    let frame = frames::eth(
        "ff:ff:ff:ff:ff:ff",
        &st_mac,
        &[(frames::TPID_8021Q, 100)],
        frames::ETH_ARP,
        &req,
    );
    let mut reply = lab.capture_as(
        tr,
        &format!("reply-{}", when.len()),
        &format!("ether src {} and ether dst {st_mac}", h2.mac),
        1,
    )?;
    lab.raw_send(tr, &frame, 1)?;
    let line = lab.expect_frame(
        &mut reply,
        Duration::from_secs(3),
        &format!("{when}: h2's ARP reply on the trunk"),
    )?;
    ensure!(
        line.contains("vlan 100,"),
        "{when}: h2's reply should leave the trunk tagged 100: {line}"
    );

    let acl = lab.ctl_as_json(user, &["acl", "list", "web"])?;
    ensure!(
        acl["egress"]["default"] == "deny",
        "{when}: the granted user's view of web's ACLs: {acl}"
    );
    Ok(())
}

#[test]
fn a_reload_applies_the_difference_without_disturbing_other_ports() -> Result<()> {
    let lab = lab!("cfgrl", "cfl", 182)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    // Steady UDP between h1 and h2 while the file changes under them.
    let (_echo, port) = lab.start_udp_echo(&h2, 20)?;
    let mut probe = lab.spawn_udp_probe(&h1, &h2.ip, port, 300, 10)?;
    std::thread::sleep(Duration::from_millis(500));

    let mut config = std::fs::read_to_string(lab.config_path())?;
    config.push_str(&format!(
        "\n[[tenant]]\nname = \"web\"\n[[tenant.ingress]]\naction = \"deny\"\nproto = \"udp\"\n\n[[port]]\nname = \"{}\"\ntenant = \"web\"\n",
        h3.port
    ));
    std::fs::write(lab.config_path(), &config)?;
    let pid = lab.xswd_pid().context("xswd pid")?;
    cmd::sh_ok(&["kill", "-HUP", &pid.to_string()])?;

    let deadline = Instant::now() + Duration::from_secs(5);
    while lab.port(&h3.port)?.is_none() {
        ensure!(
            Instant::now() < deadline,
            "the reload did not add {}:\n{}",
            h3.port,
            lab.xswd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let row = lab.port(&h3.port)?.unwrap_or(Value::Null);
    ensure!(
        row["tenant"] == "web",
        "{} not in tenant web: {row}",
        h3.port
    );
    let acl = lab.ctl_json(&["acl", "list", "web"])?;
    ensure!(
        acl["ingress"]["rules"][0]["proto"] == "udp",
        "reload did not set web's ACL: {acl}"
    );

    let udp = lab.probe_result(&mut probe, Duration::from_secs(15))?;
    ensure!(
        udp.sent == 300 && udp.lost == 0,
        "traffic between unchanged ports was disturbed by the reload: {udp:?}"
    );
    // A reload does not rewrite the operator's file.
    ensure!(
        std::fs::read_to_string(lab.config_path())? == config,
        "reload rewrote the config file"
    );
    Ok(())
}

#[test]
fn a_bad_file_is_refused_with_its_line_and_changes_nothing() -> Result<()> {
    let lab = lab!("cfgbad", "cfb", 183)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let running = config_show(&lab)?;
    let good = std::fs::read_to_string(lab.config_path())?;

    // A torn file: cut in the middle of a line.
    let torn = &good[..good.len() / 2];
    let broken = format!("{torn}\n[umem]\nframe_size = 3000\n");
    let path = lab.config_path().display().to_string();
    std::fs::write(lab.config_path(), &broken)?;
    let check = lab.ctl_err(&["config", "check", &path])?;
    ensure!(
        check.stderr.contains("line"),
        "config check names no line: {}",
        check.stderr
    );
    let reload = lab.ctl_err(&["config", "reload"])?;
    ensure!(
        reload.stderr.contains("line"),
        "reload error names no line: {}",
        reload.stderr
    );
    ensure!(
        config_show(&lab)? == running,
        "a refused reload changed the running config"
    );

    // Every kind of refused control request leaves the config as it was.
    lab.ctl_ok(&["tenant", "create", "web"])?;
    let running = config_show(&lab)?;
    let refused: &[&[&str]] = &[
        &["port", "add", "xsw-nope0"],
        &["port", "add", &h1.port],
        &["port", "add", "bad/name"],
        &["port", "del", "xsw-nope0"],
        &["port", "set", &h1.port, "--tenant", "nosuch"],
        &["port", "queues", &h1.port, "--workers", "9"],
        &["fdb", "add", "zz:zz", &h1.port],
        &["fdb", "add", "01:00:5e:00:00:01", &h1.port],
        &["fdb", "add", "02:00:00:00:00:99", "xsw-nope0"],
        &["fdb", "del", "02:00:00:00:00:99"],
        &["tenant", "create", "web"],
        &["tenant", "create", "bad name"],
        &["tenant", "delete", "default"],
        &["tenant", "delete", "nosuch"],
        &["vlan", "add", &h1.port, "100", "web"],
        &[
            "antispoof",
            "set",
            &h1.port,
            "--mac",
            "02:00:00:00:00:01",
            "--ip",
            "198.18.0.300",
        ],
        &["antispoof", "set", &h1.port, "--mac", "ff:ff:ff:ff:ff:ff"],
        &["acl", "add", "nosuch", "ingress", "deny"],
        &["acl", "add", "web", "sideways", "deny"],
        &["acl", "add", "web", "ingress", "maybe"],
        &[
            "acl",
            "add",
            "web",
            "ingress",
            "deny",
            "--dport",
            "2000-1000",
            "--proto",
            "tcp",
        ],
        &[
            "acl",
            "add",
            "web",
            "ingress",
            "deny",
            "--src",
            "198.18.0.5/24",
        ],
        &[
            "acl",
            "add",
            "web",
            "ingress",
            "deny",
            "--proto",
            "tcp",
            "--icmp-type",
            "8",
        ],
        &["acl", "del", "web", "ingress", "3"],
        &["acl", "move", "web", "ingress", "1", "2"],
        &["acl", "policy", "web", "ingress", "perhaps"],
        &["tenant", "grant", "default", "--uid", "1000"],
        &["tune", "--batch-size", "5000"],
        &["tune", "--rx-ring", "100"],
        &["tune", "--workers", "0,0"],
    ];
    for args in refused {
        lab.ctl_err(args)?;
        ensure!(
            config_show(&lab)? == running,
            "refused `xswctl {}` changed the running config",
            args.join(" ")
        );
    }
    lab.ping_all(&h1, &h2, 2)?;

    // At startup the same file stops xswd with the file and the line. (The
    // tenant created above saved the running config over it: write it again.)
    lab.kill_xswd()?;
    std::fs::write(lab.config_path(), &broken)?;
    let xswd = lab.bins.xswd()?.display().to_string();
    let socket = lab.dir.join("second.sock").display().to_string();
    let out = lab.run_in(
        &lab.sw,
        &[&xswd, "--socket", &socket, "--config", &path],
        Duration::from_secs(10),
    )?;
    ensure!(!out.success(), "xswd started on a broken config");
    ensure!(
        out.stderr.contains(&path) && out.stderr.contains("line"),
        "startup error lacks file/line: {}",
        out.stderr
    );
    Ok(())
}

fn worker_sleeps(lab: &Lab) -> Result<u64> {
    lab.stats()?["workers"][0]["sleeps"]
        .as_u64()
        .context("worker sleeps")
}

#[test]
fn live_tuning_takes_effect_and_is_saved() -> Result<()> {
    let lab = lab!("cfgtune", "cft", 184)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    // Idle and adaptive: the worker sleeps in poll(), which times out once a
    // second when nothing arrives, so 2.5 s holds at least two sleeps.
    let first = worker_sleeps(&lab)?;
    std::thread::sleep(Duration::from_millis(2500));
    ensure!(
        worker_sleeps(&lab)? > first,
        "an idle adaptive worker did not sleep"
    );

    let tuned = lab.ctl_json(&[
        "tune",
        "--batch-size",
        "32",
        "--mode",
        "busy-poll",
        "--mac-aging-secs",
        "1",
    ])?;
    ensure!(
        tuned["batch_size"] == 32 && tuned["mode"] == "busy-poll",
        "tune reply: {tuned}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let busy = worker_sleeps(&lab)?;
    std::thread::sleep(Duration::from_millis(800));
    ensure!(
        worker_sleeps(&lab)? == busy,
        "a busy-polling worker still sleeps"
    );
    // One-second aging. While h1 and h2 talk every 0.2 s their entries stay
    // (aging far too fast would empty the table between two pings) ...
    let learned = |lab: &Lab| -> Result<usize> {
        Ok(lab
            .fdb()?
            .iter()
            .filter(|e| {
                e["static"] == false && (e["mac"] == h1.mac.as_str() || e["mac"] == h2.mac.as_str())
            })
            .count())
    };
    let mut pings = lab.spawn_ping(&h1, &h2.ip, 20, "0.2")?;
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..5 {
        let n = learned(&lab)?;
        ensure!(
            n == 2,
            "{n} of h1 and h2 in the table while they talk: {:?}",
            lab.fdb()?
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let s = lab.ping_result(&mut pings, Duration::from_secs(10))?;
    ensure!(s.received == 20, "pings lost with one-second aging: {s:?}");
    ensure!(
        learned(&lab)? == 2,
        "h1 and h2 not learned when the pings stopped"
    );
    // ... and once they are silent, their MACs leave the table.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if learned(&lab)? == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "learned MACs did not age out with mac_aging_secs = 1"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("batch_size = 32")
            && saved.contains("mode = \"busy-poll\"")
            && saved.contains("mac_aging_secs = 1"),
        "tuning not saved:\n{saved}"
    );
    let before = config_show(&lab)?;
    lab.ctl_err(&["tune", "--batch-size", "0"])?;
    lab.ctl_err(&["tune", "--mode", "sideways"])?;
    ensure!(
        config_show(&lab)? == before,
        "a refused tune changed the config"
    );
    // Back to adaptive: sleeping resumes.
    lab.ctl_ok(&["tune", "--mode", "adaptive"])?;
    std::thread::sleep(Duration::from_millis(300));
    let resumed = worker_sleeps(&lab)?;
    std::thread::sleep(Duration::from_millis(2500));
    ensure!(
        worker_sleeps(&lab)? > resumed,
        "the worker did not go back to sleeping"
    );
    Ok(())
}

#[test]
fn workers_and_rings_change_live_and_every_port_comes_back() -> Result<()> {
    let lab = lab!("cfgrb", "cfw", 186)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.ctl_ok(&[
        "acl", "add", "default", "ingress", "allow", "--proto", "icmp",
    ])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 2)?;
    let icmp_hits = |lab: &Lab| -> Result<u64> {
        lab.ctl_json(&["acl", "list", "default"])?["ingress"]["rules"][0]["hits"]
            .as_u64()
            .context("hits of the ICMP rule")
    };
    let hits_before = icmp_hits(&lab)?;
    ensure!(
        hits_before > 0,
        "the ICMP rule saw no hits before the change"
    );

    let reply = lab.ctl_json(&["tune", "--workers", "0,1"])?;
    ensure!(
        reply["recreated_queues"] == 2,
        "tune --workers reply: {reply}"
    );
    // Nothing pinged since: the rebuilt workers show the old count exactly.
    let hits_rebuilt = icmp_hits(&lab)?;
    ensure!(
        hits_rebuilt == hits_before,
        "ACL hits changed across the rebuild without traffic: {hits_before} -> {hits_rebuilt}"
    );
    let workers: Vec<u64> = lab
        .ports()?
        .iter()
        .flat_map(|p| p["queues"].as_array().cloned().unwrap_or_default())
        .filter_map(|q| q["worker"].as_u64())
        .collect();
    ensure!(
        workers.contains(&0) && workers.contains(&1),
        "queues not spread over both workers: {workers:?}"
    );
    ensure!(
        lab.stats()?["workers"].as_array().map_or(0, |w| w.len()) == 2,
        "stats do not show two workers"
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let hits_reachable = icmp_hits(&lab)?;
    lab.ping_all(&h1, &h2, 3)?;
    let hits_after = icmp_hits(&lab)?;
    // Three requests and three replies, each entering the switch once.
    ensure!(
        hits_after == hits_reachable + 6,
        "the rebuilt workers counted {} ICMP hits for 3 pings (expected 6)",
        hits_after - hits_reachable
    );

    let reply = lab.ctl_json(&["tune", "--rx-ring", "512", "--tx-ring", "512"])?;
    ensure!(
        reply["recreated_queues"] == 2 && reply["umem"]["rx_ring"] == 512,
        "tune rings reply: {reply}"
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 2)?;
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("workers = [\n    0,\n    1,\n]") || saved.contains("workers = [0, 1]"),
        "workers not saved:\n{saved}"
    );
    ensure!(
        saved.contains("rx_ring = 512"),
        "rx_ring not saved:\n{saved}"
    );

    let before = config_show(&lab)?;
    lab.ctl_err(&["tune", "--workers", "0,57"])?;
    lab.ctl_err(&["tune", "--rx-ring", "1000"])?;
    ensure!(
        config_show(&lab)? == before,
        "a refused tune changed the config"
    );
    lab.ping_all(&h1, &h2, 2)?;
    Ok(())
}

#[test]
fn mac_limits_stop_one_port_from_filling_the_table() -> Result<()> {
    let lab = lab!("cfgml", "cfm", 187)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ctl_ok(&["tune", "--mac-limit-per-port", "2"])?;

    // h1 sprays frames from eight made-up source MACs.
    let nettool = lab.bins.nettool.display().to_string();
    for i in 0..8u8 {
        let frame = format!("ffffffffffff02aa000000{i:02x}88b5{}", "00".repeat(46));
        let out = lab.run_in(
            &h1.ns,
            &[
                &nettool, "raw-send", "--iface", &h1.ifname, "--frame", &frame, "--count", "1",
            ],
            Duration::from_secs(5),
        )?;
        ensure!(out.success(), "raw-send: {}", out.describe());
    }
    std::thread::sleep(Duration::from_millis(300));
    let on_h1 = lab
        .fdb()?
        .iter()
        .filter(|e| e["port"] == h1.port.as_str())
        .count();
    ensure!(
        on_h1 == 2,
        "{} holds {on_h1} MACs with a limit of 2",
        h1.port
    );
    let stats = lab.stats()?;
    let refused = stats["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|p| p["name"] == h1.port.as_str()))
        .and_then(|p| p["learning_refused"].as_u64())
        .context("learning_refused")?;
    ensure!(
        refused >= 7,
        "only {refused} refusals counted on {}",
        h1.port
    );
    // Another port still learns, and traffic still flows.
    lab.ping_all(&h2, &h1, 2)?;
    ensure!(
        !lab.fdb_entries(&h2.mac)?.is_empty(),
        "h2 not learned while h1's port was full"
    );
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("mac_limit_per_port = 2"),
        "limit not saved:\n{saved}"
    );
    Ok(())
}

#[test]
fn queue_placement_and_poll_budget_are_tunable() -> Result<()> {
    let lab = lab!("cfgqp", "cfq", 188)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&format!(
        "{}\n[dataplane]\nworkers = [0, 1]\n",
        Lab::config_with_ports(&[&h1.port, &h2.port])
    ))?;
    let worker_of = |port: &str| -> Result<u64> {
        lab.port(port)?
            .and_then(|p| p["queues"][0]["worker"].as_u64())
            .context("queue worker")
    };
    ensure!(
        worker_of(&h1.port)? != worker_of(&h2.port)?,
        "two single-queue ports should start on different workers"
    );

    // Put both ports on worker 1: frames between them then never cross workers.
    let target = worker_of(&h2.port)?.to_string();
    lab.ctl_ok(&["port", "queues", &h1.port, "--workers", &target])?;
    ensure!(
        worker_of(&h1.port)? == worker_of(&h2.port)?,
        "port queues did not move h1's queue"
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;
    let saved = std::fs::read_to_string(lab.config_path())?;
    ensure!(
        saved.contains("queue_workers"),
        "queue placement not saved:\n{saved}"
    );
    lab.ctl_err(&["port", "queues", &h1.port, "--workers", "5"])?;

    // The poll budget is how many empty turns an idle adaptive worker spins
    // before it sleeps: a budget of 1,000,000 costs the idle workers about
    // 5,000 times the CPU per sleep that the default 200 does (they still
    // sleep, just after a long spin). The ratio, not a duration, is asserted:
    // it hardly depends on the machine's speed.
    let pid = lab.xswd_pid().context("xswd pid")?;
    let cpu_per_sleep = |lab: &Lab| -> Result<f64> {
        let sleeps = |lab: &Lab| -> Result<u64> {
            Ok(lab.stats()?["workers"]
                .as_array()
                .context("workers")?
                .iter()
                .filter_map(|w| w["sleeps"].as_u64())
                .sum())
        };
        std::thread::sleep(Duration::from_millis(300));
        let (threads_before, sleeps_before) = (threads::threads(pid)?, sleeps(lab)?);
        std::thread::sleep(Duration::from_secs(3));
        let spent: u64 = threads::since(&threads_before, &threads::threads(pid)?)
            .iter()
            .filter(|t| t.name.starts_with("xsw-worker"))
            .map(|t| t.cpu_ns)
            .sum();
        let slept = sleeps(lab)? - sleeps_before;
        Ok(spent as f64 / slept.max(1) as f64)
    };
    lab.ctl_ok(&["tune", "--poll-budget", "200"])?;
    let short = cpu_per_sleep(&lab)?;
    lab.ctl_ok(&["tune", "--poll-budget", "1000000"])?;
    let long = cpu_per_sleep(&lab)?;
    eprintln!("idle workers' CPU per sleep: {short:.0} ns at budget 200, {long:.0} ns at 1000000");
    ensure!(
        long > 20.0 * short,
        "a poll budget of 1000000 did not make idle workers spin longer: {short:.0} ns of CPU per sleep at 200, {long:.0} ns at 1000000"
    );
    lab.ctl_ok(&["tune", "--poll-budget", "200"])?;
    lab.ctl_err(&["tune", "--poll-budget", "0"])?;
    Ok(())
}

#[test]
fn a_reload_applies_dataplane_changes_too() -> Result<()> {
    let lab = lab!("cfgrd", "cfd", 189)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let mut config = std::fs::read_to_string(lab.config_path())?;
    config.push_str("\n[dataplane]\nworkers = [0, 1]\nbatch_size = 16\n\n[umem]\nrx_ring = 512\n");
    std::fs::write(lab.config_path(), &config)?;
    let report = lab.ctl_json(&["config", "reload"])?;
    ensure!(
        report["failed"].as_array().is_some_and(|f| f.is_empty()),
        "reload failures: {report}"
    );
    let shown = config_show(&lab)?;
    ensure!(
        shown.contains("batch_size = 16") && shown.contains("rx_ring = 512"),
        "reload not applied:\n{shown}"
    );
    ensure!(
        lab.stats()?["workers"].as_array().map_or(0, |w| w.len()) == 2,
        "the reload did not start two workers"
    );
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 2)?;
    Ok(())
}

/// The config of the reload test: `web` and `app`/`db` tenants, ports and
/// static MACs as given.
fn reload_config(tenants: &[&str], ports: &[String], fdb: &[(&str, &str)]) -> String {
    let mut c = String::new();
    for t in tenants {
        c.push_str(&format!("[[tenant]]\nname = \"{t}\"\n\n"));
    }
    for p in ports {
        c.push_str(p);
        c.push('\n');
    }
    for (mac, port) in fdb {
        c.push_str(&format!("[[fdb]]\nmac = \"{mac}\"\nport = \"{port}\"\n\n"));
    }
    c
}

/// A reload that removes and changes things: a port removed, a port moved to
/// another tenant, a guard changed, a trunk's VLAN changed, a static MAC
/// replaced, a tenant deleted, and one port the kernel refuses. The report
/// names the refused step only, everything else is applied, and traffic
/// shows each change.
#[test]
fn a_reload_removes_and_changes_ports_tenants_vlans_and_static_macs() -> Result<()> {
    let lab = lab!("cfgreload2", "cfx", 213)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    let h4 = lab.add_veth_host("h4", 4)?;
    let tr = lab.add_veth_host("tr", 9)?;
    let access = |h: &xsw_integration::Host, tenant: &str, guard_ip: Option<&str>| {
        let mut p = format!("[[port]]\nname = \"{}\"\ntenant = \"{tenant}\"\n", h.port);
        if let Some(ip) = guard_ip {
            p.push_str(&format!(
                "[port.antispoof]\nmacs = [\"{}\"]\nipv4 = [\"{ip}/32\"]\n",
                h.mac
            ));
        }
        p
    };
    let trunk = |vid: u16| {
        format!(
            "[[port]]\nname = \"{}\"\ntrunk = true\nvlans = [{{ vlan = {vid}, tenant = \"web\" }}]\n",
            tr.port
        )
    };
    let (old_static, new_static) = ("02:5e:00:00:00:01", "02:5e:00:00:00:02");
    lab.start_xswd(&reload_config(
        &["web", "db"],
        &[
            access(&h1, "web", None),
            access(&h2, "web", Some(&h2.ip)),
            access(&h3, "web", None),
            access(&h4, "web", None),
            trunk(100),
        ],
        &[(old_static, &h2.port)],
    ))?;
    for h in [&h1, &h2, &h3] {
        lab.wait_reachable(h, &h4, Duration::from_secs(5))?;
    }

    // The new file. The bridge cannot take a native XDP program: the kernel
    // refuses that one step.
    let bridge = lab.port_name("br");
    cmd::ns_ok(&lab.sw, &["ip", "link", "add", &bridge, "type", "bridge"])?;
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &bridge, "up"])?;
    std::fs::write(
        lab.config_path(),
        reload_config(
            &["web", "app"],
            &[
                access(&h1, "app", None),
                access(&h2, "web", Some(&lab.ip(50))),
                access(&h4, "web", None),
                trunk(200),
                format!(
                    "[[port]]\nname = \"{bridge}\"\nhook = \"xdp\"\nxdp_mode = \"native\"\ntenant = \"web\"\n"
                ),
            ],
            &[(new_static, &h1.port)],
        ),
    )?;
    let report = lab.ctl_json(&["config", "reload"])?;
    let failed: Vec<String> = report["failed"]
        .as_array()
        .context("failed list")?
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect();
    ensure!(
        failed.len() == 1 && failed[0].contains(&bridge),
        "the reload should report exactly the refused port {bridge} as failed: {report}"
    );
    let applied = report["applied"].to_string();
    for step in [
        format!("remove port {}", h3.port),
        "delete tenant db".to_string(),
        format!("remove static MAC {old_static}"),
        format!("add static MAC {new_static}"),
    ] {
        ensure!(
            applied.contains(&step),
            "step {step:?} not reported applied: {report}"
        );
    }

    // h3 is gone; db is gone, app exists; the static MACs were swapped.
    ensure!(lab.port(&h3.port)?.is_none(), "{} still a port", h3.port);
    ensure!(
        lab.port(&bridge)?.is_none(),
        "the refused {bridge} is listed as a port"
    );
    ensure!(
        lab.tenant("db")?.is_none() && lab.tenant("app")?.is_some(),
        "tenants after reload: {:?}",
        lab.tenants()?
    );
    ensure!(
        lab.fdb_entries(old_static)?.is_empty(),
        "{old_static} still in the table"
    );
    let e = lab.fdb_entries(new_static)?;
    ensure!(
        e.len() == 1 && e[0]["port"] == h1.port.as_str() && e[0]["static"] == true,
        "{new_static} should be static on {}: {e:?}",
        h1.port
    );
    let h3_ping = lab.ping(&h3, &h4.ip, 2)?;
    ensure!(
        h3_ping.received == 0,
        "removed port {} still forwards: {h3_ping:?}",
        h3.port
    );

    // h1 moved to app: it no longer reaches h4 in web.
    let moved = lab.ping(&h1, &h4.ip, 2)?;
    ensure!(
        moved.received == 0,
        "h1 (now in app) still reaches h4 (web): {moved:?}"
    );
    // h2's guard now allows another address only: its own is spoofed.
    let spoofed = lab.drop_count(&h2.port, "spoofed_ip")?;
    let guarded = lab.ping(&h2, &h4.ip, 3)?;
    ensure!(
        guarded.received == 0,
        "h2's old address passes the new guard: {guarded:?}"
    );
    ensure!(
        lab.drop_count(&h2.port, "spoofed_ip")? >= spoofed + 3,
        "h2's pings were not dropped as spoofed_ip: {}",
        lab.drops(&h2.port)?
    );
    // The trunk carries web on VID 200 now, and no longer on 100.
    let st = lab.mac(100);
    let bcast = |vid: u16| {
        frames::eth(
            "ff:ff:ff:ff:ff:ff",
            &st,
            &[(frames::TPID_8021Q, vid)],
            frames::ETH_EXPERIMENTAL,
            format!("vid {vid}").as_bytes(),
        )
    };
    let mut at_h4 = lab.capture_as(&h4, "vid200", &format!("ether src {st}"), 1)?;
    lab.raw_send(&tr, &bcast(200), 1)?;
    lab.expect_frame(
        &mut at_h4,
        Duration::from_secs(3),
        "a frame tagged 200 at h4 (web)",
    )?;
    let unknown = lab.drop_count(&tr.port, "vlan_unknown")?;
    let mut at_h4 = lab.capture_as(&h4, "vid100", &format!("ether src {st}"), 1)?;
    lab.raw_send(&tr, &bcast(100), 2)?;
    lab.expect_drops(&tr.port, "vlan_unknown", unknown, 2)?;
    lab.expect_silence(
        &mut at_h4,
        Duration::from_millis(500),
        "a frame tagged 100 reached h4",
    )?;
    Ok(())
}
