//! The local interface for the station's lock screen or login program.
//!
//! A loopback TCP socket speaking one JSON object a line: the lock screen
//! sends `{"ticket":"K7Q-2M9"}` and receives the agent's answer
//! (`{"status":"unlocked","session_id":…}`, `{"status":"refused",…}`) or,
//! when the agent does not answer in time, `{"status":"queued",…}`: the
//! request stays in the spool and is delivered when the agent is back.
//! `netbar-collector login TICKET` is the same call from a shell.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::station::{LOGIN_ANSWER_WAIT, LoginCall};

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    ticket: String,
}

/// Listens on `address` and hands each login to the station.
pub(crate) async fn serve(address: SocketAddr, logins: mpsc::Sender<LoginCall>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address} for the lock screen"))?;
    tracing::info!(%address, "listening for the lock screen");
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a lock screen connection failed");
                continue;
            }
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        tokio::spawn(answer(stream, logins.clone()));
    }
}

async fn answer(stream: TcpStream, logins: mpsc::Sender<LoginCall>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE));
    let mut line = String::new();
    let reply = match lines.read_line(&mut line).await {
        Err(error) => serde_json::json!({ "status": "error", "error": format!("cannot read the request: {error}") }),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Err(error) => serde_json::json!({ "status": "error", "error": format!("expected {{\"ticket\": \"…\"}}: {error}") }),
            Ok(request) if request.ticket.trim().is_empty() || request.ticket.len() > 256 => {
                serde_json::json!({ "status": "error", "error": "the ticket must be 1 to 256 bytes" })
            }
            Ok(request) => {
                let (answer, answered) = oneshot::channel();
                if logins.send(LoginCall { ticket: request.ticket.trim().to_owned(), answer }).await.is_err() {
                    serde_json::json!({ "status": "error", "error": "the collector is stopping" })
                } else {
                    match tokio::time::timeout(LOGIN_ANSWER_WAIT + Duration::from_secs(1), answered).await {
                        Ok(Ok(answer)) => serde_json::to_value(answer).unwrap_or_default(),
                        _ => serde_json::json!({ "status": "error", "error": "no answer from the collector" }),
                    }
                }
            }
        },
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}

/// `netbar-collector login`: sends a ticket to the running collector and
/// prints its answer.
pub(crate) async fn login(address: SocketAddr, ticket: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address).await.with_context(|| format!("no collector listening on {address}"))?;
    stream.write_all(format!("{}\n", serde_json::json!({ "ticket": ticket })).as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    Ok(reply.trim().to_owned())
}
