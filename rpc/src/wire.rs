//! Reading and writing frames on a byte stream.
//!
//! The reader validates each header before it allocates, then reads body and payload into
//! buffers of exactly the declared size (never zero-filled first, never over-reading into the
//! next frame). The writer batches small frames into one syscall and writes large payloads
//! straight from their `Bytes`, so shard data is not copied on the way out.

use bytes::{Bytes, BytesMut};
use tessera_proto::{FrameError, FrameHeader, FrameLimits, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

/// A whole frame read off the wire.
#[derive(Debug)]
pub struct Frame {
    /// The validated header.
    pub header: FrameHeader,
    /// The postcard body.
    pub body: Bytes,
    /// The raw payload.
    pub payload: Bytes,
}

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed or closed in the middle of a frame.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The header was refused.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Reads one header; `Ok(None)` on a clean end of stream between frames.
pub async fn read_header<R>(
    r: &mut R,
    limits: &FrameLimits,
) -> Result<Option<FrameHeader>, ReadError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut buf[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated { got }.into());
        }
        got += n;
        // Refuse a stream that is not ours as soon as the magic is in, instead of waiting for
        // 32 bytes that may never come.
        if got >= 4 && buf[..4] != tessera_proto::frame::MAGIC {
            return Err(FrameError::BadMagic([buf[0], buf[1], buf[2], buf[3]]).into());
        }
    }
    Ok(Some(FrameHeader::decode(&buf, limits)?))
}

/// Reads exactly `len` bytes into a fresh buffer of that size.
pub async fn read_exact_bytes<R>(r: &mut R, len: usize) -> std::io::Result<Bytes>
where
    R: AsyncRead + Unpin,
{
    if len == 0 {
        return Ok(Bytes::new());
    }
    if len < crate::pool::POOLED_MIN {
        let mut buf = BytesMut::with_capacity(len);
        fill(r, &mut buf, len).await?;
        return Ok(buf.freeze());
    }
    let mut buf = crate::pool::take(len);
    fill(r, &mut buf, len).await?;
    Ok(crate::pool::freeze(buf))
}

/// Reads until `buf` holds `len` bytes, without zero-filling it first.
async fn fill<R, B>(r: &mut R, buf: &mut B, len: usize) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    B: bytes::BufMut + AsRef<[u8]>,
{
    // `take` stops `read_buf` at the frame boundary even when the buffer has spare capacity.
    let mut limited = r.take((len - buf.as_ref().len()) as u64);
    while buf.as_ref().len() < len {
        if limited.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Reads body and payload after a header.
pub async fn read_rest<R>(r: &mut R, header: FrameHeader) -> Result<Frame, ReadError>
where
    R: AsyncRead + Unpin,
{
    let body = read_exact_bytes(r, header.body_len as usize).await?;
    let payload = read_exact_bytes(r, header.payload_len as usize).await?;
    Ok(Frame {
        header,
        body,
        payload,
    })
}

/// Reads one whole frame; `Ok(None)` on a clean end of stream.
pub async fn read_frame<R>(r: &mut R, limits: &FrameLimits) -> Result<Option<Frame>, ReadError>
where
    R: AsyncRead + Unpin,
{
    match read_header(r, limits).await? {
        None => Ok(None),
        Some(h) => Ok(Some(read_rest(r, h).await?)),
    }
}

/// A frame queued for the writer task.
#[derive(Debug)]
pub struct OutFrame {
    /// Header; its lengths are filled in from `body` and `payload` when written.
    pub header: FrameHeader,
    /// Postcard body.
    pub body: Bytes,
    /// Raw payload.
    pub payload: Bytes,
    /// In-flight budget released once the frame is on the wire.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Payloads above this are written straight from their buffer instead of being copied into
/// the batch.
const COPY_LIMIT: usize = 16 << 10;
/// Flush the batch once it holds this much.
const BATCH_LIMIT: usize = 256 << 10;

fn append_frame(batch: &mut Vec<u8>, f: &OutFrame) {
    let mut h = f.header;
    // Lengths checked against the limits by the caller; u32 saturation here can only shrink
    // a frame the peer would have refused anyway.
    h.body_len = u32::try_from(f.body.len()).unwrap_or(u32::MAX);
    h.payload_len = u32::try_from(f.payload.len()).unwrap_or(u32::MAX);
    batch.extend_from_slice(&h.encode());
    batch.extend_from_slice(&f.body);
}

/// Writes queued frames until the queue closes or the socket fails.
pub async fn write_loop<W>(mut w: W, mut rx: mpsc::Receiver<OutFrame>) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut batch = Vec::with_capacity(BATCH_LIMIT);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(f) = next.take() {
            append_frame(&mut batch, &f);
            if f.payload.len() <= COPY_LIMIT {
                batch.extend_from_slice(&f.payload);
            } else {
                w.write_all(&batch).await?;
                batch.clear();
                w.write_all(&f.payload).await?;
            }
            drop(f.permit);
            if batch.len() < BATCH_LIMIT {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            w.write_all(&batch).await?;
            batch.clear();
        }
        // The queue is empty: push out what the stream holds. A TLS stream may keep the
        // tail of a write encrypted but unsent when the socket was full, with nothing to
        // wake it until the next write; on TCP this is a no-op.
        w.flush().await?;
    }
    w.flush().await?;
    w.shutdown().await
}
