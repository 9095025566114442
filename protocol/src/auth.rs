//! Who may say what: per-station message authentication, and the threat
//! model it answers.
//!
//! # Threat model
//!
//! The venue LAN is not trusted. Customers sit at the stations; a curious or
//! hostile one can read the collector's files (the key file sits on the
//! station's disk), run their own MQTT client with that station's login,
//! point the station's collector at a broker of their own, and replay what
//! they capture. The bus enforces identities too (the agent's embedded bus,
//! or mosquitto with the deploy/ ACL and client certificates: a station's
//! login publishes under its own topics and reads only its own commands and
//! receipts), but the receivers do not rely on it: every message proves its
//! sender by itself.
//!
//! What a station's key must not let anyone do:
//!
//! 1. publish as another station (unlock a friend's station, hide activity,
//!    forge a login), or as a sensor that station does not bridge (silence a
//!    smoke alarm, fake an all-clear);
//! 2. command another station as if the agent did;
//! 3. replay an old message, its own or the agent's, to undo a newer one or
//!    raise an alarm again.
//!
//! What this module provides against them: every message is authenticated
//! with HMAC-SHA256 under a **per-station key**, 32 random bytes issued at
//! enrollment, known only to that station's collector and the agent. The MAC
//! covers a domain tag, the MQTT topic and the envelope's exact bytes
//! without its `mac` member: a message moved to another topic, edited, or
//! claiming another sender no longer verifies. Messages from the agent to a
//! station (commands, receipts) are signed with that station's key, so one
//! station cannot command another.
//!
//! On the wire the `mac` member is the envelope's last, written exactly as
//! `,"mac":"<64 lower-case hex digits>"}` at the very end of the payload;
//! the signed bytes are the payload with that member cut out (what remains
//! ends with the envelope's `}`). A receiver checks the MAC over the bytes
//! it received, never over a re-encoding of what it parsed: JSON does not
//! give every number or string back byte for byte (a 17-digit float, an
//! escaped character), and a genuine message must never be refused as
//! forged.
//!
//! What the receivers do with it: verify the MAC with the key of the
//! station the topic names, check that the envelope's sender is that
//! station, and that a sensor topic names a sensor enrolled as bridged by
//! it. Replays are refused by the envelope's `seq` and `ts`: the agent keeps
//! each station's newest accepted sequence numbers in its database and
//! answers one accepted before as a duplicate, after any restart;
//! unnumbered messages (telemetry, status) count only within a window
//! around the agent's clock. Commands carry the agent's own number (never
//! reused, whatever the clock does) and time; the collector carries one out
//! only if it is numbered after the last it carried out (kept on its disk)
//! and made within its window.
//!
//! What the key does let its holder do (out of scope, bounded): speak for
//! that one station and its sensors, and, since the agent signs that
//! station's commands with the same key, forge commands to that station
//! alone. An unlock forged so is not a session at the agent: the station is
//! then reported unlocked without one, which the agent treats as
//! unregistered use (locks it, opens an incident). The key file is readable
//! by the service account only; keys are rotated by enrolling again. TLS
//! (with the CA and client certificates) protects confidentiality on the
//! wire and is configured separately; the embedded bus speaks plain MQTT on
//! the venue LAN.

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
    /// The message carries no MAC where it must be (its last member).
    #[error("the message is not authenticated (no mac as its last member)")]
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

    /// The MAC of `unsigned` (an envelope's bytes without its `mac`
    /// member, given in parts) for `topic`.
    fn mac_over(&self, topic: &str, unsigned: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length; 32 bytes never fails.
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(DOMAIN);
        mac.update(topic.as_bytes());
        mac.update(b"\0");
        for part in unsigned {
            mac.update(part);
        }
        mac
    }

    /// Sets the envelope's MAC for publication on `topic`: over the bytes
    /// [`crate::encode`] writes for it without a MAC, which are the bytes it
    /// writes with one, the `mac` member cut out.
    pub fn sign(&self, topic: &str, envelope: &mut Envelope) {
        envelope.mac = None;
        let unsigned = crate::encode(envelope);
        let tag = self.mac_over(topic, &[unsigned.as_bytes()]).finalize().into_bytes();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&tag);
        envelope.mac = Some(MacTag(bytes));
    }

    /// The payload of an envelope written as `unsigned` (JSON text of an
    /// envelope without a `mac`, ending with its `}`), signed for `topic`
    /// over exactly those bytes: for senders that write their own JSON.
    /// None when `unsigned` does not end with `}`.
    pub fn seal(&self, topic: &str, unsigned: &str) -> Option<String> {
        let open = unsigned.strip_suffix('}')?;
        let tag = hex(&self.mac_over(topic, &[unsigned.as_bytes()]).finalize().into_bytes());
        Some(format!("{open},\"mac\":\"{tag}\"}}"))
    }

    /// Checks the MAC of a payload received on `topic`, over the exact
    /// bytes received, in constant time.
    pub fn verify(&self, topic: &str, payload: &[u8]) -> Result<(), AuthError> {
        let (unsigned, tag) = split_mac(payload)?;
        self.mac_over(topic, &[unsigned, b"}"]).verify_slice(&tag.0).map_err(|_| AuthError::Mismatch)
    }
}

/// How the `mac` member ends a payload: `,"mac":"` then 64 hex digits and `"}`.
const MAC_OPENS: &[u8] = b",\"mac\":\"";
const MAC_CLOSES: &[u8] = b"\"}";

/// A payload's bytes before its trailing `mac` member, and the MAC.
fn split_mac(payload: &[u8]) -> Result<(&[u8], MacTag), AuthError> {
    let length = MAC_OPENS.len() + 64 + MAC_CLOSES.len();
    let Some(start) = payload.len().checked_sub(length) else { return Err(AuthError::Missing) };
    let (before, member) = payload.split_at(start);
    let Some(digits) = member.strip_prefix(MAC_OPENS).and_then(|rest| rest.strip_suffix(MAC_CLOSES)) else {
        return Err(AuthError::Missing);
    };
    let text = std::str::from_utf8(digits).map_err(|_| AuthError::Missing)?;
    if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(AuthError::Missing);
    }
    let key = StationKey::from_hex(text).map_err(|_| AuthError::Missing)?;
    Ok((before, MacTag(key.0)))
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
            "description": "HMAC-SHA256 under the station's key of the domain tag, the topic and the envelope's exact bytes without this member, which is the envelope's last, written as ,\"mac\":\"<64 hex>\"} at the very end of the payload. Check it over the bytes received, not a re-encoding."
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

    /// A payload signed with `key` for `topic`; the same as sealing its
    /// encoding.
    fn sealed(key: &StationKey, topic: &str, mut envelope: crate::Envelope) -> String {
        key.sign(topic, &mut envelope);
        encode(&envelope)
    }

    #[test]
    fn signed_messages_verify_after_the_wire() {
        for kind in Kind::ALL {
            let payload = sealed(&key(1), TOPIC, examples::envelope(*kind));
            let mut unsigned = examples::envelope(*kind);
            unsigned.mac = None;
            assert_eq!(key(1).seal(TOPIC, &encode(&unsigned)).as_deref(), Some(payload.as_str()), "{kind}");
            assert_eq!(key(1).verify(TOPIC, payload.as_bytes()), Ok(()), "{kind}");
            assert!(decode(payload.as_bytes()).unwrap().mac.is_some());
        }
    }

    #[test]
    fn the_signed_example_verifies_as_it_goes_on_the_wire() {
        // The golden file is the example pretty-printed for people; on the
        // wire it is compact, its mac last.
        let wire = encode(&examples::envelope(Kind::Command));
        assert_eq!(examples::example_key().verify(examples::COMMAND_TOPIC, wire.as_bytes()), Ok(()));
    }

    #[test]
    fn forgeries_do_not_verify() {
        let payload = sealed(&key(1), TOPIC, examples::envelope(Kind::LoginRequest));
        assert_eq!(key(2).verify(TOPIC, payload.as_bytes()), Err(AuthError::Mismatch), "another station's key");
        assert_eq!(key(1).verify("netbar/v1/sh-0042/station/st-018/event", payload.as_bytes()), Err(AuthError::Mismatch), "another topic");
        let edited = payload.replacen("\"seq\":42", "\"seq\":43", 1);
        assert_ne!(edited, payload);
        assert_eq!(key(1).verify(TOPIC, edited.as_bytes()), Err(AuthError::Mismatch), "an edited header");
        // The same content written another way is not what was signed.
        let spaced = payload.replacen("{", "{ ", 1);
        assert_eq!(key(1).verify(TOPIC, spaced.as_bytes()), Err(AuthError::Mismatch), "other bytes");
        let unsigned = encode(&examples::envelope(Kind::LoginRequest));
        assert_eq!(key(1).verify(TOPIC, unsigned.as_bytes()), Err(AuthError::Missing));
        let trailing = format!("{payload}\n");
        assert_eq!(key(1).verify(TOPIC, trailing.as_bytes()), Err(AuthError::Missing), "the mac must end the payload");
        let upper = payload[..payload.len() - 66].to_owned() + &payload[payload.len() - 66..payload.len() - 2].to_uppercase() + "\"}";
        assert_eq!(key(1).verify(TOPIC, upper.as_bytes()), Err(AuthError::Missing), "lower-case hex only");
        for short in [&b""[..], b"{}", b"\"}"] {
            assert_eq!(key(1).verify(TOPIC, short), Err(AuthError::Missing));
        }
    }

    /// A small generator for the property test (no crate needed, and the
    /// same cases on every run).
    struct Draw(u64);

    impl Draw {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// A float in [low, high] with all its 53 bits of precision drawn.
        fn float(&mut self, low: f64, high: f64) -> f64 {
            low + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (high - low)
        }
        fn text(&mut self, most: usize) -> String {
            const PIECES: &[&str] =
                &["a", "Z", "7", " ", "网", "吧", "한", "글", "é", "ß", "🔥", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{7f}", "\u{2028}"];
            let length = (self.next() % (most as u64 + 1)) as usize;
            (0..length).map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize]).collect()
        }
    }

    /// Regression: the MAC was checked over a re-encoding of the parsed
    /// message, and about one genuine telemetry message in ten (floats with
    /// 17 digits) was refused as forged. Every message signed verifies:
    /// random floats at full precision, long strings, any script, escapes.
    #[test]
    fn every_genuine_message_verifies_whatever_its_floats_and_texts() {
        use crate::messages::*;
        let mut draw = Draw(0x9e37_79b9_7f4a_7c15);
        let mut reencoded_otherwise = 0;
        for case in 0..2_000 {
            let message: crate::Message = match case % 3 {
                0 => Telemetry {
                    cpu_percent: draw.float(0.0, 100.0),
                    memory_used_bytes: 1,
                    memory_total_bytes: 2,
                    uptime_secs: draw.next() >> 20,
                    temperatures: (0..draw.next() % 5)
                        .map(|_| Temperature { label: draw.text(12), celsius: draw.float(-50.0, 150.0) })
                        .collect(),
                    disks: vec![],
                    interactive_users: 1,
                    input_idle_ms: None,
                    apps_running: 3,
                    lock_state: LockState::Unlocked,
                    session: None,
                }
                .into(),
                1 => SensorReading {
                    sensor: "co-1".parse().unwrap(),
                    sensor_kind: SensorKind::CarbonMonoxide,
                    reading: Reading::Ppm { value: draw.float(0.0, 10_000.0) },
                    battery_percent: Some(50),
                    tamper: false,
                }
                .into(),
                _ => Command {
                    command_id: "c-1".into(),
                    action: Action::Notify { level: NoticeLevel::Info, text: draw.text(MAX_TEXT), ends: None, incident: None },
                }
                .into(),
            };
            let envelope = crate::Envelope::new(
                crate::MessageId::from_parts(jiff::Timestamp::UNIX_EPOCH, [7; 10]),
                jiff::Timestamp::UNIX_EPOCH,
                "venue-1".parse().unwrap(),
                crate::Sender::station(&"st-1".parse().unwrap()),
                case,
                message,
            );
            let payload = sealed(&key(3), TOPIC, envelope.clone());
            let decoded = decode(payload.as_bytes()).unwrap_or_else(|error| panic!("case {case}: {error}: {payload}"));
            assert_eq!(key(3).verify(TOPIC, payload.as_bytes()), Ok(()), "case {case}: {payload}");
            // Another sender may write the same message with other bytes
            // (characters escaped, floats in exponent form): signed as it
            // was written, it verifies as it was written.
            let other = key(3).seal(TOPIC, &elsewhere(&encode(&envelope))).unwrap();
            assert_eq!(key(3).verify(TOPIC, other.as_bytes()), Ok(()), "case {case}: {other}");
            let parsed = decode(other.as_bytes()).unwrap_or_else(|error| panic!("case {case}: {error}: {other}"));
            assert_eq!((parsed.id, parsed.seq, parsed.kind()), (decoded.id, decoded.seq, decoded.kind()));
            reencoded_otherwise += usize::from(encode(&parsed) != other);
        }
        // Checking over a re-encoding would have refused these.
        assert!(reencoded_otherwise > 1_000, "{reencoded_otherwise}");
    }

    /// The same JSON written as another encoder might: every non-ASCII
    /// character as a \u escape, and every number after a `value` or
    /// `celsius` key in exponent form.
    pub(crate) fn elsewhere(json: &str) -> String {
        let mut out = String::with_capacity(json.len() * 2);
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        for key in ["\"value\":", "\"celsius\":", "\"cpu_percent\":"] {
            let mut rewritten = String::with_capacity(out.len());
            let mut rest = out.as_str();
            while let Some(at) = rest.find(key) {
                let (before, after) = rest.split_at(at + key.len());
                rewritten.push_str(before);
                let end = after.find([',', '}']).unwrap_or(after.len());
                let number: f64 = after[..end].parse().unwrap_or(0.0);
                rewritten.push_str(&format!("{number:e}"));
                rest = &after[end..];
            }
            rewritten.push_str(rest);
            out = rewritten;
        }
        out
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
