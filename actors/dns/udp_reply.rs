//! Replies to UDP packets the fast path handed over: encoded by hickory, capped at the
//! client's size (a TC stub beyond it) and sent on the fast path's socket.

use super::*;

/// A hickory `ResponseHandler` that encodes a response and sends it on a UDP socket
/// shared with the fast path (for the packets the fast path hands over).
#[derive(Clone)]
pub(super) struct UdpReply {
    pub(super) socket: Arc<UdpSocket>,
    pub(super) dst: SocketAddr,
    pub(super) limit: usize,
    /// The UDP thread's RRL verdict for this reply.
    pub(super) verdict: Verdict,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpReply {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let (info, mut buf) = emit(response)?;
        if self.verdict == Verdict::Drop {
            return Ok(info);
        }
        if buf.len() > self.limit || self.verdict == Verdict::Slip {
            // Too big for UDP (or rate-limited): header + question with TC=1, the client
            // retries over TCP. Nothing larger than the limit ever goes out.
            match truncated_stub(&buf) {
                Some(stub) if stub.len() <= self.limit => buf = stub,
                _ => return Ok(info),
            }
        }
        let _ = self.socket.send_to(&buf, self.dst);
        Ok(info)
    }
}

/// Encode a slow-path response (shared by the UDP and TCP reply handlers).
pub(super) fn emit<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Result<(ResponseInfo, Vec<u8>), hickory_server::net::NetError> {
    let mut buf = Vec::with_capacity(512);
    let info = response
        .destructive_emit(&mut BinEncoder::new(&mut buf))
        .map_err(|e| hickory_server::net::NetError::from(e.to_string()))?;
    Ok((info, buf))
}

/// Header + question of an encoded response, with TC=1 and no records.
pub(super) fn truncated_stub(resp: &[u8]) -> Option<Vec<u8>> {
    if resp.len() < 12 || u16::from_be_bytes([resp[4], resp[5]]) != 1 {
        return None;
    }
    // Walk the question name (no compression in a question we just encoded).
    let mut i = 12;
    loop {
        let len = *resp.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xC0 != 0 {
            i += 2;
            break;
        }
        i += 1 + len;
    }
    let end = i + 4;
    let mut out = resp.get(..end)?.to_vec();
    out[2] |= 0x02; // TC
    out[6..12].fill(0);
    Some(out)
}
