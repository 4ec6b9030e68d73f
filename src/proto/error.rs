//! The protocol core's typed error.

/// Why a protocol operation failed. Parsers of untrusted input mostly return `None`
/// (as the reference does); builders and the message pipeline return this.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A field is outside the range the wire format allows.
    #[error("invalid field {field}: {reason}")]
    Field { field: &'static str, reason: String },
    /// A signature did not verify, or the key is on the low-order blocklist.
    #[error("signature verification failed")]
    BadSignature,
    /// Base64 text could not be decoded.
    #[error("invalid base64")]
    Base64,
    /// The record or message is older than its expiry or too far in the future.
    #[error("outside the allowed time window: {0}")]
    Time(&'static str),
    /// Decryption or authentication of a message failed.
    #[error("decryption failed")]
    Decrypt,
    /// Key derivation failed (bad salt length, Argon2 failure).
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// Input is structurally malformed.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
}

impl ProtoError {
    /// Shorthand for a field-range error.
    pub fn field(field: &'static str, reason: impl Into<String>) -> Self {
        ProtoError::Field { field, reason: reason.into() }
    }
}
