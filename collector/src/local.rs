//! The local interface for the station's lock screen or login program.
//!
//! A loopback TCP socket speaking one JSON object a line: the lock screen
//! sends `{"ticket":"K7Q-2M9"}` and receives the agent's answer
//! (`{"status":"unlocked","session_id":…}`, `{"status":"refused",…}`) or,
//! when the agent does not answer in time, `{"status":"queued",…}`: the
//! request stays in the spool and is delivered when the agent is back.
//! `{"logout":true}` ends the session. `netbar-collector login TICKET` and
//! `netbar-collector logout` are the same calls from a shell. A lock screen
//! sends `{"watch":true}` and keeps the connection (see [`crate::screen`]
//! and `netbar_protocol::local`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use netbar_protocol::local::{LoginAnswer, Request};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::screen::Screens;
use crate::station::{LOGIN_ANSWER_WAIT, LocalCall, LoginCall};

/// Longest request line accepted.
const MAX_LINE: u64 = 4096;

/// Listens on `address` and hands each login to the station, each lock
/// screen to `screens`.
pub(crate) async fn serve(address: SocketAddr, logins: mpsc::Sender<LocalCall>, screens: Option<Arc<Screens>>) -> anyhow::Result<()> {
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
        let _ = stream.set_nodelay(true);
        tokio::spawn(answer(stream, logins.clone(), screens.clone()));
    }
}

fn error(error: String) -> LoginAnswer {
    LoginAnswer::Error { error }
}

async fn answer(stream: TcpStream, logins: mpsc::Sender<LocalCall>, screens: Option<Arc<Screens>>) {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    let reply = match (&mut stream).take(MAX_LINE).read_line(&mut line).await {
        Err(failure) => error(format!("cannot read the request: {failure}")),
        Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
            Err(failure) => error(format!("expected {{\"ticket\": \"…\"}}, {{\"logout\": true}} or {{\"watch\": true}}: {failure}")),
            Ok(Request { ticket: None, logout: false, watch: true }) => match screens {
                Some(screens) => return crate::screen::watch(stream, screens).await,
                None => error("this collector runs no lock screen".into()),
            },
            Ok(Request { ticket: None, logout: true, watch: false }) => {
                let (answer, answered) = oneshot::channel();
                call(&logins, LocalCall::Logout(answer), answered).await
            }
            Ok(Request { ticket: Some(ticket), logout: false, watch: false }) if !ticket.trim().is_empty() && ticket.len() <= 256 => {
                let (answer, answered) = oneshot::channel();
                call(&logins, LocalCall::Login(LoginCall { ticket: ticket.trim().to_owned(), answer }), answered).await
            }
            Ok(_) => error("send one of: a ticket of 1 to 256 bytes, logout, watch".into()),
        },
    };
    let reply = serde_json::to_string(&reply).unwrap_or_default();
    let _ = stream.get_mut().write_all(format!("{reply}\n").as_bytes()).await;
}

async fn call(calls: &mpsc::Sender<LocalCall>, call: LocalCall, answered: oneshot::Receiver<LoginAnswer>) -> LoginAnswer {
    if calls.send(call).await.is_err() {
        return error("the collector is stopping".into());
    }
    match tokio::time::timeout(LOGIN_ANSWER_WAIT + Duration::from_secs(1), answered).await {
        Ok(Ok(answer)) => answer,
        _ => error("no answer from the collector".into()),
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
