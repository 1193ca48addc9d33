//! The envelope a parked message travels in on its topic's dead-letter twin
//! (`<topic>.dead-letter`).
//!
//! A message is parked when it can never be applied: it does not decode, or its handler kept
//! failing on it alone (see the consumer's module docs). The envelope keeps the original
//! bytes and key untouched, so `hissaback dead-letters replay` can put the very same message
//! back on its topic once the cause is fixed, and says where the message was and why it was
//! parked, for `hissaback dead-letters list`. It goes through the versioned event codec like
//! every event; it is keyed by the original key, so one key's parked messages stay in order
//! in the dead-letter topic too (and are replayed in that order).

use bincode::{Decode, Encode};
use hissaback_topics::bus::Delivery;
use hissaback_topics::{codec, CodecError};

/// The consumer group `hissaback dead-letters replay` reads a dead-letter topic as: its
/// committed position is how far the topic has been replayed, so a second replay does not
/// re-inject the same messages.
pub const REPLAY_GROUP: &str = "dead-letters.replay";

/// Longest error text kept in an envelope (a chain of errors can be long).
const MAX_ERROR_CHARS: usize = 2000;

/// Why a message was parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum DeadLetterReason {
    /// The bytes are not an event this build understands.
    Undecodable,
    /// The handler failed on this event alone, every attempt.
    HandlerFailed,
}

impl DeadLetterReason {
    /// Label value in `hissaback_consumer_dead_letters_total{reason}`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::HandlerFailed => "handler_failed",
        }
    }
}

/// One parked message (the payload of a message on a dead-letter topic).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DeadLetter {
    /// Base name of the topic it was read from.
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    /// The original message, byte for byte (what a replay publishes again).
    pub payload: Vec<u8>,
    /// The consumer group that parked it (other groups of the topic may have applied it).
    pub group: String,
    pub reason: DeadLetterReason,
    /// The codec error, or the handler's last error with its causes.
    pub error: String,
    /// Handler attempts made on it (0 when it did not decode).
    pub attempts: u32,
    /// When it was parked, in milliseconds since the Unix epoch.
    pub parked_at_ms: i64,
}

impl DeadLetter {
    /// The envelope of `delivery`, parked now by `group`.
    pub fn new(delivery: Delivery, group: &str, reason: DeadLetterReason, error: &str, attempts: u32) -> Self {
        let mut error = error.to_string();
        if error.chars().count() > MAX_ERROR_CHARS {
            error = error.chars().take(MAX_ERROR_CHARS).chain("…".chars()).collect();
        }
        let parked_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            topic: delivery.topic,
            partition: delivery.partition,
            offset: delivery.offset,
            key: delivery.key,
            payload: delivery.payload,
            group: group.to_string(),
            reason,
            error,
            attempts,
            parked_at_ms,
        }
    }

    /// The dead-letter message: its key (the original key) and its bytes.
    pub fn to_message(&self) -> Result<(String, Vec<u8>), CodecError> {
        Ok((self.key.clone(), codec::encode(self)?))
    }

    /// Reads an envelope back. Messages parked before envelopes existed (raw payloads) and
    /// foreign bytes are errors; callers decide what to do with them.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery { topic: "conversions".into(), partition: 2, offset: 41, key: "conversion:7".into(), payload: vec![1, 2, 3] }
    }

    #[test]
    fn the_envelope_round_trips_and_keeps_the_original_message() {
        let parked = DeadLetter::new(delivery(), "ledger", DeadLetterReason::HandlerFailed, "store said no", 5);
        let (key, bytes) = parked.to_message().unwrap();
        assert_eq!(key, "conversion:7");
        assert_eq!(bytes[0], hissaback_topics::CODEC_VERSION);
        let back = DeadLetter::decode(&bytes).unwrap();
        assert_eq!(back, parked);
        assert_eq!((back.topic.as_str(), back.partition, back.offset), ("conversions", 2, 41));
        assert_eq!(back.payload, vec![1, 2, 3]);
        assert_eq!(back.error, "store said no");
        assert!(back.parked_at_ms > 1_600_000_000_000);
    }

    #[test]
    fn long_errors_are_cut_and_raw_payloads_are_not_envelopes() {
        let parked = DeadLetter::new(delivery(), "g", DeadLetterReason::Undecodable, &"x".repeat(10_000), 0);
        assert_eq!(parked.error.chars().count(), MAX_ERROR_CHARS + 1);
        assert!(DeadLetter::decode(&[1, 0xff, 0xff]).is_err());
        assert!(DeadLetter::decode(&[]).is_err());
    }
}
