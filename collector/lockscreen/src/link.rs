//! The lock screen's line to the collector: attached over the local
//! interface, it hears what to show and the pings, and says what it shows.
//! The connection is made again whenever it ends.

use std::net::SocketAddr;
use std::time::Duration;

use iced::Subscription;
use iced::futures::SinkExt;
use iced::futures::channel::mpsc::Sender;
use netbar_protocol::local::{FromScreen, LoginAnswer, Request, ToScreen};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// What the line brings.
#[derive(Debug, Clone)]
pub(crate) enum Heard {
    /// Attached: what the lock screen says goes here.
    Attached(UnboundedSender<FromScreen>),
    /// From the collector.
    Said(ToScreen),
    /// The connection ended or could not be made; it is tried again.
    Lost(String),
}

/// How long to wait before connecting again.
const AGAIN: Duration = Duration::from_millis(500);

/// The line to the collector at `address`, as a subscription.
pub(crate) fn subscription(address: SocketAddr) -> Subscription<Heard> {
    Subscription::run_with_id(
        address,
        iced::stream::channel(64, move |mut output: Sender<Heard>| async move {
            loop {
                let reason = match attach(address, &mut output).await {
                    Ok(()) => "the collector closed the connection".to_owned(),
                    Err(error) => error.to_string(),
                };
                if output.send(Heard::Lost(reason)).await.is_err() {
                    return;
                }
                tokio::time::sleep(AGAIN).await;
            }
        }),
    )
}

fn line(value: &impl serde::Serialize) -> String {
    let mut text = serde_json::to_string(value).unwrap_or_default();
    text.push('\n');
    text
}

async fn attach(address: SocketAddr, output: &mut Sender<Heard>) -> std::io::Result<()> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    write.write_all(line(&Request { watch: true, ..Request::default() }).as_bytes()).await?;
    let (says, mut said) = unbounded_channel();
    if output.send(Heard::Attached(says)).await.is_err() {
        return Ok(());
    }
    let mut lines = BufReader::new(read).lines();
    loop {
        tokio::select! {
            next = lines.next_line() => {
                let Some(text) = next? else { return Ok(()) };
                match serde_json::from_str::<ToScreen>(&text) {
                    Ok(heard) => {
                        if output.send(Heard::Said(heard)).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(error) => eprintln!("netbar-lockscreen: a line from the collector is not understood: {error}"),
                }
            }
            Some(saying) = said.recv() => write.write_all(line(&saying).as_bytes()).await?,
        }
    }
}

/// A login or logout, on a connection of its own.
pub(crate) async fn request(address: SocketAddr, request: Request) -> LoginAnswer {
    let asked = async {
        let mut stream = TcpStream::connect(address).await?;
        stream.write_all(line(&request).as_bytes()).await?;
        let mut reply = String::new();
        BufReader::new(stream).read_line(&mut reply).await?;
        serde_json::from_str::<LoginAnswer>(reply.trim()).map_err(std::io::Error::other)
    };
    // The collector answers within its own wait (the agent's answer or "queued").
    match tokio::time::timeout(Duration::from_secs(15), asked).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => LoginAnswer::Error { error: error.to_string() },
        Err(_) => LoginAnswer::Error { error: "no answer from the collector".into() },
    }
}
