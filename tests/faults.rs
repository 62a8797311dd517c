//! Faults under traffic (issue 10, item 4): the parts around the switch fail while
//! frames flow, and the switch keeps forwarding for everyone else, loses no
//! configuration, and picks the failed part up again when it comes back.
//!
//! Each test runs a steady UDP stream between two bystanders through the fault and
//! bounds its loss (1%: a fault elsewhere must not stall the workers), and checks the
//! state afterwards against what the fault should have left.

use anyhow::{bail, ensure, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xsw_integration::cmd::{self, Proc};
use xsw_integration::users::TestUser;
use xsw_integration::{lab, Host, Lab};

/// A bystanders' stream: 1,000 datagrams 3 ms apart (about 3 s), echoed back.
struct Stream {
    probe: Proc,
    _echo: Proc,
}

fn start_stream(lab: &Lab, from: &Host, to: &Host) -> Result<Stream> {
    let (echo, port) = lab.start_udp_echo(to, 15)?;
    let probe = lab.spawn_udp_probe(from, &to.ip, port, 1000, 3)?;
    Ok(Stream { probe, _echo: echo })
}

/// The stream went through the fault: everything sent, nothing corrupt, at most 1% lost.
fn check_stream(lab: &Lab, mut stream: Stream, during: &str) -> Result<()> {
    let u = lab.probe_result(&mut stream.probe, Duration::from_secs(15))?;
    println!("bystanders' stream during {during}: {u:?}");
    ensure!(
        u.sent == 1000 && u.corrupt == 0,
        "stream during {during}: {u:?}"
    );
    ensure!(
        u.lost <= 10,
        "the bystanders' stream lost {} of 1000 (longest run {}) during {during}",
        u.lost,
        u.max_consecutive_lost
    );
    Ok(())
}

/// Waits until `from` reaches `to` again; returns how long that took.
fn time_to_reach(lab: &Lab, from: &Host, to: &Host, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    lab.wait_reachable(from, to, timeout)?;
    Ok(started.elapsed())
}

fn port_names(lab: &Lab) -> Result<Vec<String>> {
    let mut names: Vec<String> = lab
        .ports()?
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// The port names a config file lists, sorted.
fn ports_in_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    let mut names: Vec<String> = value
        .get("port")
        .and_then(|p| p.as_array())
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

#[test]
fn a_guest_that_closes_and_reopens_its_tap_comes_back() -> Result<()> {
    let lab = lab!("tapreopen", "ftr", 210)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let tap = lab.create_tap("g1")?;
    let g1 = lab.attach_guest("g1", 10, &tap)?;
    let config = format!(
        "{}[[port]]\nname = \"{tap}\"\n",
        Lab::config_with_ports(&[&h1.port, &h2.port])
    );
    lab.start_xswd(&config)?;
    lab.wait_reachable(&h1, &g1, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    let stream = start_stream(&lab, &h1, &h2)?;
    std::thread::sleep(Duration::from_millis(500));
    // The VM shuts down: its side of the tap closes (the tap stays, as with QEMU's
    // persistent taps), then it starts again on the same tap.
    lab.stop_guest(&g1)?;
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        lab.ping(&h1, &g1.ip, 1)?.received == 0,
        "g1 answered while its tap was closed"
    );
    let g1 = lab.attach_guest("g1", 10, &tap)?;
    let back = time_to_reach(&lab, &h1, &g1, Duration::from_secs(10))?;
    check_stream(&lab, stream, "a guest closing and reopening its tap")?;
    println!("g1 reachable again {back:?} after reopening its tap");
    ensure!(lab.xswd_running(), "xswd died; log:\n{}", lab.xswd_log());
    lab.ping_all(&g1, &h2, 3)?;
    Ok(())
}

#[test]
fn a_link_set_down_and_up_under_traffic_stops_then_resumes() -> Result<()> {
    let lab = lab!("linkflap", "flf", 211)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &h3.port]))?;
    lab.wait_reachable(&h1, &h3, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    let stream = start_stream(&lab, &h1, &h2)?;
    std::thread::sleep(Duration::from_millis(300));
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &h3.port, "down"])?;
    // Frames for h3 while its port is down are dropped and counted as link_down.
    let before = lab.stats()?;
    let link_down = |stats: &serde_json::Value| -> u64 {
        stats["ports"]
            .as_array()
            .map(|ports| {
                ports
                    .iter()
                    .map(|p| p["drops"]["link_down"].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    let ping = lab.ping(&h1, &h3.ip, 3)?;
    ensure!(
        ping.received == 0,
        "h3 answered while its port was down: {ping:?}"
    );
    let after = lab.stats()?;
    ensure!(
        link_down(&after) > link_down(&before),
        "no link_down drop counted while h3's port was down: {after}"
    );
    let port = lab
        .port(&h3.port)?
        .context("h3's port vanished from port list")?;
    println!("h3's port while down: {port}");
    cmd::ns_ok(&lab.sw, &["ip", "link", "set", &h3.port, "up"])?;
    let back = time_to_reach(&lab, &h1, &h3, Duration::from_secs(10))?;
    println!("h3 reachable {back:?} after its link came up");
    check_stream(&lab, stream, "a link flap on another port")?;
    Ok(())
}

#[test]
fn a_veth_deleted_under_traffic_leaves_the_switch_forwarding() -> Result<()> {
    let lab = lab!("vethgone", "fvg", 212)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port, &h3.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    lab.wait_reachable(&h1, &h3, Duration::from_secs(5))?;

    let stream = start_stream(&lab, &h1, &h2)?;
    std::thread::sleep(Duration::from_millis(500));
    // Not `port del`: the interface disappears under xswd, as when a container goes.
    cmd::ns_ok(&lab.sw, &["ip", "link", "del", &h3.port])?;
    check_stream(&lab, stream, "the deletion of another port's veth")?;
    ensure!(lab.xswd_running(), "xswd died; log:\n{}", lab.xswd_log());
    // The port stays configured (the file is the operator's intent), shown as missing.
    let port = lab
        .port(&h3.port)?
        .context("the deleted veth's port left the port list")?;
    println!("port of the deleted veth: {port}");
    ensure!(
        port["link"] == "missing",
        "the deleted veth's port is not shown as missing: {port}"
    );
    ensure!(
        ports_in_file(&lab.config_path())?.contains(&h3.port),
        "the deleted veth's port left the config file"
    );
    lab.ping_all(&h1, &h2, 3)?;
    Ok(())
}

#[test]
fn sigkill_under_traffic_then_restart_restores_everything() -> Result<()> {
    let lab = lab!("killrestart", "fkr", 213)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port]))?;
    // Added at run time: the restart must find it in the file xswd saved.
    lab.port_add(&h2.port)?;
    lab.ctl_ok(&["fdb", "add", "02:00:00:00:99:01", &h2.port])?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;
    let ports_before = port_names(&lab)?;

    let (_echo, port) = lab.start_udp_echo(&h2, 20)?;
    let mut probe = lab.spawn_udp_probe(&h1, &h2.ip, port, 2000, 3)?;
    std::thread::sleep(Duration::from_millis(500));
    lab.kill_xswd()?;
    let killed = Instant::now();
    lab.relaunch_xswd()?;
    let back = time_to_reach(&lab, &h1, &h2, Duration::from_secs(10))?;
    let total = killed.elapsed();
    let u = lab.probe_result(&mut probe, Duration::from_secs(20))?;
    println!("restart: xswd answered and traffic was back {total:?} after SIGKILL ({back:?} after the restart); stream: {u:?}");
    ensure!(
        u.corrupt == 0 && u.received > 0,
        "stream across the restart: {u:?}"
    );
    ensure!(
        port_names(&lab)? == ports_before,
        "ports after restart {:?}, before {ports_before:?}",
        port_names(&lab)?
    );
    let statics = lab.fdb_entries("02:00:00:00:99:01")?;
    ensure!(
        statics.len() == 1,
        "the static MAC did not survive the restart: {:?}",
        lab.fdb()?
    );
    // One program per port: none of the dead instance's left beside the new ones.
    let programs = lab.programs_attached()?;
    for name in [&h1.port, &h2.port] {
        let on_port = programs
            .iter()
            .filter(|p| p.starts_with(&format!("{name} ")))
            .count();
        ensure!(
            on_port == 1,
            "{on_port} programs on {name} after the restart: {programs:?}"
        );
    }
    lab.ping_all(&h1, &h2, 3)?;
    Ok(())
}

/// Sends `request` on a fresh connection and returns the reply line.
fn raw_request(socket: &Path, request: &[u8]) -> Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

#[test]
fn a_control_socket_flood_does_not_disturb_forwarding() -> Result<()> {
    let lab = lab!("ctlflood", "fcf", 214)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    lab.start_xswd(&Lab::config_with_ports(&[&h1.port, &h2.port]))?;
    lab.wait_reachable(&h1, &h2, Duration::from_secs(5))?;

    let stream = start_stream(&lab, &h1, &h2)?;
    let socket = lab.socket();
    // Four threads, each opening 100 connections that send garbage, broken JSON, an
    // unknown command or a wrong type; every one must get a refusal with a reason.
    let garbage: [&[u8]; 4] = [
        b"\x00\xff\xfe garbage\n",
        b"{\"version\":1,\"cmd\":\n",
        b"{\"version\":1,\"cmd\":\"port_explode\"}\n",
        b"{\"version\":1,\"cmd\":\"port_del\",\"name\":7}\n",
    ];
    let threads: Vec<_> = garbage
        .iter()
        .map(|request| {
            let socket: PathBuf = socket.clone();
            let request = request.to_vec();
            std::thread::spawn(move || -> Result<u32> {
                let mut refused = 0;
                for _ in 0..100 {
                    let reply = raw_request(&socket, &request)?;
                    let value: serde_json::Value = serde_json::from_str(reply.trim())
                        .with_context(|| format!("reply to garbage is not JSON: {reply:?}"))?;
                    if value["ok"] == false
                        && value["error"]["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty())
                    {
                        refused += 1;
                    } else {
                        bail!("garbage {request:?} got {reply}");
                    }
                }
                Ok(refused)
            })
        })
        .collect();
    let mut refused = 0;
    for thread in threads {
        refused += thread
            .join()
            .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    }
    ensure!(refused == 400, "{refused} of 400 bad requests refused");

    // An unprivileged user holding connections: the per-uid cap (8) holds, the rest are
    // closed unanswered, and the switch goes on forwarding.
    let user = TestUser::create(&[])?;
    let script = format!(
        r#"
import socket
held = []
for _ in range(12):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect("{}")
    held.append(s)
answered = 0
for s in held:
    try:
        s.sendall(b'{{"version":1,"cmd":"status"}}\n')
        if s.recv(65536):
            answered += 1
    except OSError:
        pass
print(answered)
"#,
        socket.display()
    );
    let out = cmd::run(
        &user.argv(&["/usr/bin/python3", "-c", &script]),
        Duration::from_secs(30),
    )?
    .ok()?;
    let answered: u32 = out
        .stdout
        .trim()
        .parse()
        .with_context(|| format!("python printed {:?}", out.stdout))?;
    println!("an unprivileged user holding 12 connections got {answered} answered");
    ensure!(
        answered == 8,
        "{answered} of 12 held connections answered; the per-uid cap is 8"
    );
    check_stream(&lab, stream, "a flood of bad control requests")?;
    ensure!(lab.xswd_running(), "xswd died; log:\n{}", lab.xswd_log());
    lab.ctl_ok(&["status"])?;
    Ok(())
}

/// A tmpfs holding the config file, so the test can fill it or make it read-only;
/// unmounted when dropped.
struct ConfigMount {
    dir: PathBuf,
}

impl ConfigMount {
    fn new(lab: &Lab) -> Result<ConfigMount> {
        let dir = lab.dir.join("conf");
        std::fs::create_dir_all(&dir)?;
        cmd::sh_ok(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            "size=256k",
            "tmpfs",
            &dir.display().to_string(),
        ])?;
        Ok(ConfigMount { dir })
    }

    fn remount(&self, option: &str) -> Result<()> {
        cmd::sh_ok(&[
            "mount",
            "-o",
            &format!("remount,{option}"),
            &self.dir.display().to_string(),
        ])?;
        Ok(())
    }
}

impl Drop for ConfigMount {
    fn drop(&mut self) {
        let _ = cmd::sh_ok(&["umount", "-l", &self.dir.display().to_string()]);
    }
}

/// `port add PORT` is refused with `reason` (and says nothing changed) while the config
/// directory is `state`, and the running ports still equal the file's.
fn expect_refused_unchanged(
    lab: &Lab,
    config: &Path,
    port: &str,
    state: &str,
    reason: &str,
) -> Result<()> {
    let message = lab.ctl_err(&["port", "add", port])?.stderr.to_lowercase();
    println!("port add with the config directory {state}: {message}");
    ensure!(
        message.contains(reason) && message.contains("nothing was changed"),
        "the refusal does not say why ({reason}) or that nothing changed: {message}"
    );
    let (running, saved) = (port_names(lab)?, ports_in_file(config)?);
    ensure!(
        running == saved,
        "running ports {running:?} differ from the file {saved:?}"
    );
    Ok(())
}

#[test]
fn a_config_directory_full_or_read_only_refuses_changes_and_keeps_state_equal_to_the_file(
) -> Result<()> {
    let lab = lab!("cfgfault", "fcd", 215)?;
    let h1 = lab.add_veth_host("h1", 1)?;
    let h2 = lab.add_veth_host("h2", 2)?;
    let h3 = lab.add_veth_host("h3", 3)?;
    let mount = ConfigMount::new(&lab)?;
    let config = mount.dir.join("xsw.toml");
    std::fs::write(&config, Lab::config_with_ports(&[&h1.port]))?;
    let xswd_bin = lab.bins.xswd()?.display().to_string();
    let argv = cmd::in_ns(
        &lab.sw,
        &[
            &xswd_bin,
            "--socket",
            &lab.socket().display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
    );
    let mut xswd = Proc::spawn("xswd-cfgfault", &argv, &lab.dir.join("xswd.log"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.ctl(&["status"]).map(|o| o.success()).unwrap_or(false) {
        ensure!(xswd.running(), "xswd exited: {}", xswd.log_text());
        ensure!(Instant::now() < deadline, "xswd did not answer within 10 s");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Full: a filler takes every free block, so the new file cannot be written.
    let filler = mount.dir.join("filler");
    let _ = cmd::sh_ok(&[
        "dd",
        "if=/dev/zero",
        &format!("of={}", filler.display()),
        "bs=4k",
    ]);
    expect_refused_unchanged(&lab, &config, &h2.port, "full", "no space left")?;
    std::fs::remove_file(&filler)?;
    lab.port_add(&h2.port)?;
    ensure!(
        ports_in_file(&config)?.contains(&h2.port),
        "the change after freeing space is not saved"
    );

    // Read-only: the same.
    mount.remount("ro")?;
    expect_refused_unchanged(&lab, &config, &h3.port, "read-only", "read-only")?;
    mount.remount("rw")?;
    lab.port_add(&h3.port)?;
    ensure!(
        port_names(&lab)? == ports_in_file(&config)?,
        "after remounting rw: running {:?}, file {:?}",
        port_names(&lab)?,
        ports_in_file(&config)?
    );
    lab.wait_reachable(&h2, &h3, Duration::from_secs(5))?;
    xswd.stop(Duration::from_secs(5));
    Ok(())
}
