//! Length-prefixed request-response codec with a size limit.
//!
//! libp2p's built-in cbor/json codecs cap messages at 1 MiB and decode inside
//! the codec; a gradient of a million coordinates is 4 MB, and decoding must
//! happen in the node's validation so that garbage is counted against the
//! peer that sent it. So this codec moves opaque frames: a 4-byte
//! little-endian length, checked against the limit before anything is
//! allocated, then that many bytes.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// Frames request-response messages as `u32` length + bytes, refusing
/// frames longer than `max_frame`.
#[derive(Clone, Debug)]
pub(crate) struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    pub(crate) fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }
}

/// A request as read: its bytes, or only the length its sender announced
/// when that is over the limit (nothing more is read), so that the node can
/// count the oversize request against its sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The frame's bytes.
    Bytes(Bytes),
    /// A frame announced `len` bytes long, over the limit `limit`.
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl From<Bytes> for Frame {
    fn from(b: Bytes) -> Self {
        Self::Bytes(b)
    }
}

/// Reads a length prefix; a length over `max_frame` is returned as
/// `Err(len)` without reading further.
async fn read_len<T>(io: &mut T, max_frame: usize) -> io::Result<Result<usize, usize>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    Ok(if len > max_frame { Err(len) } else { Ok(len) })
}

async fn read_body<T>(io: &mut T, len: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

pub(crate) async fn read_frame<T>(io: &mut T, max_frame: usize) -> io::Result<Vec<u8>>
where
    T: AsyncRead + Unpin + Send,
{
    match read_len(io, max_frame).await? {
        Ok(len) => read_body(io, len).await,
        Err(len) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the limit of {max_frame}"),
        )),
    }
}

pub(crate) async fn write_frame<T>(io: &mut T, bytes: &[u8], max_frame: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    if bytes.len() > max_frame {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes exceeds the limit of {max_frame}",
                bytes.len()
            ),
        ));
    }
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over u32"))?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        // libp2p drops a request whose read fails without telling the
        // node, so an oversize one is returned, unread, as `TooLarge`.
        Ok(match read_len(io, self.max_frame).await? {
            Ok(len) => Frame::Bytes(read_body(io, len).await?.into()),
            Err(len) => Frame::TooLarge {
                len,
                limit: self.max_frame,
            },
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_frame).await.map(Bytes::from)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Frame::Bytes(b) => write_frame(io, &b, self.max_frame).await,
            Frame::TooLarge { len, .. } => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a request announced {len} bytes has no bytes to send"),
            )),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Bytes,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res, self.max_frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;
    use proptest::prelude::*;

    fn proto() -> StreamProtocol {
        StreamProtocol::new("/rampart/test")
    }

    #[test]
    fn round_trip_and_length() {
        let mut codec = FrameCodec::new(16);
        let mut buf = Cursor::new(Vec::new());
        let req = Frame::Bytes(vec![1, 2, 3].into());
        block_on(codec.write_request(&proto(), &mut buf, req.clone())).unwrap();
        assert_eq!(buf.get_ref(), &[3, 0, 0, 0, 1, 2, 3]);
        buf.set_position(0);
        let back = block_on(codec.read_request(&proto(), &mut buf)).unwrap();
        assert_eq!(back, req);

        let mut buf = Cursor::new(Vec::new());
        block_on(codec.write_response(&proto(), &mut buf, vec![0; 16].into())).unwrap();
        assert_eq!(buf.get_ref().len(), 20);
        buf.set_position(0);
        assert_eq!(
            block_on(codec.read_response(&proto(), &mut buf)).unwrap(),
            vec![0; 16]
        );
    }

    #[test]
    fn oversize_is_refused_both_ways() {
        let mut codec = FrameCodec::new(16);
        let mut buf = Cursor::new(Vec::new());
        let big = Frame::Bytes(vec![0; 17].into());
        let err = block_on(codec.write_request(&proto(), &mut buf, big)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let unsendable = Frame::TooLarge { len: 17, limit: 16 };
        let err = block_on(codec.write_request(&proto(), &mut buf, unsendable)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(buf.get_ref().is_empty());
        // A claimed length of 4 GiB is refused before any allocation: the
        // request comes back as its announced length, the rest unread.
        let mut evil = Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2]);
        let got = block_on(codec.read_request(&proto(), &mut evil)).unwrap();
        assert_eq!(
            got,
            Frame::TooLarge {
                len: u32::MAX as usize,
                limit: 16
            }
        );
        assert_eq!(evil.position(), 4);
        // A response over the limit is an error.
        let mut evil = Cursor::new(vec![17, 0, 0, 0]);
        let err = block_on(codec.read_response(&proto(), &mut evil)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn pushed_values_are_read_in_place() {
        // The path of a push: codec, frame decode, hash and value check. The
        // values must stay in the frame's buffer (no second copy).
        let key = libp2p::identity::Keypair::ed25519_from_bytes([5; 32]).unwrap();
        let values: Vec<f32> = (0..1000).map(|i| i as f32 - 3.5).collect();
        let push = crate::wire::SignedPayload::new_f32(
            &key,
            crate::wire::JobId([1; 32]),
            7,
            crate::wire::PayloadKind::Gradient,
            &values,
        )
        .unwrap();
        let frame = crate::wire::Message::Push(push).encode().unwrap();
        let mut codec = FrameCodec::new(1 << 20);
        let mut buf = Cursor::new(Vec::new());
        block_on(codec.write_request(&proto(), &mut buf, Bytes::from(frame).into())).unwrap();
        buf.set_position(0);
        let Frame::Bytes(got) = block_on(codec.read_request(&proto(), &mut buf)).unwrap() else {
            panic!("a frame under the limit is read");
        };
        let Ok(crate::wire::Message::Push(p)) = crate::wire::Message::decode_frame(got, 1 << 20)
        else {
            panic!("a push decodes as a push");
        };
        let decoded = crate::wire::hash_and_decode_f32(&p.payload);
        let (back, finite) = decoded.values.unwrap();
        assert!(finite);
        assert_eq!(&*back, &values[..]);
        assert!(back.in_frame());
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut codec = FrameCodec::new(16);
        let mut short = Cursor::new(vec![5, 0, 0, 0, 1, 2]);
        assert!(block_on(codec.read_request(&proto(), &mut short)).is_err());
        let mut shorter = Cursor::new(vec![5, 0]);
        assert!(block_on(codec.read_request(&proto(), &mut shorter)).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut codec = FrameCodec::new(64);
            let mut io = Cursor::new(bytes);
            match block_on(codec.read_request(&proto(), &mut io)) {
                Ok(Frame::Bytes(frame)) => prop_assert!(frame.len() <= 64),
                Ok(Frame::TooLarge { len, limit }) => prop_assert!(len > limit && limit == 64),
                Err(_) => {}
            }
        }
    }
}
