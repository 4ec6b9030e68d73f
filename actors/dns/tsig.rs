//! TSIG on the slow path (RFC 8945): verifying a request under the keyring (users'
//! keys, then the operator's transfer keys) and the context its response is signed with.

use super::*;

/// Outcome of checking a request's TSIG.
pub(super) enum TsigCheck {
    /// No TSIG on the request.
    Unsigned,
    /// Verified: the key's scope and a context to sign the response with.
    Verified { scope: Vec<String>, ctx: TSigResponseContext },
    /// Failed: answer NOTAUTH with this context (signed or unsigned per RFC 8945).
    Failed(TSigResponseContext),
}

impl SlowPath {
    pub(super) fn check_tsig(&self, request: &Request, now: u64) -> TsigCheck {
        let Some(sig) = request.signature.as_ref() else {
            return TsigCheck::Unsigned;
        };
        let key_name = sig.name.to_lowercase().to_string();
        let ring = self.inner.keyring.load();
        // Users' keys first, then the operator's transfer keys (which secondaries use to
        // sign their SOA queries; their scope is empty: they can write nothing).
        let entry = match ring.get(&key_name) {
            Some(e) if e.expires_at == 0 || e.expires_at > now => e,
            _ => match self.inner.transfer_keys.get(&key_name) {
                Some(e) => e,
                None => {
                    return TsigCheck::Failed(TSigResponseContext::unknown_key(
                        request.metadata.id,
                        now,
                        sig.name.clone(),
                    ))
                }
            },
        };
        let Ok((_, _, range)) = entry.signer.verify_message_byte(request.as_slice(), None, true)
        else {
            return TsigCheck::Failed(TSigResponseContext::bad_signature(
                request.metadata.id,
                now,
                entry.signer.clone(),
            ));
        };
        if !range.contains(&now) {
            return TsigCheck::Failed(TSigResponseContext::new(
                request.metadata.id,
                now,
                entry.signer.clone(),
                sig.data.mac.clone(),
                Some(TsigError::BadTime),
            ));
        }
        TsigCheck::Verified {
            scope: entry.scope.clone(),
            ctx: TSigResponseContext::new(
                request.metadata.id,
                now,
                entry.signer.clone(),
                sig.data.mac.clone(),
                None,
            ),
        }
    }
}
