//! One validator: a config that `xswctl config check` accepts is one xswd
//! applies, and one it refuses is refused the same way (the same message,
//! naming the file, line and field) at startup and on reload, before
//! anything on the host is touched. Ports whose interface does not exist
//! yet are kept as `missing` and attached when the interface appears.

use anyhow::{ensure, Context, Result};
use std::time::{Duration, Instant};
use xsw_integration::{cmd, lab, Lab};

/// Interface names in the switch namespace, sorted.
fn links(lab: &Lab) -> Result<Vec<String>> {
    let out = cmd::ns_ok(&lab.sw, &["ip", "-o", "link", "show"])?;
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    names.sort();
    Ok(names)
}

/// The message after a tool's own prefix ("error: ", "xswd: ").
fn message<'a>(stderr: &'a str, prefix: &str) -> Option<&'a str> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(str::trim)
}

#[test]
fn invalid_configs_are_refused_alike_by_check_startup_and_reload() -> Result<()> {
    let lab = lab!("valid", "vld", 231)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let good = Lab::config_with_ports(&[&h1.port, &h2.port]);
    lab.start_xswd(&good)?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let running = lab.ctl_ok(&["config", "show"])?;

    // Each config starts with a tap xsw would create: if anything touched
    // the host before the whole file was checked, the tap would be left.
    let tap = format!("{}-tap", lab.tag);
    let prefix = format!("[[port]]\nname = \"{tap}\"\ncreate_tap = true\n\n");
    let p = &h1.port;
    // (config after the prefix, line of the error, field, words of the reason)
    let table: Vec<(String, usize, &str, &str)> = vec![
        (
            format!("[[tenant]]\nname = \"t\"\n\n[[port]]\nname = \"{p}\"\ntrunk = true\nvlans = [{{ vlan = 0, tenant = \"t\" }}]\n"),
            11,
            "port[1].vlans[0].vlan",
            "VLAN ID 0 is out of range",
        ),
        (
            format!("[[port]]\nname = \"{p}\"\n[port.antispoof]\nmacs = [\"ff:ff:ff:ff:ff:ff\"]\n"),
            7,
            "port[1].antispoof",
            "broadcast",
        ),
        (
            format!("[[port]]\nname = \"{p}\"\ntenant = \"nosuch\"\n"),
            7,
            "port[1].tenant",
            "no tenant named nosuch",
        ),
        (
            "[[tenant]]\nname = \"t\"\ngrant_uids = [1000, 0]\n".to_string(),
            7,
            "tenant[0].grant_uids",
            "uid 0 is root",
        ),
        (
            format!("[[port]]\nname = \"{p}\"\ntap_owner = 1000\n"),
            7,
            "port[1].tap_owner",
            "only goes with create_tap",
        ),
        (
            format!("[[port]]\nname = \"{p}\"\nqueue_workers = [3]\n"),
            7,
            "port[1].queue_workers",
            "names worker 3",
        ),
        (
            format!("[[port]]\nname = \"{p}\"\n\n[[fdb]]\nmac = \"01:00:5e:00:00:01\"\nport = \"{p}\"\n"),
            9,
            "fdb[0].mac",
            "not a unicast MAC",
        ),
        (
            format!("[[port]]\nname = \"{p}\"\n[[port]]\nname = \"{p}\"\n"),
            8,
            "port[2].name",
            "listed twice",
        ),
        (
            "[[port]]\nname = \"t1\"\n[port.tunnel]\nlocal = \"127.0.0.1\"\nremote = [\"127.0.0.2\"]\nvni = 7\n\n[[port]]\nname = \"t2\"\n[port.tunnel]\nlocal = \"127.0.0.1\"\nremote = [\"127.0.0.3\"]\nvni = 7\n".to_string(),
            17,
            "port[2].tunnel.vni",
            "VNI 7 on 127.0.0.1:4789 is already tunnel t1's",
        ),
    ];

    let path = lab.config_path().display().to_string();
    let xswd = lab.bins.xswd()?.display().to_string();
    let other_socket = lab.dir.join("second.sock").display().to_string();
    let before = links(&lab)?;
    for (body, line, field, words) in &table {
        let text = format!("{prefix}{body}");
        let want = format!("{path}: line {line}: {field}: ");
        std::fs::write(lab.config_path(), &text)?;

        let check = lab.ctl_err(&["config", "check", &path])?;
        let checked = message(&check.stderr, "error: ")
            .with_context(|| format!("config check printed no error: {}", check.describe()))?
            .to_string();
        ensure!(
            checked.starts_with(&want) && checked.contains(words),
            "config check of\n{text}\nsaid {checked:?}, want {want:?}...{words:?}"
        );

        let reload = lab.ctl_err(&["config", "reload"])?;
        ensure!(
            message(&reload.stderr, "error: ") == Some(checked.as_str()),
            "reload said {:?}, config check {checked:?}",
            reload.stderr
        );
        ensure!(
            lab.ctl_ok(&["config", "show"])? == running,
            "a refused reload changed the running config ({text})"
        );

        let start = lab.run_in(
            &lab.sw,
            &[&xswd, "--socket", &other_socket, "--config", &path],
            Duration::from_secs(10),
        )?;
        ensure!(!start.success(), "xswd started on\n{text}");
        ensure!(
            message(&start.stderr, "xswd: ") == Some(checked.as_str()),
            "startup said {:?}, config check {checked:?}",
            start.stderr
        );
        let after = links(&lab)?;
        ensure!(
            after == before,
            "interfaces changed by refusing\n{text}\nbefore {before:?}\nafter  {after:?}"
        );
    }
    lab.ping_all(&h1, &h2, 2)?;
    Ok(())
}

#[test]
fn a_config_the_host_refuses_leaves_no_tap_behind() -> Result<()> {
    let lab = lab!("valhost", "vlh", 232)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    // Valid as a file, refused by the host: a tap cannot be created where a
    // veth of that name exists. The tap of the first port was created by then.
    let tap = format!("{}-tap", lab.tag);
    let text = format!(
        "[[port]]\nname = \"{tap}\"\ncreate_tap = true\n\n[[port]]\nname = \"{}\"\ncreate_tap = true\n",
        h1.port
    );
    std::fs::write(lab.config_path(), &text)?;
    let path = lab.config_path().display().to_string();
    let check = lab.ctl(&["config", "check", &path])?;
    ensure!(check.success(), "config check: {}", check.describe());
    let before = links(&lab)?;
    let xswd = lab.bins.xswd()?.display().to_string();
    let socket = lab.socket().display().to_string();
    let start = lab.run_in(
        &lab.sw,
        &[&xswd, "--socket", &socket, "--config", &path],
        Duration::from_secs(10),
    )?;
    ensure!(!start.success(), "xswd started: {}", start.describe());
    let after = links(&lab)?;
    ensure!(
        after == before,
        "a refused start left interfaces behind:\nbefore {before:?}\nafter  {after:?}"
    );
    ensure!(
        start.stderr.contains(&format!("{path}: line 5: "))
            && start.stderr.contains("port[1]")
            && start.stderr.contains(&h1.port),
        "startup error names not the file, line and port: {}",
        start.stderr
    );
    Ok(())
}

fn port_link(lab: &Lab, port: &str) -> Result<String> {
    let ports = lab.ctl_json(&["port", "list"])?;
    let row = ports
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == port))
        .with_context(|| format!("{port} not in port list: {ports}"))?;
    Ok(row["link"].as_str().unwrap_or("").to_string())
}

fn wait_link(lab: &Lab, port: &str, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let link = port_link(lab, port)?;
        if (want == "attached" && link != "missing") || link == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{port} is {link}, not {want}, after 10 s\nxswd log:\n{}",
            lab.xswd_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_port_whose_interface_is_missing_waits_for_it() -> Result<()> {
    let lab = lab!("valmiss", "vlm", 233)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let missing = lab.port_name("h2");
    lab.start_xswd(&format!(
        "[[tenant]]\nname = \"web\"\n\n[[port]]\nname = \"{}\"\ntenant = \"web\"\n\n[[port]]\nname = \"{missing}\"\ntenant = \"web\"\n\n[[fdb]]\nmac = \"02:00:00:00:00:42\"\nport = \"{missing}\"\ntenant = \"web\"\n",
        h1.port
    ))?;
    ensure!(
        port_link(&lab, &missing)? == "missing",
        "port list: {}",
        lab.ctl_ok(&["port", "list"])?
    );
    // It stays in the config, and its tenant cannot be deleted under it.
    ensure!(lab.ctl_ok(&["config", "show"])?.contains(&missing));
    lab.ctl_err(&["tenant", "delete", "web"])?;

    // The VM starts: its interface appears and the port is attached.
    let h2 = lab.add_veth_host("h2", 2)?;
    wait_link(&lab, &missing, "attached")?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;
    let fdb = lab.ctl_json(&["fdb", "show", "--tenant", "web"])?;
    ensure!(
        fdb.as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["mac"] == "02:00:00:00:00:42"
                && r["port"] == missing.as_str()
                && r["static"] == true)),
        "the static MAC did not follow the port: {fdb}"
    );

    // The VM stops: the port is missing again, and comes back with it.
    cmd::sh_ok(&["ip", "-n", &lab.sw, "link", "del", &missing])?;
    wait_link(&lab, &missing, "missing")?;
    ensure!(lab.ctl_ok(&["config", "show"])?.contains(&missing));
    lab.create_veth(&h2)?;
    wait_link(&lab, &missing, "attached")?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&h1, &h2, 3)?;

    // A missing port can be deleted like any other.
    cmd::sh_ok(&["ip", "-n", &lab.sw, "link", "del", &missing])?;
    wait_link(&lab, &missing, "missing")?;
    lab.ctl_ok(&["port", "del", &missing])?;
    ensure!(!lab.ctl_ok(&["config", "show"])?.contains(&missing));
    ensure!(lab.xswd_running(), "xswd died");
    Ok(())
}

#[test]
fn live_tuning_cannot_leave_a_port_on_a_worker_that_is_gone() -> Result<()> {
    let lab = lab!("valtune", "vlt", 235)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    lab.start_xswd(&format!(
        "[dataplane]\nworkers = [0, 1]\n\n[[port]]\nname = \"{}\"\nhook = \"xdp\"\nqueue_workers = [1]\n",
        h1.port
    ))?;
    let refused = lab.ctl_err(&["tune", "--workers", "0"])?;
    ensure!(
        refused.stderr.contains("port[0].queue_workers") && refused.stderr.contains("worker 1"),
        "tune --workers 0 said: {}",
        refused.stderr
    );
    // The saved file is still one xswd can load.
    let path = lab.config_path().display().to_string();
    let check = lab.ctl(&["config", "check", &path])?;
    ensure!(check.success(), "config check: {}", check.describe());
    ensure!(
        lab.ctl_ok(&["config", "show"])?
            .contains("workers = [\n    0,\n    1,\n]")
            || lab
                .ctl_ok(&["config", "show"])?
                .contains("workers = [0, 1]"),
        "workers changed: {}",
        lab.ctl_ok(&["config", "show"])?
    );
    Ok(())
}
