//! # ringbook-protocol
//!
//! The wire protocol (docs/protocol.md): little-endian, length-prefixed frames.
//!
//! ```text
//! [u32 length][u16 msg_type][u16 schema_version][body …]
//! ```
//!
//! `length` counts the bytes after itself (type, version and body), so a frame is `4 + length`
//! bytes, at most [`FRAME_BYTES_MAX`]. Every message has a fixed body length fixed by its type;
//! no varints, no optional fields, padding must be zero. Client messages are in
//! [`client`]; server messages (each with a per-session sequence number) in [`server`]; what each
//! engine event becomes on the wire, and for whom, in [`translate`].
//!
//! Decoding borrows the input, never allocates and never panics (a property test feeds it
//! arbitrary bytes); each failure maps to a stable 1xxx [`RejectCode`].
//!
//! This crate depends on the engine's vocabulary only (built without its `pipeline` runtime), so
//! the client (`ringbook-client`), the server (`ringbook-gateway`, which re-exports it as
//! `ringbook_gateway::protocol`) and the web edge share it without pulling the server or the
//! journal. Its property tests live with the server, in `gateway/tests/codec_props.rs`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

#[macro_use]
mod layout;

pub mod client;
pub mod marketdata;
pub mod reference;
pub mod server;
pub mod translate;

pub use client::ClientMsg;
pub use reference::ReferenceData;
pub use server::{OrderInfo, Role, ServerMsg};

use ringbook_engine::RejectCode;

/// The schema version this crate speaks; a frame with another version is rejected. Version 2
/// added the trade identity (trade id, engine time, contra order id) to `Fill`; version 3 the
/// finished-order status; version 4 the quote budget and expiry time of `NewOrder`; version 5
/// the expiry time in `OrderInfo`; version 6 the order-status query by engine order id.
pub const PROTOCOL_VERSION: u16 = 6;
/// The size of the `length` prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
/// Prefix, type and version.
pub const HEADER_BYTES: usize = 8;
/// The largest frame, prefix included, in either direction. A larger length prefix closes the
/// connection (`FRAME_TOO_LARGE`): the stream cannot be resynchronised.
pub const FRAME_BYTES_MAX: usize = 256;

const _: () = assert!(client::BODY_BYTES_MAX + HEADER_BYTES <= FRAME_BYTES_MAX);
const _: () = assert!(server::BODY_BYTES_MAX + HEADER_BYTES <= FRAME_BYTES_MAX);

/// The header of one complete frame found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type.
    pub msg_type: u16,
    /// Schema version.
    pub version: u16,
    /// Whole frame length in bytes, prefix included.
    pub frame_len: usize,
}

/// What splitting a byte stream into frames can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is below the header or above [`FRAME_BYTES_MAX`]: the stream is
    /// unusable and the connection must close.
    BadLength(u32),
}

impl FrameError {
    /// The reject code reported to the peer.
    pub fn code(self) -> RejectCode {
        match self {
            FrameError::BadLength(_) => RejectCode::FrameTooLarge,
        }
    }
}

/// Looks for one complete frame at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((header, body)))`: a frame of
/// `header.frame_len` bytes whose body is `body`. Never allocates, never panics.
pub fn split_frame(buf: &[u8]) -> Result<Option<(FrameHeader, &[u8])>, FrameError> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let after = len as usize;
    if !(HEADER_BYTES - LENGTH_PREFIX_BYTES..=FRAME_BYTES_MAX - LENGTH_PREFIX_BYTES)
        .contains(&after)
    {
        return Err(FrameError::BadLength(len));
    }
    let frame_len = LENGTH_PREFIX_BYTES + after;
    let Some(frame) = buf.get(..frame_len) else {
        return Ok(None);
    };
    let header = FrameHeader {
        msg_type: u16::from_le_bytes([frame[4], frame[5]]),
        version: u16::from_le_bytes([frame[6], frame[7]]),
        frame_len,
    };
    Ok(Some((header, &frame[HEADER_BYTES..])))
}

/// Writes a frame header for a body of `body_len` bytes into `buf[..8]`.
pub(crate) fn put_header(buf: &mut [u8; FRAME_BYTES_MAX], msg_type: u16, body_len: usize) {
    let after = (HEADER_BYTES - LENGTH_PREFIX_BYTES + body_len) as u32;
    buf[0..4].copy_from_slice(&after.to_le_bytes());
    buf[4..6].copy_from_slice(&msg_type.to_le_bytes());
    buf[6..8].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
}

/// A fixed-width, NUL-padded ASCII field (login names, passwords, reject names).
pub type Name32 = [u8; 32];

/// Packs `s` into a NUL-padded 32-byte field (longer input is cut at 32 bytes).
pub fn name32(s: &str) -> Name32 {
    let mut out = [0u8; 32];
    let n = s.len().min(32);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

/// The text of a NUL-padded field up to its first NUL (`"?"` if not UTF-8).
pub fn name32_str(n: &Name32) -> &str {
    let end = n.iter().position(|&b| b == 0).unwrap_or(32);
    std::str::from_utf8(&n[..end]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_frame_needs_whole_frames_and_bounds_length() {
        assert_eq!(split_frame(&[]), Ok(None));
        assert_eq!(split_frame(&[4, 0, 0]), Ok(None));
        assert_eq!(split_frame(&[3, 0, 0, 0]), Err(FrameError::BadLength(3)));
        assert_eq!(
            split_frame(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::BadLength(u32::MAX))
        );
        let frame = [4, 0, 0, 0, 3, 0, 1, 0, 99];
        let (h, body) = split_frame(&frame).unwrap().unwrap();
        assert_eq!((h.msg_type, h.version, h.frame_len), (3, 1, 8));
        assert!(body.is_empty());
        assert_eq!(split_frame(&frame[..7]), Ok(None));
    }
}
