//! Who may say what: per-station message authentication, and the threat
//! model it answers.
//!
//! # Threat model
//!
//! The venue LAN is not trusted. Customers sit at the stations; a curious or
//! hostile one can read the collector's files if the PC is badly set up,
//! run their own MQTT client against the agent's broker, and replay what
//! they capture. The agent's embedded broker (rumqttd) has no topic ACLs, so
//! any client that can connect can publish on any topic; mosquitto can
//! restrict topics per user, but only if every venue configures it right.
//! We therefore do not rely on the broker to know who published what.
//!
//! What an attacker at a station must not be able to do:
//!
//! 1. publish as another station (unlock a friend's station, hide activity,
//!    forge a login), or as a sensor that station does not bridge (silence a
//!    smoke alarm, fake an all-clear);
//! 2. send commands to stations as if they came from the agent;
//! 3. replay an old message to undo a newer one.
//!
//! What this module provides against them: every message is authenticated
//! with HMAC-SHA256 under a **per-station key**, 32 random bytes issued at
//! enrollment, known only to that station's collector and the agent. The MAC
//! covers a domain tag, the MQTT topic and the whole envelope as encoded
//! without its `mac` field: a message moved to another topic, edited, or
//! claiming another sender no longer verifies. Messages from the agent to a
//! station (commands, receipts) are signed with that station's key, so one
//! station cannot command another.
//!
//! What the receivers do with it (the agent's side belongs to the agent):
//! verify the MAC with the key of the station the topic names, check that
//! the envelope's sender is that station, and that a sensor topic names a
//! sensor enrolled as bridged by it; refuse duplicates by message id and
//! sequence number, and messages whose timestamp is far from the agent's
//! clock (replay of sequenced messages is thus refused as a duplicate, and
//! of live ones bounded in time).
//!
//! Out of scope: an attacker with administrator rights on a station owns
//! that station's key and can speak for that station and its sensors (only
//! those); the key file is readable by the service account only. TLS (with
//! the CA and optional client certificates) protects confidentiality on the
//! wire and is configured separately. Keys are rotated by enrolling again.

use std::fmt;

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::envelope::Envelope;

type HmacSha256 = Hmac<Sha256>;

/// Separates netbar's MACs from any other use of the same key.
const DOMAIN: &[u8] = b"netbar-v1-message\0";

/// A station's secret key, issued at enrollment.
#[derive(Clone, PartialEq, Eq)]
pub struct StationKey([u8; 32]);

impl fmt::Debug for StationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.write_str("StationKey(…)")
    }
}

/// Why a key or a MAC was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The key is not 64 hexadecimal characters.
    #[error("a station key is 64 hexadecimal characters (32 bytes); this one is not")]
    KeyFormat,
    /// The message carries no MAC.
    #[error("the message is not authenticated (no mac)")]
    Missing,
    /// The MAC does not match: wrong key, edited message or wrong topic.
    #[error("the message's mac does not match: forged, altered, or published on another topic")]
    Mismatch,
}

impl StationKey {
    /// A key from its 32 bytes (the caller draws them from a secure RNG).
    pub fn from_bytes(bytes: [u8; 32]) -> StationKey {
        StationKey(bytes)
    }

    /// Parses the key's hexadecimal form (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<StationKey, AuthError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(AuthError::KeyFormat);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| AuthError::KeyFormat)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| AuthError::KeyFormat)?;
        }
        Ok(StationKey(bytes))
    }

    /// The key's hexadecimal form, for the enrollment file.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The station's password on the venue's broker, derived from the key so
    /// that enrollment hands out one secret: the first 32 hex digits of
    /// HMAC-SHA256(key, "netbar-v1-broker-password").
    pub fn broker_password(&self) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"netbar-v1-broker-password");
        hex(&mac.finalize().into_bytes()[..16])
    }

    fn mac_for(&self, topic: &str, envelope: &Envelope) -> HmacSha256 {
        let mut unsigned = envelope.clone();
        unsigned.mac = None;
        // HMAC takes keys of any length; 32 bytes never fails.
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(DOMAIN);
        mac.update(topic.as_bytes());
        mac.update(b"\0");
        mac.update(crate::encode(&unsigned).as_bytes());
        mac
    }

    /// Sets the envelope's MAC for publication on `topic`.
    pub fn sign(&self, topic: &str, envelope: &mut Envelope) {
        let tag = self.mac_for(topic, envelope).finalize().into_bytes();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&tag);
        envelope.mac = Some(MacTag(bytes));
    }

    /// Checks the envelope's MAC for a message received on `topic`, in
    /// constant time.
    pub fn verify(&self, topic: &str, envelope: &Envelope) -> Result<(), AuthError> {
        let tag = envelope.mac.as_ref().ok_or(AuthError::Missing)?;
        self.mac_for(topic, envelope).verify_slice(&tag.0).map_err(|_| AuthError::Mismatch)
    }
}

/// An HMAC-SHA256 tag, written as 64 lower-case hexadecimal characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacTag(pub [u8; 32]);

/// Bytes as lower-case hexadecimal: how netbar writes every key, hash and
/// serial number.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl serde::Serialize for MacTag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for MacTag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(serde::de::Error::custom("a mac is 64 lower-case hexadecimal characters"));
        }
        StationKey::from_hex(&text).map(|key| MacTag(key.0)).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for MacTag {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MacTag".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "HMAC-SHA256 under the station's key of the topic and the envelope without this field."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Kind;
    use crate::{decode, encode, examples};

    const TOPIC: &str = "netbar/v1/sh-0042/station/st-017/event";

    fn key(byte: u8) -> StationKey {
        StationKey::from_bytes([byte; 32])
    }

    #[test]
    fn signed_messages_verify_after_the_wire() {
        for kind in Kind::ALL {
            let mut envelope = examples::envelope(*kind);
            key(1).sign(TOPIC, &mut envelope);
            let received = decode(encode(&envelope).as_bytes()).unwrap();
            assert_eq!(key(1).verify(TOPIC, &received), Ok(()), "{kind}");
        }
    }

    #[test]
    fn the_signed_golden_example_verifies() {
        let golden = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/golden/command.json")).unwrap();
        let envelope = decode(&golden).unwrap();
        assert!(envelope.mac.is_some());
        assert_eq!(examples::example_key().verify(examples::COMMAND_TOPIC, &envelope), Ok(()));
    }

    #[test]
    fn forgeries_do_not_verify() {
        let mut envelope = examples::envelope(Kind::LoginRequest);
        key(1).sign(TOPIC, &mut envelope);
        assert_eq!(key(2).verify(TOPIC, &envelope), Err(AuthError::Mismatch), "another station's key");
        assert_eq!(key(1).verify("netbar/v1/sh-0042/station/st-018/event", &envelope), Err(AuthError::Mismatch), "another topic");
        let mut edited = envelope.clone();
        edited.seq += 1;
        assert_eq!(key(1).verify(TOPIC, &edited), Err(AuthError::Mismatch), "an edited header");
        let mut unsigned = envelope;
        unsigned.mac = None;
        assert_eq!(key(1).verify(TOPIC, &unsigned), Err(AuthError::Missing));
    }

    #[test]
    fn broker_passwords_differ_per_key_and_are_stable() {
        assert_eq!(key(1).broker_password(), key(1).broker_password());
        assert_ne!(key(1).broker_password(), key(2).broker_password());
        assert_eq!(key(1).broker_password().len(), 32);
        assert!(!key(1).to_hex().contains(&key(1).broker_password()));
    }

    #[test]
    fn keys_in_hex() {
        let key = key(0xab);
        assert_eq!(StationKey::from_hex(&format!(" {}\n", key.to_hex())), Ok(key.clone()));
        assert_eq!(format!("{key:?}"), "StationKey(…)");
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(65), &"é".repeat(32)] {
            assert_eq!(StationKey::from_hex(bad), Err(AuthError::KeyFormat), "{bad:?}");
        }
    }
}
