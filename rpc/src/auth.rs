//! Mutual challenge-response handshake that opens every connection.
//!
//! Both sides prove they know the cluster secret without sending it:
//!
//! 1. client -> server `HELLO` (40 bytes): magic `TSRH`, handshake version, 3 zero bytes, a
//!    fresh 32-byte client nonce `Nc`.
//! 2. server -> client `CHALLENGE` (72 bytes): magic, version, 3 zero bytes, a fresh server
//!    nonce `Ns` and
//!    `Ps = keyed_blake3(key, "server" || Nc || Ns)`.
//! 3. client -> server `PROOF`: `Pc = keyed_blake3(key, "client" || Nc || Ns)`.
//!    The client always sends it, even when `Ps` was wrong, so both ends see the failure.
//! 4. server -> client `VERDICT`: one byte, 0 accepted, 1 refused.
//!
//! Fresh nonces on both sides make a recorded handshake useless to replay, and the distinct
//! labels stop a peer from reflecting one side's proof back as the other's. Comparisons use
//! `blake3::Hash` equality, which is constant-time.

use crate::error::AuthError;
use crate::secret::Secret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// First bytes of a handshake (distinct from the frame magic `TSRA`, so a peer that skips
/// the handshake is recognised at once).
pub const HANDSHAKE_MAGIC: [u8; 4] = *b"TSRH";
/// Handshake version spoken by this build.
pub const HANDSHAKE_VERSION: u8 = 1;

/// Sent instead of a challenge by a server that requires TLS to a client that opened
/// without it (then it closes): "TLS required", zero-padded to a challenge's length.
pub const TLS_REQUIRED_MAGIC: [u8; 4] = *b"TSRT";

const NONCE_LEN: usize = 32;
pub(crate) const HELLO_LEN: usize = 8 + NONCE_LEN;
const CHALLENGE_LEN: usize = 8 + NONCE_LEN + 32;
/// Length of the "TLS required" answer: a challenge's, so a client reads it whole.
pub(crate) const TLS_REQUIRED_LEN: usize = CHALLENGE_LEN;
const PROOF_LEN: usize = 32;
const ACCEPTED: u8 = 0;
const REFUSED: u8 = 1;

type Nonce = [u8; NONCE_LEN];

fn fresh_nonce() -> Result<Nonce, AuthError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| AuthError::Io {
        peer: "local".into(),
        reason: format!("no randomness for a nonce: {e}"),
    })?;
    Ok(n)
}

fn proof(secret: &Secret, label: &[u8], client: &Nonce, server: &Nonce) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(secret.key());
    h.update(label);
    h.update(client);
    h.update(server);
    h.finalize()
}

fn preamble() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&HANDSHAKE_MAGIC);
    p[4] = HANDSHAKE_VERSION;
    p
}

/// Checks magic and version of a hello or challenge.
fn check_preamble(peer: &str, bytes: &[u8]) -> Result<(), AuthError> {
    let got = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if got == TLS_REQUIRED_MAGIC {
        return Err(AuthError::TlsRequired { peer: peer.into() });
    }
    if crate::stream::looks_like_tls(&got) {
        return Err(AuthError::PeerWantsTls { peer: peer.into() });
    }
    if got != HANDSHAKE_MAGIC {
        return Err(AuthError::NoHandshake {
            peer: peer.into(),
            got,
        });
    }
    if bytes[4] != HANDSHAKE_VERSION {
        return Err(AuthError::VersionMismatch {
            peer: peer.into(),
            theirs: bytes[4],
            ours: HANDSHAKE_VERSION,
        });
    }
    Ok(())
}

fn io_err(peer: &str) -> impl Fn(std::io::Error) -> AuthError + '_ {
    move |e| AuthError::Io {
        peer: peer.into(),
        reason: e.to_string(),
    }
}

/// Runs the client side. On success the stream carries frames from the next byte on.
pub async fn client_handshake<S>(
    stream: &mut S,
    secret: &Secret,
    peer: &str,
) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let nc = fresh_nonce()?;
    let mut hello = [0u8; HELLO_LEN];
    hello[..8].copy_from_slice(&preamble());
    hello[8..].copy_from_slice(&nc);
    stream.write_all(&hello).await.map_err(io_err(peer))?;

    let mut challenge = [0u8; CHALLENGE_LEN];
    stream
        .read_exact(&mut challenge)
        .await
        .map_err(io_err(peer))?;
    check_preamble(peer, &challenge)?;
    let mut ns = [0u8; NONCE_LEN];
    ns.copy_from_slice(&challenge[8..8 + NONCE_LEN]);
    let mut ps = [0u8; 32];
    ps.copy_from_slice(&challenge[8 + NONCE_LEN..]);

    let pc = proof(secret, b"client", &nc, &ns);
    stream
        .write_all(pc.as_bytes())
        .await
        .map_err(io_err(peer))?;
    if proof(secret, b"server", &nc, &ns) != blake3::Hash::from(ps) {
        return Err(AuthError::WrongSecret { peer: peer.into() });
    }
    let verdict = stream.read_u8().await.map_err(io_err(peer))?;
    if verdict != ACCEPTED {
        return Err(AuthError::WrongSecret { peer: peer.into() });
    }
    Ok(())
}

/// Runs the server side. Nothing the peer sends reaches a handler unless this returns `Ok`.
pub async fn server_handshake<S>(
    stream: &mut S,
    secret: &Secret,
    peer: &str,
) -> Result<(), AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut hello = [0u8; HELLO_LEN];
    // Read the preamble first so a peer that sends plain frames is told apart from one that
    // merely hung up.
    stream
        .read_exact(&mut hello[..8])
        .await
        .map_err(io_err(peer))?;
    if let Err(e) = check_preamble(peer, &hello) {
        if matches!(e, AuthError::PeerWantsTls { .. }) {
            crate::stream::refuse_tls(stream, &hello[..8]).await;
        }
        return Err(e);
    }
    stream
        .read_exact(&mut hello[8..])
        .await
        .map_err(io_err(peer))?;
    let mut nc = [0u8; NONCE_LEN];
    nc.copy_from_slice(&hello[8..]);

    let ns = fresh_nonce()?;
    let mut challenge = [0u8; CHALLENGE_LEN];
    challenge[..8].copy_from_slice(&preamble());
    challenge[8..8 + NONCE_LEN].copy_from_slice(&ns);
    challenge[8 + NONCE_LEN..].copy_from_slice(proof(secret, b"server", &nc, &ns).as_bytes());
    stream.write_all(&challenge).await.map_err(io_err(peer))?;

    let mut pc = [0u8; PROOF_LEN];
    stream.read_exact(&mut pc).await.map_err(io_err(peer))?;
    if proof(secret, b"client", &nc, &ns) != blake3::Hash::from(pc) {
        // Best effort: the client learns the verdict; it may already have gone.
        let _ = stream.write_u8(REFUSED).await;
        return Err(AuthError::WrongSecret { peer: peer.into() });
    }
    stream.write_u8(ACCEPTED).await.map_err(io_err(peer))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::from_bytes(s.as_bytes(), "test").unwrap()
    }

    #[tokio::test]
    async fn same_secret_accepts_both_ways() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let s = secret("the-cluster-secret-123");
        let s2 = s.clone();
        let server = tokio::spawn(async move { server_handshake(&mut b, &s2, "client").await });
        client_handshake(&mut a, &s, "server").await.unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn different_secrets_fail_on_both_ends() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            server_handshake(&mut b, &secret("server-secret-aaaaaaa"), "client").await
        });
        let c = client_handshake(&mut a, &secret("client-secret-bbbbbbb"), "server").await;
        assert!(matches!(c, Err(AuthError::WrongSecret { .. })), "{c:?}");
        let s = server.await.unwrap();
        assert!(matches!(s, Err(AuthError::WrongSecret { .. })), "{s:?}");
    }
}
