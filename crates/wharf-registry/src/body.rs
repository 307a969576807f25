//! Request and response bodies.

use std::io;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use wharf_storage::ByteStream;

use crate::error::{Code, RegistryError};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream(s: ByteStream) -> Body {
    StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// The request body as a stream of data chunks.
pub fn request_stream(body: Incoming) -> ByteStream {
    let frames = TryStreamExt::map_err(http_body_util::BodyStream::new(body), io::Error::other);
    Box::pin(frames.try_filter_map(|frame| async move { Ok(frame.into_data().ok()) }))
}

/// Read a whole body, refusing it as soon as it exceeds `limit` bytes, so a
/// huge manifest never sits in memory.
pub async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, RegistryError> {
    let mut stream = request_stream(body);
    let mut buf = Vec::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| {
        RegistryError::new(
            Code::ManifestInvalid,
            format!("could not read the request body: {e}"),
        )
    })? {
        if buf.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

pub fn too_large(limit: usize) -> RegistryError {
    RegistryError::new(
        Code::SizeInvalid,
        format!("manifest is larger than the {limit}-byte limit"),
    )
    .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
}
