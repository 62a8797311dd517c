//! Delegation: root grants tenant t to a real unprivileged Unix user (then to
//! a group it belongs to), who runs xswctl as itself. xswd tells who is
//! asking by SO_PEERCRED. Without a grant the user is refused everything.
//! With one, it sees and manages only t: adds a tap it owns and traffic
//! flows through it, edits t's ACLs and sees their hits, reads t's counters
//! and MAC table. Everything root keeps (other tenants, veths, taps of
//! others, trunks, VLANs, anti-spoofing, tenants, grants, the config) is
//! refused with "permission denied" and changes nothing. After a revoke the
//! user is refused again.

use anyhow::{ensure, Result};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use xsw_integration::users::{TestGroup, TestUser};
use xsw_integration::{lab, normalize, Lab};

/// Drops what traffic changes by itself (ACL hits, MAC ages).
fn steady(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(steady).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "hits" | "default_hits" | "age_secs"))
                .map(|(k, v)| (k.clone(), steady(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What root sees of the switch's configuration: ports, tenants, both
/// tenants' ACLs, static MACs, `config show` and the config file.
fn state(lab: &Lab) -> Result<Value> {
    let statics: Vec<Value> = lab
        .fdb()?
        .into_iter()
        .filter(|e| e["static"] == true)
        .collect();
    let config = lab.ctl_json(&["config", "show"])?;
    Ok(normalize(&steady(&serde_json::json!({
        "ports": lab.ports()?,
        "tenants": lab.tenants()?,
        "acl_t": lab.ctl_json(&["acl", "list", "t"])?,
        "acl_u": lab.ctl_json(&["acl", "list", "u"])?,
        "static_macs": statics,
        "config": config,
        "config_file": std::fs::read_to_string(lab.config_path()).unwrap_or_default(),
    }))))
}

fn names(rows: &Value, key: &str) -> Vec<String> {
    let mut n: Vec<String> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r[key].as_str().map(str::to_lowercase))
        .collect();
    n.sort();
    n
}

/// Every command a user without a grant tries is refused, and nothing changes.
fn refused_everything(lab: &Lab, user: &TestUser, tap: &str, when: &str) -> Result<()> {
    let before = state(lab)?;
    for args in [
        vec!["status"],
        vec!["tenant", "list"],
        vec!["tenant", "show", "t"],
        vec!["port", "list"],
        vec!["port", "add", tap, "--tenant", "t"],
        vec!["acl", "list", "t"],
        vec!["acl", "add", "t", "ingress", "deny", "--proto", "udp"],
        vec!["fdb", "show"],
        vec!["stats"],
    ] {
        let e = lab.ctl_as_denied(user, &args)?;
        ensure!(
            e.contains(&format!("uid {}", user.uid)),
            "{when}: refusal of `{}` should name the uid: {e}",
            args.join(" ")
        );
    }
    ensure!(
        state(lab)? == before,
        "{when}: refused requests changed the switch:\nbefore {before}\nafter  {}",
        state(lab)?
    );
    Ok(())
}

#[test]
fn a_tenant_delegated_to_a_user_or_group_is_all_it_can_manage() -> Result<()> {
    let lab = lab!("delegation", "dlg", 191)?;
    // The socket's directory must let the user reach the socket.
    std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755))?;
    let group = TestGroup::create()?;
    let user = TestUser::create(&[&group])?;
    ensure!(
        user.gid != group.gid,
        "the group must be supplementary, not primary"
    );

    let h2 = lab.add_veth_host("h2", 2)?; // root's port in t
    let h3 = lab.add_veth_host("h3", 3)?; // root's port in u
    let v4 = lab.add_veth_host("v4", 4)?; // a veth the user may not add
    let tap = lab.create_tap_owned("g1", user.uid)?; // the user's VM tap
    let others = lab.create_tap_owned("ot", 65534)?; // nobody's tap
    let unowned = lab.create_tap("un")?; // a tap without owner
    lab.start_xswd("")?;
    let mode = std::fs::metadata(lab.socket())?.permissions().mode() & 0o777;
    ensure!(
        mode == 0o666,
        "the control socket is mode {mode:o}, expected 666"
    );
    lab.ctl_ok(&["tenant", "create", "t"])?;
    lab.ctl_ok(&["tenant", "create", "u"])?;
    lab.ctl_ok(&["port", "add", &h2.port, "--tenant", "t"])?;
    lab.ctl_ok(&["port", "add", &h3.port, "--tenant", "u"])?;
    let g1 = lab.attach_guest("g1", 1, &tap)?;
    // h3 makes itself known in u's MAC table.
    let _ = lab.ping(&h3, &lab.ip(99), 1)?;

    // -------------------------------------------------- no grant: nothing
    refused_everything(&lab, &user, &tap, "before any grant")?;

    // Grants root refuses: the default tenant, an unknown tenant, nobody.
    lab.ctl_err(&["tenant", "grant", "default", "--uid", &user.uid.to_string()])?;
    let e = lab.ctl_err(&["tenant", "grant", "nosuch", "--uid", &user.uid.to_string()])?;
    ensure!(
        e.stderr.contains("no tenant named nosuch"),
        "{}",
        e.describe()
    );
    lab.ctl_err(&["tenant", "grant", "t"])?;

    // ------------------------------------------------ grant t to the user
    let uid = user.uid.to_string();
    lab.ctl_ok(&["tenant", "grant", "t", "--uid", &uid])?;
    let show = lab.ctl_json(&["tenant", "show", "t"])?;
    ensure!(
        show["grants"]["uids"] == serde_json::json!([user.uid])
            && show["grants"]["gids"] == serde_json::json!([]),
        "root's tenant show t after the grant: {show}"
    );

    let tenants = lab.ctl_as_json(&user, &["tenant", "list"])?;
    ensure!(
        names(&tenants, "name") == ["t"],
        "the user's tenant list: {tenants}"
    );
    let show = lab.ctl_as_json(&user, &["tenant", "show", "t"])?;
    ensure!(
        show["name"] == "t" && show.get("grants").is_none(),
        "the user's tenant show t: {show}"
    );
    let status = lab.ctl_as_json(&user, &["status"])?;
    ensure!(
        status["tenants"] == 1 && status["ports"] == 1,
        "the user's status should count t and its one port: {status}"
    );

    // Its own tap joins t, and the guest behind it reaches h2.
    lab.ctl_as_ok(&user, &["port", "add", &tap, "--tenant", "t"])?;
    let ports = lab.ctl_as_json(&user, &["port", "list"])?;
    let mut want = vec![tap.clone(), h2.port.clone()];
    want.sort();
    ensure!(
        names(&ports, "name") == want,
        "the user's port list should be t's ports {want:?}: {ports}"
    );
    lab.wait_reachable(&g1, &h2, Duration::from_secs(5))?;
    lab.ping_all(&g1, &h2, 3)?;

    // t's ACLs: a rule the user adds counts the pings; a default deny it
    // sets stops them; both undone by the user.
    lab.ctl_as_ok(
        &user,
        &["acl", "add", "t", "ingress", "allow", "--proto", "icmp"],
    )?;
    lab.ping_all(&g1, &h2, 3)?;
    let acl = lab.ctl_as_json(&user, &["acl", "list", "t"])?;
    let hits = acl["ingress"]["rules"][0]["hits"].as_u64().unwrap_or(0);
    ensure!(
        hits >= 6,
        "the user's icmp rule should count 3 requests and 3 replies: {acl}"
    );
    lab.ctl_as_ok(&user, &["acl", "policy", "t", "egress", "deny"])?;
    let s = lab.ping(&g1, &h2.ip, 2)?;
    ensure!(
        s.received == 0,
        "pings passed t's egress default deny set by the user: {s:?}"
    );
    lab.ctl_as_ok(&user, &["acl", "policy", "t", "egress", "allow"])?;
    lab.ctl_as_ok(&user, &["acl", "del", "t", "ingress", "1"])?;
    lab.ping_all(&g1, &h2, 2)?;

    // Counters and the MAC table: t's only.
    let stats = lab.ctl_as_json(&user, &["stats"])?;
    ensure!(
        names(&stats["ports"], "name") == want
            && stats["workers"].as_array().is_some_and(|w| w.is_empty()),
        "the user's stats should show t's ports {want:?} and no workers: {stats}"
    );
    let fdb = lab.ctl_as_json(&user, &["fdb", "show"])?;
    let macs = names(&fdb, "mac");
    ensure!(
        fdb.as_array()
            .is_some_and(|a| a.iter().all(|e| e["tenant"] == "t"))
            && macs.contains(&g1.mac)
            && macs.contains(&h2.mac),
        "the user's fdb show should hold t's MACs only: {fdb}"
    );
    ensure!(
        !lab.fdb_entries(&h3.mac)?.is_empty(),
        "h3 (tenant u) should be in root's MAC table"
    );
    let fixed = "02:78:bf:00:00:50";
    lab.ctl_as_ok(&user, &["fdb", "add", fixed, &tap])?;
    ensure!(
        lab.fdb_entries(fixed)?
            .iter()
            .any(|e| e["tenant"] == "t" && e["static"] == true),
        "the user's static MAC is not in t: {:?}",
        lab.fdb()?
    );
    lab.ctl_as_ok(&user, &["fdb", "del", fixed])?;
    ensure!(
        lab.fdb_entries(fixed)?.is_empty(),
        "fdb del as the user left {fixed}"
    );

    // A tap xsw creates for the user, owned by it.
    let made = lab.port_name("c1");
    lab.ctl_as_ok(
        &user,
        &[
            "port",
            "add",
            &made,
            "--create-tap",
            "--tap-owner",
            &uid,
            "--tenant",
            "t",
        ],
    )?;
    ensure!(
        lab.sw_links()?.contains(&made),
        "the created tap {made} does not exist"
    );
    lab.ctl_as_ok(&user, &["port", "del", &made])?;
    ensure!(
        !lab.sw_links()?.contains(&made),
        "port del left the tap {made}"
    );

    // Everything root keeps is refused, says why, and changes nothing.
    let before = state(&lab)?;
    let mac = g1.mac.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["port", "add", &v4.port, "--tenant", "t"], "not a tap"),
        (
            vec!["port", "add", &others, "--tenant", "t"],
            "belongs to uid 65534",
        ),
        (
            vec!["port", "add", &unowned, "--tenant", "t"],
            "has no owner",
        ),
        (
            vec!["port", "add", &unowned, "--tenant", "u"],
            "not delegated",
        ),
        (vec!["port", "add", &v4.port, "--trunk"], "trunks"),
        (
            vec!["port", "add", &others, "--tenant", "t", "--force"],
            "--force",
        ),
        (
            vec![
                "port",
                "add",
                "dlg-c2",
                "--create-tap",
                "--tap-owner",
                "65534",
                "--tenant",
                "t",
            ],
            "must be yours",
        ),
        (
            vec![
                "port",
                "add",
                "dlg-c3",
                "--create-tap",
                "--tap-owner",
                &uid,
                "--tenant",
                "u",
            ],
            "not delegated",
        ),
        (vec!["port", "del", &h3.port], "no port"),
        (vec!["port", "del", &h2.port], "not a tap"),
        (vec!["port", "set", &tap, "--tenant", "u"], "root's"),
        (vec!["tenant", "show", "u"], "not delegated"),
        (vec!["tenant", "create", "x"], "root's"),
        (vec!["tenant", "delete", "t"], "root's"),
        (vec!["tenant", "grant", "t", "--uid", "65534"], "root's"),
        (vec!["tenant", "revoke", "t", "--uid", &uid], "root's"),
        (
            vec!["acl", "add", "u", "ingress", "deny", "--proto", "tcp"],
            "not delegated",
        ),
        (vec!["acl", "list", "u"], "not delegated"),
        (
            vec!["acl", "policy", "u", "egress", "deny"],
            "not delegated",
        ),
        (vec!["acl", "list", "default"], "not delegated"),
        (vec!["fdb", "show", "--tenant", "u"], "not delegated"),
        (vec!["fdb", "add", "02:78:bf:00:00:51", &h3.port], "no port"),
        (
            vec!["antispoof", "set", &tap, "--mac", mac],
            "anti-spoofing",
        ),
        (vec!["antispoof", "clear", &tap], "anti-spoofing"),
        (vec!["vlan", "add", &v4.port, "100", "t"], "VLANs"),
        (vec!["vlan", "del", &v4.port, "100"], "VLANs"),
        (vec!["config", "show"], "root"),
        (vec!["config", "reload"], "root"),
    ];
    for (args, why) in &cases {
        let e = lab.ctl_as_denied(&user, args)?;
        ensure!(
            e.contains(why),
            "`xswctl {}` as the user: refusal should say {why:?}: {e}",
            args.join(" ")
        );
    }
    let after = state(&lab)?;
    ensure!(
        after == before,
        "refused requests changed the switch:\nbefore {before}\nafter  {after}"
    );
    let links = lab.sw_links()?;
    ensure!(
        !links.iter().any(|l| l == "dlg-c2" || l == "dlg-c3"),
        "a refused --create-tap created a tap: {links:?}"
    );
    let log = lab.xswd_log();
    ensure!(
        log.contains("permission denied") && log.contains(&format!("uid={}", user.uid)),
        "xswd should log refusals with the uid:\n{log}"
    );

    // The user removes its own tap.
    lab.ctl_as_ok(&user, &["port", "del", &tap])?;
    ensure!(lab.port(&tap)?.is_none(), "port del as the user left {tap}");

    // --------------------------------------------------------- revoke
    lab.ctl_ok(&["tenant", "revoke", "t", "--uid", &uid])?;
    let show = lab.ctl_json(&["tenant", "show", "t"])?;
    ensure!(
        show["grants"]["uids"] == serde_json::json!([]),
        "tenant show t after the revoke: {show}"
    );
    refused_everything(&lab, &user, &tap, "after the revoke")?;

    // -------------------------------- grant t to a supplementary group
    let gid = group.gid.to_string();
    lab.ctl_ok(&["tenant", "grant", "t", "--gid", &gid])?;
    let tenants = lab.ctl_as_json(&user, &["tenant", "list"])?;
    ensure!(
        names(&tenants, "name") == ["t"],
        "tenant list as a member of the granted group: {tenants}"
    );
    lab.ctl_as_ok(&user, &["port", "add", &tap, "--tenant", "t"])?;
    lab.wait_reachable(&g1, &h2, Duration::from_secs(5))?;
    lab.ctl_as_denied(&user, &["acl", "list", "u"])?;
    lab.ctl_ok(&["tenant", "revoke", "t", "--gid", &gid])?;
    refused_everything(&lab, &user, &tap, "after revoking the group")?;

    // Deleting a tenant drops its grants.
    lab.ctl_ok(&["tenant", "grant", "u", "--uid", &uid])?;
    lab.ctl_ok(&["port", "del", &h3.port])?;
    lab.ctl_ok(&["tenant", "delete", "u"])?;
    lab.ctl_ok(&["tenant", "create", "u"])?;
    let show = lab.ctl_json(&["tenant", "show", "u"])?;
    ensure!(
        show["grants"]["uids"] == serde_json::json!([]),
        "a re-created tenant inherited the old one's grants: {show}"
    );
    lab.ctl_as_denied(&user, &["tenant", "list"])?;
    ensure!(lab.xswd_running(), "xswd exited");
    Ok(())
}

/// Any local user may connect to the control socket. 100 refused requests of
/// 60 KB each must leave the log a few kilobytes longer, not megabytes, and
/// say how many refusals it left out.
#[test]
fn a_flood_of_refused_requests_keeps_the_log_small() -> Result<()> {
    let lab = lab!("refusals", "dlr", 192)?;
    std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755))?;
    let user = TestUser::create(&[])?;
    lab.start_xswd("")?;
    let before = lab.xswd_log().len();
    let sock = lab.socket().display().to_string();
    let ctl = lab.bins.xswctl()?.display().to_string();
    let script = format!(
        "big=$(head -c 61440 /dev/zero | tr '\\0' x); for i in $(seq 100); do \
         {ctl} --socket {sock} tenant show \"$big\" >/dev/null 2>&1; done; \
         {ctl} --socket {sock} tenant show \"$big\" 2>&1 | wc -c"
    );
    let out =
        xsw_integration::cmd::run(&user.argv(&["sh", "-c", &script]), Duration::from_secs(60))?;
    ensure!(out.success(), "the flood did not run: {}", out.describe());
    let reply_bytes: usize = out.stdout.trim().parse().unwrap_or(usize::MAX);
    ensure!(
        reply_bytes < 2_000,
        "a refused 60 KB request got a {reply_bytes}-byte reply"
    );
    // Let a window pass: the next logged refusal reports what was left out.
    std::thread::sleep(Duration::from_secs(10));
    lab.ctl_as(&user, &["status"])?;
    let log = lab.xswd_log();
    let grown = log.len() - before;
    ensure!(
        grown < 20_000,
        "101 refused 60 KB requests grew the log by {grown} bytes"
    );
    ensure!(
        log.contains("permission denied") && log.contains(&format!("uid={}", user.uid)),
        "refusals are not logged at all:\n{log}"
    );
    // 101 refusals, 10 logged in the first window: the next line says 91.
    let left_out: u64 = log
        .lines()
        .filter_map(|l| l.split("suppressed=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0);
    ensure!(
        left_out == 91,
        "the log should say that 91 refusals were left out, says {left_out}:\n{log}"
    );
    Ok(())
}
