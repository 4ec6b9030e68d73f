//! A small async DNS client for the node's own lookups (heartbeat harvesting): one TXT
//! query over UDP, retried over TCP when truncated, against a list of servers in turn.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("invalid name {0:?}")]
    Name(String),
    #[error("no server answered")]
    NoAnswer,
}

fn build(name: &Name) -> (u16, Vec<u8>) {
    let mut id = [0u8; 2];
    crate::proto::keys::random_fill(&mut id);
    let id = u16::from_be_bytes(id);
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), RecordType::TXT));
    (id, m.to_vec().unwrap_or_default())
}

async fn udp(server: SocketAddr, q: &[u8], id: u16, timeout: Duration) -> Option<Message> {
    let bind: SocketAddr =
        if server.is_ipv6() { "[::]:0".parse().ok()? } else { "0.0.0.0:0".parse().ok()? };
    let s = tokio::net::UdpSocket::bind(bind).await.ok()?;
    s.send_to(q, server).await.ok()?;
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (n, from) =
            tokio::time::timeout_at(deadline, s.recv_from(&mut buf)).await.ok()?.ok()?;
        if from != server {
            continue;
        }
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.metadata.id == id {
                return Some(m);
            }
        }
    }
}

async fn tcp(server: SocketAddr, q: &[u8], timeout: Duration) -> Option<Message> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(server).await.ok()?;
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(q);
        s.write_all(&framed).await.ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        Message::from_vec(&buf).ok()
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}

/// TXT values (strings of each RR joined) at `name`; an NXDOMAIN/NODATA answer is an
/// empty list. Servers are tried in order until one answers.
pub async fn txt(
    servers: &[SocketAddr],
    name: &str,
    timeout: Duration,
) -> Result<Vec<String>, LookupError> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    let name = Name::from_ascii(&fqdn).map_err(|_| LookupError::Name(fqdn.clone()))?;
    for server in servers {
        let (id, q) = build(&name);
        let Some(mut m) = udp(*server, &q, id, timeout).await else { continue };
        if m.metadata.truncation {
            match tcp(*server, &q, timeout).await {
                Some(t) => m = t,
                None => continue,
            }
        }
        if !matches!(m.metadata.response_code, ResponseCode::NoError | ResponseCode::NXDomain) {
            continue;
        }
        return Ok(m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => String::from_utf8(crate::proto::txt::join(&t.txt_data)).ok(),
                _ => None,
            })
            .collect());
    }
    Err(LookupError::NoAnswer)
}
