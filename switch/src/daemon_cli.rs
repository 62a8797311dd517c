//! xswd's command line. It lives in the library so that xswctl's hidden
//! `generate-assets` can write xswd's man page and completions too.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(name = "xswd", version, about = "The xsw switch daemon")]
pub struct Args {
    /// Control socket path.
    #[arg(long, default_value = "/run/xsw/xsw.sock")]
    pub socket: PathBuf,
    /// Configuration file; without it /etc/xsw/xsw.toml is read if it exists.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics on ADDR:PORT (GET /metrics); overrides
    /// `[metrics] listen` in the config. Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}
