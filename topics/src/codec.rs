//! The versioned binary codec for events.
//!
//! Every encoded event is one version byte followed by the bincode 2 body (standard
//! configuration). bincode is pinned at 2.x (3.0 is an empty release) and used only here, so
//! changing the wire format means a new version byte and a decoder for the old one, never a
//! silent break of a consumer that still has older events in its topic.

use bincode::{Decode, Encode};

/// The version byte written in front of every event this build produces.
pub const CODEC_VERSION: u8 = 1;

/// Why bytes could not be decoded into an event.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty message")]
    Empty,
    #[error("unknown codec version {0}")]
    UnknownVersion(u8),
    #[error("malformed event body: {0}")]
    Malformed(String),
    #[error("trailing bytes after the event body")]
    Trailing,
    #[error("cannot encode event: {0}")]
    Encode(String),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes an event: version byte, then body.
pub fn encode<T: Encode>(event: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![CODEC_VERSION];
    let body = bincode::encode_to_vec(event, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes an event written by [`encode`] (any version this build understands).
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        1 => {
            let (value, read) = bincode::decode_from_slice(body, config())
                .map_err(|e| CodecError::Malformed(e.to_string()))?;
            if read != body.len() {
                return Err(CodecError::Trailing);
            }
            Ok(value)
        }
        other => Err(CodecError::UnknownVersion(other)),
    }
}

/// Decodes a version-less body (what follows the version byte).
pub fn decode_body<T: Decode<()>>(body: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::decode_from_slice(body, config()).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Trailing);
    }
    Ok(value)
}

/// Encodes an event with its type's version byte ([`crate::Event::VERSION`]).
pub fn encode_event<E: crate::Event>(event: &E) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![E::VERSION];
    out.extend_from_slice(&bincode::encode_to_vec(event, config()).map_err(|e| CodecError::Encode(e.to_string()))?);
    Ok(out)
}

/// Decodes an event of its topic, whichever version of the topic's type wrote it.
pub fn decode_event<E: crate::Event>(bytes: &[u8]) -> Result<E, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version == E::VERSION {
        decode_body(body)
    } else {
        E::decode_older(version, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{CurrencyCode, Money};

    #[test]
    fn round_trip_keeps_the_value_and_writes_the_version_first() {
        let m = Money { minor: -12_345, currency: CurrencyCode::INR };
        let bytes = encode(&m).unwrap();
        assert_eq!(bytes[0], CODEC_VERSION);
        assert_eq!(decode::<Money>(&bytes).unwrap(), m);
    }

    #[test]
    fn unknown_versions_and_garbage_are_errors_not_panics() {
        let m = Money { minor: 1, currency: CurrencyCode::USD };
        let mut bytes = encode(&m).unwrap();
        bytes[0] = 99;
        assert!(matches!(decode::<Money>(&bytes), Err(CodecError::UnknownVersion(99))));
        assert!(matches!(decode::<Money>(&[]), Err(CodecError::Empty)));
        assert!(matches!(decode::<Money>(&[1, 0xff, 0xff]), Err(CodecError::Malformed(_))));
        let mut long = encode(&m).unwrap();
        long.push(0);
        assert!(matches!(decode::<Money>(&long), Err(CodecError::Trailing)));
    }
}
