//! xswctl: manage a running xswd through its control socket.

mod cli;
mod render;

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
    let data = reply.data.unwrap_or(Value::Null);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&data).unwrap_or_default()
        );
    } else {
        println!("{}", render::render(&request, &data));
    }
    ExitCode::SUCCESS
}
