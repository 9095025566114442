//! The local interface for the station's lock screen or login program.
//!
//! A loopback TCP socket speaking one JSON object a line: the lock screen
//! sends `{"ticket":"K7Q-2M9"}` and receives the agent's answer
//! (`{"status":"unlocked","session_id":…}`, `{"status":"refused",…}`) or,
//! when the agent does not answer in time, `{"status":"queued",…}`: the
//! request stays in the spool and is delivered when the agent is back.
//! `{"logout":true}` ends the session. `netbar-collector login TICKET` and
//! `netbar-collector logout` are the same calls from a shell.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::station::{LOGIN_ANSWER_WAIT, LocalCall, LoginCall};

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    logout: bool,
}

/// Listens on `address` and hands each login to the station.
pub(crate) async fn serve(address: SocketAddr, logins: mpsc::Sender<LocalCall>) -> anyhow::Result<()> {
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

async fn answer(stream: TcpStream, logins: mpsc::Sender<LocalCall>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_LINE));
    let mut line = String::new();
    let reply = match lines.read_line(&mut line).await {
        Err(error) => serde_json::json!({ "status": "error", "error": format!("cannot read the request: {error}") }),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Err(error) => {
                serde_json::json!({ "status": "error", "error": format!("expected {{\"ticket\": \"…\"}} or {{\"logout\": true}}: {error}") })
            }
            Ok(Request { ticket: None, logout: true }) => {
                let (answer, answered) = oneshot::channel();
                call(&logins, LocalCall::Logout(answer), answered).await
            }
            Ok(Request { ticket: Some(ticket), logout: false }) if !ticket.trim().is_empty() && ticket.len() <= 256 => {
                let (answer, answered) = oneshot::channel();
                call(&logins, LocalCall::Login(LoginCall { ticket: ticket.trim().to_owned(), answer }), answered).await
            }
            Ok(_) => serde_json::json!({ "status": "error", "error": "send either a ticket of 1 to 256 bytes or logout" }),
        },
    };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
}

async fn call(
    calls: &mpsc::Sender<LocalCall>,
    call: LocalCall,
    answered: oneshot::Receiver<crate::station::LoginAnswer>,
) -> serde_json::Value {
    if calls.send(call).await.is_err() {
        return serde_json::json!({ "status": "error", "error": "the collector is stopping" });
    }
    match tokio::time::timeout(LOGIN_ANSWER_WAIT + Duration::from_secs(1), answered).await {
        Ok(Ok(answer)) => serde_json::to_value(answer).unwrap_or_default(),
        _ => serde_json::json!({ "status": "error", "error": "no answer from the collector" }),
    }
}

/// `netbar-collector login` and `logout`: sends a request to the running
/// collector and returns its answer.
pub(crate) async fn request(address: SocketAddr, request: serde_json::Value) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(address).await.with_context(|| format!("no collector listening on {address}"))?;
    stream.write_all(format!("{request}\n").as_bytes()).await?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).await?;
    Ok(reply.trim().to_owned())
}
