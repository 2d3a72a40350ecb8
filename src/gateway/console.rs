//! The reviewer console's SSH side: `ssh console CMD` runs a console command (`approvals
//! --json`, `approve ID`, `deny ID`, ...) for a certificate in a reviewer group; `ssh -t
//! console` (a pty and a shell) opens the interactive screen of `console_screen`. The commands
//! themselves live in `approvals::console`; this module only moves their text over the channel.

use std::sync::Arc;

use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use super::Gateway;
use crate::approvals::run_console_command;
use crate::identity::ca::CertIdentity;

/// Longest console command line accepted.
const MAX_CONSOLE_LINE: usize = 4096;

/// Serves one console channel: the first exec request is run, its output returned, and the
/// channel closed; or a shell request opens the screen, sized by the pty request before it.
pub async fn run(gateway: Arc<Gateway>, reviewer: CertIdentity, mut channel: Channel<Msg>) {
    let mut size = None;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::RequestPty {
                col_width,
                row_height,
                ..
            })
            | Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            }) => size = Some(super::console_screen::terminal_size(col_width, row_height)),
            Some(ChannelMsg::RequestShell { .. }) => {
                let Some(size) = size else {
                    let line = b"gatehouse: the console needs a terminal: ssh -t console@HOST, or run one of its commands: ssh console@HOST approvals\r\n";
                    let _ = channel.extended_data_bytes(1, line.to_vec()).await;
                    let _ = channel
                        .exit_status(crate::approvals::console::EXIT_USAGE)
                        .await;
                    let _ = channel.eof().await;
                    let _ = channel.close().await;
                    return;
                };
                super::console_screen::run(gateway, reviewer, channel, size).await;
                return;
            }
            Some(ChannelMsg::Exec { command, .. }) => {
                let reply = if command.len() > MAX_CONSOLE_LINE {
                    crate::approvals::ConsoleReply {
                        stdout: String::new(),
                        stderr: "gatehouse: console command too long\n".into(),
                        exit: 2,
                    }
                } else {
                    let line = String::from_utf8_lossy(&command).into_owned();
                    tracing::info!(command = %line, "console command");
                    let approvals = gateway.approvals.clone();
                    let who = reviewer.clone();
                    // sled writes happen inside; keep them off the async threads.
                    match tokio::task::spawn_blocking(move || {
                        run_console_command(&approvals, &who, &line)
                    })
                    .await
                    {
                        Ok(reply) => reply,
                        Err(_) => crate::approvals::ConsoleReply {
                            stdout: String::new(),
                            stderr: "gatehouse: console command failed\n".into(),
                            exit: 1,
                        },
                    }
                };
                if !reply.stdout.is_empty() {
                    let _ = channel.data_bytes(reply.stdout.into_bytes()).await;
                }
                if !reply.stderr.is_empty() {
                    let _ = channel
                        .extended_data_bytes(1, reply.stderr.into_bytes())
                        .await;
                }
                let _ = channel.exit_status(reply.exit).await;
                let _ = channel.eof().await;
                let _ = channel.close().await;
                return;
            }
            Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    }
}
