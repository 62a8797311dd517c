//! The running configuration as a config file: rebuilt from the switch's
//! state, written back after every change (atomically: a temporary file,
//! fsync, rename, fsync of the directory, so a crash at any moment leaves
//! the old file or the new one, never a torn one), and re-read on reload,
//! where only the difference is applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::switch::Switch;
use super::tenants::DEFAULT_TENANT;
use crate::config::{Config, PortSpec, StaticFdbSpec, TenantSpec};

/// Where the running config is saved.
#[derive(Clone, Debug)]
pub struct Persistence {
    pub path: PathBuf,
}

/// Writes `text` to `path` so that readers see the old or the new content
/// whatever happens, a crash or power loss included.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    SaveRoom::take(path, text.len() as u64)?.commit(text)
}

/// Room for the next save, taken before a change is made: the temporary file the new
/// config will be written to, with its blocks allocated. A directory that is read-only,
/// full or gone fails here, before anything changes, so the change can be refused and
/// the running state stays equal to the file. Writing into allocated blocks cannot run
/// out of space afterwards, unless the new file outgrows the room taken.
pub struct SaveRoom {
    path: PathBuf,
    temp: PathBuf,
    file: File,
    room: u64,
}

/// Room taken for a change: twice the current file and 64 KiB besides (one command adds
/// at most a few lines; a reload at most doubles what a person wrote).
fn room_for(current: u64) -> u64 {
    current.saturating_mul(2) + 64 * 1024
}

impl SaveRoom {
    pub fn take(path: &Path, current_len: u64) -> std::io::Result<SaveRoom> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "xsw.toml".into());
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        let room = room_for(current_len);
        let allocated = i64::try_from(room).unwrap_or(i64::MAX);
        // SAFETY: posix_fallocate only reads its integer arguments; the descriptor is
        // open and owned by `file`, which outlives the call.
        let status = unsafe {
            use std::os::fd::AsRawFd;
            libc::posix_fallocate(file.as_raw_fd(), 0, allocated)
        };
        if status != 0 {
            let _ = fs::remove_file(&temp);
            return Err(std::io::Error::from_raw_os_error(status));
        }
        Ok(SaveRoom {
            path: path.to_path_buf(),
            temp,
            file,
            room,
        })
    }

    /// Writes `text` into the room, then renames it over the config (durably, as
    /// [`write_atomically`] does).
    pub fn commit(mut self, text: &str) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        if text.len() as u64 > self.room {
            tracing::warn!(
                size = text.len(),
                room = self.room,
                "the new configuration is larger than the room taken for it; writing the rest needs free space"
            );
        }
        let result = (|| {
            self.file.seek(SeekFrom::Start(0))?;
            self.file.write_all(text.as_bytes())?;
            self.file.set_len(text.len() as u64)?;
            self.file.sync_all()?;
            fs::rename(&self.temp, &self.path)?;
            let dir = self
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result
    }

    /// The change was not made: give the room back.
    pub fn release(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

/// What a reload did, for the log and the reply.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    pub applied: Vec<String>,
    pub failed: Vec<String>,
}

impl Switch {
    pub fn set_persistence(&mut self, persistence: Persistence) {
        self.persistence = Some(persistence);
    }

    /// The whole switch as a config file.
    pub fn running_config(&self) -> Config {
        let mut tenants = Vec::new();
        for name in self.tenants.keys() {
            if let Some(spec) = self.tenant_spec(name) {
                let is_plain_default = name == DEFAULT_TENANT
                    && spec
                        == TenantSpec {
                            name: name.clone(),
                            ..Default::default()
                        };
                if !is_plain_default {
                    tenants.push(spec);
                }
            }
        }
        let mut fdb: Vec<StaticFdbSpec> = self
            .static_macs
            .iter()
            .map(|((tenant_id, mac), port)| StaticFdbSpec {
                mac: *mac,
                port: port.clone(),
                tenant: self
                    .tenant_name(*tenant_id)
                    .filter(|t| *t != DEFAULT_TENANT)
                    .map(str::to_string),
                remote: self.static_remotes.get(&(*tenant_id, *mac)).copied(),
            })
            .collect();
        // Missing ports stay in the file, with the static MACs that wait for them.
        fdb.extend(
            self.missing
                .values()
                .flat_map(|m| m.static_macs.iter().cloned()),
        );
        let mut ports: Vec<PortSpec> = self
            .ports
            .values()
            .map(|r| r.spec.clone())
            .chain(self.missing.values().map(|m| m.spec.clone()))
            .collect();
        ports.sort_by(|a, b| a.name.cmp(&b.name));
        Config {
            dataplane: self.settings.clone(),
            umem: self.umem.clone(),
            fast_path: self.dataplane.fast_path_settings().clone(),
            storm_control: self.storm_default,
            ports,
            fdb,
            tenants,
            metrics: self.metrics.clone(),
        }
    }

    pub fn running_config_toml(&self) -> String {
        let header = "# xsw configuration, written by xswd after every change made with xswctl.\n\
                      # Edit it and run `systemctl reload xsw` (SIGHUP) to apply the difference.\n\n";
        match toml::to_string_pretty(&self.running_config()) {
            Ok(body) => format!("{header}{body}"),
            Err(e) => format!("# cannot render the running config: {e}\n"),
        }
    }

    /// Takes room for saving the config after a change (see [`SaveRoom`]); None when
    /// the switch runs without a config file. The error is the refusal's reason.
    pub(super) fn take_save_room(&self) -> Result<Option<SaveRoom>, String> {
        let Some(persistence) = &self.persistence else {
            return Ok(None);
        };
        let current = fs::metadata(&persistence.path)
            .map(|m| m.len())
            .unwrap_or(0);
        SaveRoom::take(&persistence.path, current)
            .map(Some)
            .map_err(|e| {
                format!(
                    "cannot save the configuration to {}: {e}; nothing was changed",
                    persistence.path.display()
                )
            })
    }

    /// Writes the running config into the room taken before the change.
    pub(super) fn save_into(&self, room: SaveRoom) -> Result<(), String> {
        room.commit(&self.running_config_toml()).map_err(|e| {
            let message = format!(
                "the change is made but could not be saved to {}: {e}",
                self.persistence
                    .as_ref()
                    .map(|p| p.path.display().to_string())
                    .unwrap_or_default()
            );
            tracing::error!("{message}");
            message
        })
    }

    /// Re-reads the config file and applies only what changed. An invalid
    /// file changes nothing; an operation the kernel refuses is reported and
    /// the rest still applied.
    pub fn reload(&mut self) -> Result<ReloadReport, String> {
        let Some(path) = self.persistence.as_ref().map(|p| p.path.clone()) else {
            return Err("xswd was started without a config file to reload".into());
        };
        let wanted = Config::load(&path).map_err(|e| e.to_string())?;
        self.restoring = true;
        let report = self.apply_difference(&wanted);
        self.restoring = false;
        Ok(report)
    }

    fn apply_difference(&mut self, wanted: &Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        if wanted.metrics != self.metrics {
            // The endpoint is bound once, at startup; the file keeps the new value.
            report
                .applied
                .push("[metrics]: saved; the endpoint moves at the next restart".into());
            self.metrics = wanted.metrics.clone();
        }
        if wanted.dataplane != self.settings
            || wanted.umem != self.umem
            || &wanted.fast_path != self.dataplane.fast_path_settings()
        {
            // Live where the workers can take it, by a rebuild where not.
            let d = &wanted.dataplane;
            let zero_is_none = |limit: Option<u32>| Some(limit.unwrap_or(0));
            let tuning = super::tuning::Tuning {
                batch_size: Some(d.batch_size),
                mode: Some(d.mode),
                mac_aging_secs: Some(d.mac_aging_secs),
                poll_budget: Some(d.poll_budget),
                mac_limits: (
                    zero_is_none(d.mac_limit_per_port),
                    zero_is_none(d.mac_limit_per_tenant),
                ),
                workers: Some(d.workers.clone()),
                fdb_capacity: Some(d.fdb_capacity),
                umem: wanted.umem.clone(),
                fast_path: Some(wanted.fast_path.enabled),
                flow_idle_timeout_secs: Some(wanted.fast_path.idle_timeout_secs),
                flow_capacity: Some(wanted.fast_path.flows),
            };
            match self.tune(tuning) {
                Ok(reply) if reply.get("recreated_queues").is_some() => {
                    report.applied.push(format!(
                        "[dataplane]/[umem]/[fast_path]: data plane rebuilt, {} queues re-created",
                        reply["recreated_queues"]
                    ))
                }
                Ok(_) => report
                    .applied
                    .push("[dataplane]/[fast_path]: tuned live".into()),
                Err(e) => report
                    .failed
                    .push(format!("[dataplane]/[umem]/[fast_path]: {e}")),
            }
        }
        if wanted.storm_control != self.storm_default {
            let outcome = self
                .set_storm_default(wanted.storm_control)
                .map_err(|e| e.to_string());
            match outcome {
                Ok(()) => report.applied.push("[storm_control]".into()),
                Err(e) => report.failed.push(format!("[storm_control]: {e}")),
            }
        }
        let running = self.running_config();
        let mut step = |what: String, outcome: Result<(), String>| match outcome {
            Ok(()) => report.applied.push(what),
            Err(e) => report.failed.push(format!("{what}: {e}")),
        };

        let old_tenants: BTreeMap<&str, &TenantSpec> = running
            .tenants
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let new_tenants: BTreeMap<&str, &TenantSpec> = wanted
            .tenants
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let old_ports: BTreeMap<&str, &PortSpec> =
            running.ports.iter().map(|p| (p.name.as_str(), p)).collect();
        let new_ports: BTreeMap<&str, &PortSpec> =
            wanted.ports.iter().map(|p| (p.name.as_str(), p)).collect();

        // Tenants first (ports may join them), emptied tenants last.
        for (name, spec) in &new_tenants {
            if old_tenants.get(name) != Some(spec) {
                step(
                    format!("tenant {name}"),
                    self.apply_tenant_spec(spec).map_err(|e| e.to_string()),
                );
            }
        }
        for name in old_ports.keys().filter(|n| !new_ports.contains_key(*n)) {
            step(
                format!("remove port {name}"),
                self.port_del(name).map(drop).map_err(|e| e.to_string()),
            );
        }
        for (name, spec) in &new_ports {
            match old_ports.get(name) {
                None => step(
                    format!("add port {name}"),
                    self.port_restore((*spec).clone())
                        .map_err(|e| e.to_string()),
                ),
                Some(old) if old == spec => {}
                Some(_) if self.missing.contains_key(*name) => {
                    // Nothing attached to change: the new spec waits instead.
                    let outcome = self.policy_for(spec).map(|_| {
                        if let Some(missing) = self.missing.get_mut(*name) {
                            missing.spec = (*spec).clone();
                        }
                    });
                    step(
                        format!("update missing port {name}"),
                        outcome.map_err(|e| e.to_string()),
                    );
                }
                Some(old) if only_policy_changed(old, spec) => step(
                    format!("update port {name}"),
                    self.replace_port_policy(name, (*spec).clone())
                        .map(drop)
                        .map_err(|e| e.to_string()),
                ),
                Some(_) => {
                    // The interface-level settings changed: re-attach.
                    let outcome = self
                        .reattach_port(name, (*spec).clone())
                        .map(drop)
                        .map_err(|e| e.to_string());
                    step(format!("re-add port {name}"), outcome);
                }
            }
        }
        let old_fdb: BTreeSet<String> = running.fdb.iter().map(fdb_key).collect();
        let new_fdb: BTreeSet<String> = wanted.fdb.iter().map(fdb_key).collect();
        for entry in running
            .fdb
            .iter()
            .filter(|e| !new_fdb.contains(&fdb_key(e)))
        {
            let outcome = match self.missing.get_mut(&entry.port) {
                Some(missing) => {
                    missing.static_macs.retain(|e| e != entry);
                    Ok(())
                }
                None => self
                    .fdb_del(&entry.mac.to_string(), entry.tenant.as_deref())
                    .map(drop)
                    .map_err(|e| e.to_string()),
            };
            step(format!("remove static MAC {}", entry.mac), outcome);
        }
        for entry in wanted.fdb.iter().filter(|e| !old_fdb.contains(&fdb_key(e))) {
            let outcome = self.static_mac_restore(entry).map_err(|e| e.to_string());
            step(format!("add static MAC {}", entry.mac), outcome);
        }
        for name in old_tenants
            .keys()
            .filter(|n| !new_tenants.contains_key(*n) && **n != DEFAULT_TENANT)
        {
            step(
                format!("delete tenant {name}"),
                self.tenant_delete(name)
                    .map(drop)
                    .map_err(|e| e.to_string()),
            );
        }

        tracing::info!(applied = ?report.applied, failed = ?report.failed, "configuration reloaded");
        report
    }
}

fn fdb_key(entry: &StaticFdbSpec) -> String {
    format!(
        "{}|{}|{}|{:?}",
        entry.mac,
        entry.port,
        entry.tenant.as_deref().unwrap_or(DEFAULT_TENANT),
        entry.remote
    )
}

/// True when only what workers apply changed (tenant, VLANs, guard), which
/// can be swapped without touching the interface.
fn only_policy_changed(old: &PortSpec, new: &PortSpec) -> bool {
    let strip = |s: &PortSpec| PortSpec {
        tenant: None,
        vlans: Vec::new(),
        antispoof: None,
        trust: Vec::new(),
        storm_control: Default::default(),
        fast_path: true,
        ..s.clone()
    };
    strip(old) == strip(new) && old.trunk == new.trunk
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("xsw-persist-{}", std::process::id()));
        let path = dir.join("xsw.toml");
        write_atomically(&path, "first = 1\n").expect("first write");
        write_atomically(&path, "second = 2\n").expect("second write");
        assert_eq!(
            fs::read_to_string(&path).expect("read back"),
            "second = 2\n"
        );
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("xsw.toml")]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn policy_only_changes_are_told_apart_from_interface_changes() {
        let base = PortSpec {
            name: "p".into(),
            ..Default::default()
        };
        let moved = PortSpec {
            tenant: Some("web".into()),
            ..base.clone()
        };
        assert!(only_policy_changed(&base, &moved));
        let forced = PortSpec {
            force: true,
            ..base.clone()
        };
        assert!(!only_policy_changed(&base, &forced));
        let trunk = PortSpec {
            trunk: true,
            ..base.clone()
        };
        assert!(!only_policy_changed(&base, &trunk));
    }
}
