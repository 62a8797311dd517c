//! Lab helpers for the tenant, trunk, anti-spoofing and ACL tests: hosts with
//! chosen addresses, IPv6, hand-made frames, captures that must stay silent,
//! drop counters by reason, and TCP connection attempts that may fail.

use crate::{cmd, Host, Lab, Proc};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;
use std::time::{Duration, Instant};

/// One TCP connection attempt through the switch.
#[derive(Debug)]
pub struct TcpAttempt {
    /// The connection was made and the bytes arrived intact.
    pub connected: bool,
    /// What happened (sender output, sink output), for messages.
    pub detail: String,
}

impl Lab {
    /// Like [`Lab::add_veth_host`] (MAC 02:78:X:00:00:mac_idx), but with IPv4
    /// address `ip` (/24): lets two tenants reuse the same addresses.
    pub fn add_veth_host_ip(&self, name: &str, mac_idx: u8, ip: &str) -> Result<Host> {
        let mut h = self.add_veth_host(name, mac_idx)?;
        let old = format!("{}/24", h.ip);
        cmd::ns_ok(&h.ns, &["ip", "addr", "del", &old, "dev", &h.ifname])?;
        let new = format!("{ip}/24");
        cmd::ns_ok(&h.ns, &["ip", "addr", "add", &new, "dev", &h.ifname])?;
        h.ip = ip.to_string();
        Ok(h)
    }

    /// fd00:7873:77:X::idx, the IPv6 address of host idx.
    pub fn ip6(&self, idx: u8) -> String {
        format!("fd00:7873:77:{}::{idx:x}", self.net)
    }

    /// Turns IPv6 on in `h`'s namespace (it is off in every lab namespace)
    /// without duplicate address detection, and adds `addr`/64 (nodad).
    pub fn enable_ipv6(&self, h: &Host, addr: &str) -> Result<()> {
        let ifk = |k: &str| format!("net.ipv6.conf.{}.{k}", h.ifname);
        for k in [
            "net.ipv6.conf.all.accept_dad=0".to_string(),
            "net.ipv6.conf.default.accept_dad=0".to_string(),
            format!("{}=0", ifk("accept_dad")),
            format!("{}=0", ifk("router_solicitations")),
            "net.ipv6.conf.all.disable_ipv6=0".to_string(),
            "net.ipv6.conf.default.disable_ipv6=0".to_string(),
            format!("{}=0", ifk("disable_ipv6")),
        ] {
            cmd::ns_ok(&h.ns, &["sysctl", "-q", "-w", &k])?;
        }
        let a = format!("{addr}/64");
        cmd::ns_ok(
            &h.ns,
            &["ip", "-6", "addr", "add", &a, "dev", &h.ifname, "nodad"],
        )?;
        Ok(())
    }

    /// Sends `frame` `count` times out of `h`'s interface (xsw-nettool raw-send).
    pub fn raw_send(&self, h: &Host, frame: &[u8], count: u32) -> Result<()> {
        self.raw_send_from_many(h, frame, count, 1, 2)
    }

    /// [`Lab::raw_send`], frame i with the frame's source MAC plus i mod
    /// `sources` (a spray of `sources` addresses), `interval_ms` apart.
    pub fn raw_send_from_many(
        &self,
        h: &Host,
        frame: &[u8],
        count: u32,
        sources: u32,
        interval_ms: u32,
    ) -> Result<()> {
        let nettool = self.bins.nettool.display().to_string();
        let hex = crate::frames::hex(frame);
        let (c, k, i) = (
            count.to_string(),
            sources.to_string(),
            interval_ms.to_string(),
        );
        let limit = Duration::from_secs(10 + u64::from(count) * u64::from(interval_ms) / 1000);
        let out = self.run_in(
            &h.ns,
            &[
                &nettool,
                "raw-send",
                "--iface",
                &h.ifname,
                "--frame",
                &hex,
                "--count",
                &c,
                "--interval-ms",
                &i,
                "--src-count",
                &k,
                "--timeout",
                &limit.as_secs().to_string(),
            ],
            limit,
        )?;
        ensure!(
            out.success(),
            "raw-send from {} failed: {}",
            h.name,
            out.describe()
        );
        Ok(())
    }

    /// tcpdump on `h`'s interface, like [`Lab::capture`] but with its own
    /// label (several captures per host) and a 40 s bound; `-e` output, so
    /// VLAN tags show as "vlan N".
    pub fn capture_as(&self, h: &Host, label: &str, filter: &str, count: u32) -> Result<Proc> {
        let c = count.to_string();
        let mut argv = vec![
            "timeout", "40", "tcpdump", "-i", &h.ifname, "-n", "-l", "-e", "-c", &c,
        ];
        argv.extend(filter.split_whitespace());
        let p = self.spawn_in(&h.ns, &format!("tcpdump-{}-{label}", h.name), &argv)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.log_text().contains("listening on") {
            ensure!(
                Instant::now() < deadline,
                "tcpdump {label} on {} did not start:\n{}",
                h.name,
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(p)
    }

    /// Requires that capture `cap` sees no frame during `window`, and that it
    /// was still listening at the end (so silence means nothing arrived).
    pub fn expect_silence(&self, cap: &mut Proc, window: Duration, what: &str) -> Result<()> {
        match cap.next_line(window) {
            Ok(line) => bail!("{what}: captured {line}\nxswd log:\n{}", self.xswd_log()),
            Err(_) => {
                ensure!(
                    cap.running(),
                    "{what}: the capture {} stopped early, so its silence proves nothing:\n{}",
                    cap.label,
                    cap.log_text()
                );
                Ok(())
            }
        }
    }

    /// Waits for the next captured frame, with a message naming `what`.
    pub fn expect_frame(&self, cap: &mut Proc, timeout: Duration, what: &str) -> Result<String> {
        cap.next_line(timeout).map_err(|e| {
            anyhow!(
                "{what}: nothing captured: {e:#}\nxswd log:\n{}",
                self.xswd_log()
            )
        })
    }

    /// The `drops` object of port `port` in `stats --json`.
    pub fn drops(&self, port: &str) -> Result<Value> {
        port_drops(&self.stats()?, port)
    }

    /// Drops of `reason` on `port` (the reason must be listed).
    pub fn drop_count(&self, port: &str, reason: &str) -> Result<u64> {
        let d = self.drops(port)?;
        d[reason]
            .as_u64()
            .ok_or_else(|| anyhow!("stats --json: port {port} has no drop reason {reason}: {d}"))
    }

    /// Waits up to 10 s for drops of `reason` on `port` to reach `before + n`
    /// (counters are per worker and read as they are), then requires exactly
    /// that; returns the new value. It returns as soon as the count is reached, so the
    /// long bound costs nothing on a quick machine and holds on a loaded one.
    pub fn expect_drops(&self, port: &str, reason: &str, before: u64, n: u64) -> Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.drop_count(port, reason)?;
            if now >= before + n || Instant::now() >= deadline {
                ensure!(
                    now == before + n,
                    "{reason} drops on {port}: {before} -> {now}, expected +{n}\nall drops on {port}: {}",
                    self.drops(port)?
                );
                return Ok(now);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `tenant list --json` as an array.
    pub fn tenants(&self) -> Result<Vec<Value>> {
        match self.ctl_json(&["tenant", "list"])? {
            Value::Array(a) => Ok(a),
            other => bail!("tenant list --json: expected an array, got {other}"),
        }
    }

    /// `tenant list --json` row of `name`, if listed.
    pub fn tenant(&self, name: &str) -> Result<Option<Value>> {
        Ok(self.tenants()?.into_iter().find(|t| t["name"] == name))
    }

    /// True once this xswd knows the tenant commands.
    pub fn supports_tenants(&self) -> Result<bool> {
        Ok(self.ctl(&["--json", "tenant", "list"])?.success())
    }

    /// Tries a TCP connection from `from` to `ip`:`port` on host `to`, sending
    /// 1000 bytes: a sink listens on `to` (bound to `ip`), the connect waits
    /// at most secs/2 s. Reports whether the bytes arrived intact.
    pub fn tcp_try(
        &self,
        from: &Host,
        to: &Host,
        ip: &str,
        port: u16,
        secs: u32,
    ) -> Result<TcpAttempt> {
        let nettool = self.bins.nettool.display().to_string();
        let addr = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        let t = (secs + 3).to_string();
        let mut sink = self.spawn_in(
            &to.ns,
            &format!("tcp-sink-{}-{port}-{}", to.name, next_seq()),
            &[&nettool, "tcp-sink", "--bind", &addr, "--timeout", &t],
        )?;
        sink.wait_line("ready", Duration::from_secs(5))
            .with_context(|| format!("tcp-sink on {} {addr}", to.name))?;
        let s = secs.to_string();
        let sent = self.run_in(
            &from.ns,
            &[
                &nettool,
                "tcp-send",
                "--to",
                &addr,
                "--bytes",
                "1000",
                "--seed",
                "7",
                "--timeout",
                &s,
            ],
            Duration::from_secs(secs as u64 + 3),
        )?;
        let got = sink.next_line(Duration::from_millis(if sent.success() {
            3000
        } else {
            300
        }));
        let connected = sent.success()
            && match &got {
                Ok(line) => {
                    let a: Option<Value> = serde_json::from_str(sent.stdout.trim()).ok();
                    let b: Option<Value> = serde_json::from_str(line).ok();
                    a.is_some() && a == b
                }
                Err(_) => false,
            };
        let detail = format!(
            "TCP {} -> {} {addr}: {}\nsink: {}",
            from.name,
            to.name,
            sent.describe(),
            match got {
                Ok(l) => l,
                Err(_) => "(nothing received)".to_string(),
            }
        );
        Ok(TcpAttempt { connected, detail })
    }
}

fn next_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// The `drops` object of `port` in a `stats --json` reply.
pub fn port_drops(stats: &Value, port: &str) -> Result<Value> {
    let p = stats["ports"]
        .as_array()
        .ok_or_else(|| anyhow!("stats --json has no ports array: {stats}"))?
        .iter()
        .find(|p| p["name"] == port)
        .ok_or_else(|| anyhow!("stats --json lists no port {port}: {stats}"))?;
    Ok(p["drops"].clone())
}
