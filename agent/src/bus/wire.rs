//! MQTT 3.1.1 packets over one TCP connection, framed with rumqttc's codec
//! (the maintained part of the rumqtt project): a packet larger than the
//! bound is refused from its header, before its bytes are read.

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("the connection closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("a packet of {0} bytes is over the bus's limit")]
    Oversized(usize),
    #[error("malformed packet: {0}")]
    Malformed(rumqttc::mqttbytes::Error),
    #[error("the peer took more than {0:?} to read what was sent to it")]
    SlowReader(Duration),
}

impl WireError {
    /// The refusal reason this is counted under, if it is one.
    pub(crate) fn reason(&self) -> Option<&'static str> {
        match self {
            WireError::Closed | WireError::Io(_) => None,
            WireError::Oversized(_) => Some("oversized"),
            WireError::Malformed(_) => Some("malformed"),
            WireError::SlowReader(_) => Some("slow_reader"),
        }
    }
}

/// How long a write may wait for the peer to read.
const WRITE_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Wire {
    stream: TcpStream,
    read: BytesMut,
    write: BytesMut,
    max_packet: usize,
}

impl Wire {
    pub(crate) fn new(stream: TcpStream, max_packet: usize) -> Wire {
        Wire { stream, read: BytesMut::with_capacity(1024), write: BytesMut::with_capacity(1024), max_packet }
    }

    /// The next whole packet already received, if there is one.
    pub(crate) fn take(&mut self) -> Result<Option<Packet>, WireError> {
        match Packet::read(&mut self.read, self.max_packet) {
            Ok(packet) => Ok(Some(packet)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => Err(WireError::Oversized(size)),
            Err(error) => Err(WireError::Malformed(error)),
        }
    }

    /// Reads what the peer sent (cancel-safe: what arrived stays buffered).
    pub(crate) async fn fill(&mut self) -> Result<(), WireError> {
        self.read.reserve(4096);
        match self.stream.read_buf(&mut self.read).await? {
            0 => Err(WireError::Closed),
            _ => Ok(()),
        }
    }

    /// The next packet, reading as needed.
    pub(crate) async fn next(&mut self) -> Result<Packet, WireError> {
        loop {
            if let Some(packet) = self.take()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// Queues a packet; [`Wire::flush`] sends what is queued.
    pub(crate) fn queue(&mut self, packet: &Packet) -> Result<(), WireError> {
        packet.write(&mut self.write, usize::MAX).map(drop).map_err(WireError::Malformed)
    }

    pub(crate) async fn flush(&mut self) -> Result<(), WireError> {
        if self.write.is_empty() {
            return Ok(());
        }
        match tokio::time::timeout(WRITE_WITHIN, self.stream.write_all(&self.write)).await {
            Ok(result) => result?,
            Err(_) => return Err(WireError::SlowReader(WRITE_WITHIN)),
        }
        self.write.clear();
        Ok(())
    }

    pub(crate) async fn send(&mut self, packet: &Packet) -> Result<(), WireError> {
        self.queue(packet)?;
        self.flush().await
    }
}
