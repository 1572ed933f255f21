//! Socket helpers shared by the drivers.

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most buffers handed to one `writev` call (Linux allows 1024).
const MAX_IOVECS: usize = 64;

/// Writes every buffer, in order, with as few vectored writes as the socket allows; buffers are
/// shared (`Bytes`), never copied. Returns the number of bytes written.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bufs: &mut Vec<Bytes>,
) -> std::io::Result<usize> {
    let mut total = 0;
    let mut first = 0;
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = bufs[first..]
            .iter()
            .take(MAX_IOVECS)
            .map(|b| IoSlice::new(b))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        total += written;
        while written > 0 {
            let buf = &mut bufs[first];
            if written >= buf.len() {
                written -= buf.len();
                first += 1;
            } else {
                buf.advance(written);
                written = 0;
            }
        }
    }
    bufs.clear();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn writes_everything_in_order_through_a_small_pipe() {
        // A 7-byte pipe forces many partial writes that split buffers.
        let (mut a, mut b) = tokio::io::duplex(7);
        let mut bufs: Vec<Bytes> = (0..100u8)
            .map(|i| Bytes::from(vec![i; i as usize % 13 + 1]))
            .collect();
        let expected: Vec<u8> = bufs.iter().flat_map(|b| b.to_vec()).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        let n = write_all_vectored(&mut a, &mut bufs).await.unwrap();
        drop(a);
        assert_eq!(n, expected.len());
        assert_eq!(reader.await.unwrap(), expected);
        assert!(bufs.is_empty());
    }
}
