//! xswctl: manage a running xswd through its control socket.

mod assets;
mod cli;
mod render;
mod top;
mod trace;
mod tunnel;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use xsw::control::client;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    if let cli::Command::Config(cli::ConfigCommand::Check { file }) = &args.command {
        return match xsw::config::Config::load(file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let cli::Command::GenerateAssets { dir } = &args.command {
        return assets::run(dir);
    }
    if let cli::Command::Top(top_args) = &args.command {
        return match top::run(&args.socket, top_args, args.json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let tunnel_list = matches!(
        args.command,
        cli::Command::Tunnel(tunnel::TunnelCommand::List)
    );
    let request = cli::request(args.command);
    let reply = match client::call(&args.socket, &request, Duration::from_secs(30)) {
        Ok(reply) => reply,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !reply.ok {
        let message = reply
            .error
            .map(|e| e.message)
            .unwrap_or_else(|| "xswd refused the request".into());
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    let mut data = reply.data.unwrap_or(Value::Null);
    if tunnel_list {
        data = tunnel::only_tunnels(&data);
    }
    let text = if args.json {
        serde_json::to_string_pretty(&data).unwrap_or_default()
    } else if tunnel_list {
        tunnel::render_list(&data)
    } else {
        render::render(&request, &data)
    };
    // A reader that went away (`xswctl stats | head`) is not an error.
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write the reply: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}
