//! Real unprivileged Unix users and groups for the delegation tests, removed
//! again when dropped (also when the test fails or panics), and xswctl run
//! as such a user.
//!
//! Names are `xswdlg<pid>` (users) and `xswdlg<pid>g` (groups), so leftovers
//! of a test process that was killed before it could clean up are recognised
//! and removed by the next run (their pid no longer runs).

use crate::{cmd, Lab, Output};
use anyhow::{anyhow, ensure, Context, Result};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const PREFIX: &str = "xswdlg";

fn id_of(args: &[&str]) -> Result<u32> {
    let out = cmd::sh_ok(args)?;
    out.trim()
        .parse()
        .with_context(|| format!("`{}` printed {out:?}", args.join(" ")))
}

/// Removes users and groups this module created for test processes that no
/// longer exist.
fn remove_leftovers() {
    for (db, del) in [("/etc/passwd", "userdel"), ("/etc/group", "groupdel")] {
        let text = std::fs::read_to_string(db).unwrap_or_default();
        for name in text.lines().filter_map(|l| l.split(':').next()) {
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let tail = &rest[digits.len()..];
            if digits.is_empty() || !(tail.is_empty() || tail == "g") {
                continue;
            }
            if !Path::new("/proc").join(&digits).exists() {
                let _ = cmd::run_args(&[del, name], Duration::from_secs(10));
            }
        }
    }
}

/// A group `xswdlg<pid>g`, deleted on drop.
pub struct TestGroup {
    pub name: String,
    pub gid: u32,
}

impl TestGroup {
    pub fn create() -> Result<TestGroup> {
        remove_leftovers();
        let name = format!("{PREFIX}{}g", std::process::id());
        let _ = cmd::run_args(&["groupdel", &name], Duration::from_secs(10));
        cmd::sh_ok(&["groupadd", &name])?;
        // From here on, drop removes it, whatever fails next.
        let mut group = TestGroup { name, gid: 0 };
        let line = cmd::sh_ok(&["getent", "group", &group.name])?;
        group.gid = line
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .ok_or_else(|| anyhow!("getent group {}: {line}", group.name))?;
        Ok(group)
    }
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if let Err(e) = cmd::sh_ok(&["groupdel", &self.name]) {
            eprintln!("cleanup: groupdel {}: {e}", self.name);
        }
    }
}

/// A user `xswdlg<pid>` with its own primary group, no home and no login
/// shell, member of `groups`; deleted (with its primary group) on drop.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub fn create(groups: &[&TestGroup]) -> Result<TestUser> {
        remove_leftovers();
        let name = format!("{PREFIX}{}", std::process::id());
        let _ = cmd::run_args(&["userdel", &name], Duration::from_secs(10));
        let supplementary: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let joined = supplementary.join(",");
        let mut argv = vec![
            "useradd",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ];
        if !supplementary.is_empty() {
            argv.extend(["--groups", joined.as_str()]);
        }
        argv.push(&name);
        cmd::sh_ok(&argv)?;
        let mut user = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        user.uid = id_of(&["id", "-u", &user.name])?;
        user.gid = id_of(&["id", "-g", &user.name])?;
        ensure!(
            user.uid != 0,
            "useradd gave {} uid 0; refusing to go on",
            user.name
        );
        Ok(user)
    }

    /// `argv` run as this user (real and effective ids, its groups).
    pub fn argv(&self, argv: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = [
            "setpriv".to_string(),
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--init-groups".to_string(),
            "--".to_string(),
        ]
        .to_vec();
        v.extend(argv.iter().map(|s| s.to_string()));
        v
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Err(e) = cmd::sh_ok(&["userdel", &self.name]) {
            eprintln!("cleanup: userdel {}: {e}", self.name);
        }
    }
}

impl Lab {
    /// A persistent tap `<tag>-<name>` in the switch namespace owned by
    /// `uid` (`ip tuntap add mode tap user UID`), set up. Returns its name.
    pub fn create_tap_owned(&self, name: &str, uid: u32) -> Result<String> {
        let tap = self.port_name(name);
        let owner = uid.to_string();
        cmd::sh_ok(&[
            "ip", "-n", &self.sw, "tuntap", "add", "mode", "tap", "user", &owner, "name", &tap,
        ])?;
        cmd::sh_ok(&["ip", "-n", &self.sw, "link", "set", &tap, "up"])?;
        Ok(tap)
    }

    /// `xswctl --socket <lab socket> ARGS...` run as `user` (10 s bound).
    pub fn ctl_as(&self, user: &TestUser, args: &[&str]) -> Result<Output> {
        let sock = self.socket().display().to_string();
        let ctl = self.bins.xswctl()?.display().to_string();
        let mut argv = vec![ctl.as_str(), "--socket", sock.as_str()];
        argv.extend_from_slice(args);
        cmd::run(&user.argv(&argv), Duration::from_secs(10))
    }

    /// `ctl_as --json`, requiring success, parsed.
    pub fn ctl_as_json(&self, user: &TestUser, args: &[&str]) -> Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl_as(user, &a)?;
        ensure!(
            out.success(),
            "as {} (uid {}): {}\nxswd log:\n{}",
            user.name,
            user.uid,
            out.describe(),
            self.xswd_log()
        );
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("xswctl --json {} printed {}", args.join(" "), out.stdout))
    }

    /// `ctl_as`, requiring success.
    pub fn ctl_as_ok(&self, user: &TestUser, args: &[&str]) -> Result<String> {
        let out = self.ctl_as(user, args)?;
        ensure!(
            out.success(),
            "as {} (uid {}): {}\nxswd log:\n{}",
            user.name,
            user.uid,
            out.describe(),
            self.xswd_log()
        );
        Ok(out.stdout)
    }

    /// `ctl_as`, requiring a refusal whose message is
    /// `error: permission denied: ...`; returns the message.
    pub fn ctl_as_denied(&self, user: &TestUser, args: &[&str]) -> Result<String> {
        let out = self.ctl_as(user, args)?;
        ensure!(
            !out.timed_out && out.code.is_some() && out.code != Some(0),
            "as {} (uid {}), xswctl {} should be refused:\n{}",
            user.name,
            user.uid,
            args.join(" "),
            out.describe()
        );
        let message = out.stderr.trim().to_string();
        ensure!(
            message.starts_with("error: permission denied: "),
            "as {} (uid {}), xswctl {} failed, but not with \"permission denied\":\n{}",
            user.name,
            user.uid,
            args.join(" "),
            out.describe()
        );
        Ok(message)
    }
}
