//! xswd: the xsw daemon. Loads the config, starts the workers, serves the
//! control socket until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use xsw::config::{self, Config};
use xsw::control::metrics::MetricsServer;
use xsw::control::persist::Persistence;
use xsw::control::server::{ControlServer, ServerWaker};
use xsw::control::switch::Switch;
use xsw::daemon_cli::Args;
use xsw::dataplane::{Dataplane, DataplaneSettings};
use xsw::port::link_events::{LinkEvent, LinkEvents};
use xsw::service;

/// The config file: `--config`, or the default path (which may not exist
/// yet: xswd then starts empty and creates it on the first change).
fn config_path(args: &Args) -> PathBuf {
    args.config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH))
}

fn load_config(args: &Args) -> Result<Config, String> {
    let path = config_path(args);
    if args.config.is_none() && !path.exists() {
        return Ok(Config::default());
    }
    Config::load(&path).map_err(|e| e.to_string())
}

/// Changes are saved only to a regular file (or a new one): never through a
/// device such as /dev/null, which a rename would replace.
fn can_save_to(path: &std::path::Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.is_file(),
        Err(_) => true,
    }
}

/// Logs to the journal with structured fields (PORT=, TENANT=, ...) when
/// systemd connected stderr to it, and as text on stderr otherwise.
fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // systemd sets JOURNAL_STREAM when stderr goes to the journal.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journald) => {
                // Fields keep their own names (PORT=, TENANT=), and INFO is
                // syslog's "informational", not "notice".
                let journald = journald
                    .with_syslog_identifier("xswd".into())
                    .with_field_prefix(None)
                    .with_priority_mappings(tracing_journald::PriorityMappings {
                        info: tracing_journald::Priority::Informational,
                        debug: tracing_journald::Priority::Debug,
                        ..tracing_journald::PriorityMappings::new()
                    });
                registry.with(journald).init();
                return;
            }
            Err(e) => eprintln!("xswd: journal not reachable ({e}); logging to stderr"),
        }
    }
    registry
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}

/// Blocks the termination signals in this thread and every thread it starts,
/// so that one thread can wait for them with sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use,
    // and pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// One allocator arena for the whole daemon. glibc gives each thread that
/// meets contention an arena of its own and keeps what is freed there: ten
/// control clients adding and removing ports at once (each port's program
/// load allocates megabytes, on the thread serving the request) left RSS at
/// 130-290 MB instead of ~30 MB. The data plane allocates nothing per frame,
/// so one arena costs it nothing.
fn limit_allocator_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before any
    // thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn main() -> ExitCode {
    limit_allocator_arenas();
    let args = Args::parse();
    init_logging(&args.log_level);

    let signals = block_signals();
    let config = match load_config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("xswd: {e}");
            return ExitCode::from(2);
        }
    };
    // Bound before anything else starts: an address in use changes nothing.
    let metrics = match args
        .metrics
        .or(config.metrics.listen)
        .map(MetricsServer::bind)
    {
        None => None,
        Some(Ok(metrics)) => Some(metrics),
        Some(Err(e)) => {
            eprintln!("xswd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // What the UMEMs pin, to say which capability is missing when the kernel
    // refuses (CAP_IPC_LOCK matters only above RLIMIT_MEMLOCK).
    let pinned = config.dataplane.workers.len() as u64
        * u64::from(config.umem.frame_count)
        * u64::from(config.umem.frame_size);
    let fail = |what: String| {
        eprintln!("xswd: {what}");
        if let Some(why) = service::missing_capabilities(pinned) {
            eprintln!("xswd: {why}");
        }
        ExitCode::FAILURE
    };
    let dataplane = match Dataplane::start(&DataplaneSettings::from_config(
        &config.dataplane,
        &config.umem,
        &config.fast_path,
    )) {
        Ok(dataplane) => dataplane,
        Err(e) => return fail(xsw::error::chain(&e)),
    };
    let server = match ControlServer::bind(&args.socket) {
        Ok(server) => server,
        Err(e) => return fail(e.to_string()),
    };
    let mut initial = Switch::new(dataplane, config.dataplane.clone(), config.umem.clone());
    let path = config_path(&args);
    if can_save_to(&path) {
        initial.set_persistence(Persistence { path });
    } else {
        tracing::warn!(config = %path.display(), "not a regular file: changes made with xswctl will not be saved");
    }
    // apply_config undoes its own steps (taps it created included) when the
    // host refuses one.
    if let Err(e) = initial.apply_config(&config) {
        initial.shutdown();
        let path = config_path(&args);
        let line = Config::line_in_file(&path, &e.field)
            .map(|l| format!("line {l}: "))
            .unwrap_or_default();
        return fail(format!(
            "{}: {line}cannot apply the configuration, nothing was kept: {e}",
            path.display()
        ));
    }
    let switch = Arc::new(Mutex::new(initial));
    let stop = Arc::new(AtomicBool::new(false));
    spawn_signal_thread(signals, switch.clone(), stop.clone(), server.waker());
    spawn_link_monitor(switch.clone(), stop.clone());
    if let Some(metrics) = metrics {
        let addr = metrics.addr();
        match metrics.spawn(switch.clone()) {
            Ok(()) => tracing::info!(%addr, "serving metrics on http://{addr}/metrics"),
            Err(e) => tracing::error!("{}", xsw::error::chain(&e)),
        }
    }

    let watched = switch.clone();
    let last_turns = Mutex::new(Vec::new());
    service::spawn_watchdog(move || {
        let (Ok(switch), Ok(mut last)) = (watched.lock(), last_turns.lock()) else {
            return false;
        };
        switch.workers_progressing(&mut last)
    });
    service::notify_ready(&format!("{} ports from the config", config.ports.len()));
    tracing::info!(socket = %args.socket.display(), workers = ?config.dataplane.workers, "xswd ready");
    server.serve(switch.clone(), stop);
    let mut guard = switch
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGHUP reloads the config file; SIGTERM and SIGINT stop xswd.
fn spawn_signal_thread(
    signals: libc::sigset_t,
    switch: Arc<Mutex<Switch>>,
    stop: Arc<AtomicBool>,
    waker: ServerWaker,
) {
    let spawned = std::thread::Builder::new().name("xsw-signals".into()).spawn(move || loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `signals` is an initialised set and `signal` a valid place
        // for sigwait to store the signal number.
        if unsafe { libc::sigwait(&signals, &mut signal) } != 0 {
            continue;
        }
        if signal == libc::SIGHUP {
            service::notify_reloading();
            let mut guard = switch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match guard.reload() {
                Ok(report) if report.failed.is_empty() => tracing::info!("configuration reloaded"),
                Ok(report) => tracing::error!(failed = ?report.failed, "configuration reloaded with failures"),
                Err(e) => tracing::error!("reload refused, running configuration unchanged: {e}"),
            }
            service::notify_ready("configuration reloaded");
            continue;
        }
        tracing::info!(signal, "stopping");
        service::notify_stopping();
        stop.store(true, Ordering::SeqCst);
        waker.wake();
        return;
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the signal thread: SIGTERM and SIGHUP will not be handled");
    }
}

/// Follows link state, so a port whose link comes up starts forwarding. The kernel's
/// link notifications wake it; it re-reads every port's state then, and once a
/// minute in case a notification was missed. (Polling every port every 300 ms cost
/// an idle switch over 1% of a core.)
fn spawn_link_monitor(switch: Arc<Mutex<Switch>>, stop: Arc<AtomicBool>) {
    const SAFETY_NET: Duration = Duration::from_secs(60);
    const STOP_CHECK: Duration = Duration::from_secs(1);
    let mut events = match LinkEvents::open() {
        Ok(events) => events,
        Err(e) => {
            tracing::error!("{}: link changes will not be seen", xsw::error::chain(&e));
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("xsw-links".into())
        .spawn(move || {
            let mut quiet = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let changed = events.wait(STOP_CHECK) == LinkEvent::Changed;
                quiet = if changed {
                    Duration::ZERO
                } else {
                    quiet + STOP_CHECK
                };
                if !changed && quiet < SAFETY_NET {
                    continue;
                }
                quiet = Duration::ZERO;
                if let Ok(mut s) = switch.lock() {
                    s.refresh_links();
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the link monitor: link changes will not be seen");
    }
}
