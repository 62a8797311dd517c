//! The one validation of a whole config file: what `xswctl config check`,
//! xswd's startup and a reload all run before anything on the host is
//! touched. Per-item rules live in [`super::rules`] (the live control
//! operations apply the same ones); this file adds what only the whole file
//! can tell (duplicates, references between items, section ranges).
//!
//! A new field or section slots in as one more check returning an
//! [`Invalid`] whose field path names it.

use super::rules::{self, Invalid, PortContext, Step, DEFAULT_TENANT, MAX_TENANTS};
use super::Config;
use crate::pipeline::decision::MAX_PORTS;

fn power_of_two_in(value: u32, min: u32, max: u32) -> bool {
    value.is_power_of_two() && (min..=max).contains(&value)
}

fn in_section(section: &'static str, key: &'static str, message: String) -> Invalid {
    Invalid::at(key, message).under(&[Step::Key(section)])
}

/// The first problem of `config`, with the path of its field.
pub fn validate(config: &Config) -> Result<(), Invalid> {
    dataplane(config)?;
    fast_path(config)?;
    umem(config)?;
    tenants(config)?;
    ports(config)?;
    static_macs(config)
}

fn dataplane(config: &Config) -> Result<(), Invalid> {
    let d = &config.dataplane;
    let bad = |key, message: String| Err(in_section("dataplane", key, message));
    if d.workers.is_empty() {
        return bad(
            "workers",
            "list at least one core, e.g. workers = [0]".into(),
        );
    }
    let mut cores = d.workers.clone();
    cores.sort_unstable();
    cores.dedup();
    if cores.len() != d.workers.len() {
        return bad(
            "workers",
            "a core is listed twice; one worker per core".into(),
        );
    }
    if !(1..=1024).contains(&d.batch_size) {
        return bad(
            "batch_size",
            format!("{} is outside 1..=1024", d.batch_size),
        );
    }
    if !(1..=1_000_000).contains(&d.poll_budget) {
        return bad(
            "poll_budget",
            format!("{} is outside 1..=1000000", d.poll_budget),
        );
    }
    if d.mac_aging_secs == 0 {
        return bad("mac_aging_secs", "must be at least 1 second".into());
    }
    if d.fdb_capacity == 0 || d.fdb_capacity > 16_000_000 {
        return bad(
            "fdb_capacity",
            format!("{} is outside 1..=16000000", d.fdb_capacity),
        );
    }
    Ok(())
}

fn fast_path(config: &Config) -> Result<(), Invalid> {
    let f = &config.fast_path;
    let bad = |key, message: String| Err(in_section("fast_path", key, message));
    if !(1..=16_000_000).contains(&f.flows) {
        return bad("flows", format!("{} is outside 1..=16000000", f.flows));
    }
    if f.idle_timeout_secs == 0 {
        return bad("idle_timeout_secs", "must be at least 1 second".into());
    }
    Ok(())
}

fn umem(config: &Config) -> Result<(), Invalid> {
    let u = &config.umem;
    let bad = |key, message: String| Err(in_section("umem", key, message));
    if !power_of_two_in(u.frame_size, 2048, 4096) {
        return bad(
            "frame_size",
            format!("{} must be 2048 or 4096", u.frame_size),
        );
    }
    if !(64..=1 << 20).contains(&u.frame_count) {
        return bad(
            "frame_count",
            format!("{} is outside 64..=1048576", u.frame_count),
        );
    }
    for (key, value) in [
        ("rx_ring", u.rx_ring),
        ("tx_ring", u.tx_ring),
        ("fill_ring", u.fill_ring),
        ("comp_ring", u.comp_ring),
    ] {
        if !power_of_two_in(value, 64, 1 << 16) {
            return bad(
                key,
                format!("{value} must be a power of two from 64 to 65536"),
            );
        }
    }
    Ok(())
}

fn tenants(config: &Config) -> Result<(), Invalid> {
    if config.tenants.len() > MAX_TENANTS {
        return Err(Invalid::at(
            "tenant",
            format!("this switch holds at most {MAX_TENANTS} tenants"),
        ));
    }
    for (i, spec) in config.tenants.iter().enumerate() {
        let here = [Step::Key("tenant"), Step::Index(i)];
        rules::tenant(spec).map_err(|e| e.under(&here))?;
        if config.tenants[..i].iter().any(|t| t.name == spec.name) {
            return Err(
                Invalid::at("name", format!("tenant {:?} is listed twice", spec.name)).under(&here),
            );
        }
    }
    Ok(())
}

fn ports(config: &Config) -> Result<(), Invalid> {
    if config.ports.len() > MAX_PORTS {
        return Err(Invalid::at(
            "port",
            format!("this switch holds at most {MAX_PORTS} ports"),
        ));
    }
    let tenant_exists =
        |name: &str| name == DEFAULT_TENANT || config.tenants.iter().any(|t| t.name == name);
    let context = PortContext {
        tenant_exists: &tenant_exists,
        workers: config.dataplane.workers.len(),
    };
    for (i, spec) in config.ports.iter().enumerate() {
        let here = [Step::Key("port"), Step::Index(i)];
        rules::port(spec, &context).map_err(|e| e.under(&here))?;
        if config.ports[..i].iter().any(|p| p.name == spec.name) {
            return Err(
                Invalid::at("name", format!("port {:?} is listed twice", spec.name)).under(&here),
            );
        }
        tunnel_unique(&config.ports[..i], spec).map_err(|e| e.under(&here))?;
    }
    Ok(())
}

/// A VNI received on an address and port must belong to exactly one tunnel (hence
/// one tenant); the live `tunnel add` refuses the same clash against the running
/// switch.
fn tunnel_unique(earlier: &[super::PortSpec], spec: &super::PortSpec) -> Result<(), Invalid> {
    let Some(tunnel) = &spec.tunnel else {
        return Ok(());
    };
    let endpoint = tunnel.endpoint();
    let clash = earlier.iter().find(|p| {
        p.tunnel
            .as_ref()
            .is_some_and(|t| t.endpoint() == endpoint && t.vni == tunnel.vni)
    });
    match clash {
        Some(other) => Err(Invalid::at(
            "vni",
            format!(
                "VNI {} on {endpoint} is already tunnel {}'s",
                tunnel.vni, other.name
            ),
        )
        .under(&[Step::Key("tunnel")])),
        None => Ok(()),
    }
}

fn static_macs(config: &Config) -> Result<(), Invalid> {
    for (i, entry) in config.fdb.iter().enumerate() {
        let here = [Step::Key("fdb"), Step::Index(i)];
        rules::static_mac(entry).map_err(|e| e.under(&here))?;
        let Some(port) = config.ports.iter().find(|p| p.name == entry.port) else {
            return Err(Invalid::at(
                "port",
                format!(
                    "static MAC {} names port {:?}, which no [[port]] defines",
                    entry.mac, entry.port
                ),
            )
            .under(&here));
        };
        rules::static_mac_tenant(port, entry.tenant.as_deref()).map_err(|e| e.under(&here))?;
        let duplicate = config.fdb[..i].iter().any(|other| {
            other.mac == entry.mac
                && rules::static_mac_tenant(
                    config
                        .ports
                        .iter()
                        .find(|p| p.name == other.port)
                        .unwrap_or(port),
                    other.tenant.as_deref(),
                )
                .ok()
                    == rules::static_mac_tenant(port, entry.tenant.as_deref()).ok()
        });
        if duplicate {
            return Err(Invalid::at(
                "mac",
                format!("static MAC {} is listed twice in one tenant", entry.mac),
            )
            .under(&here));
        }
    }
    Ok(())
}
