//! The sealed-record format, version 1:
//!
//! ```text
//! "TGE1" (4) | data-key id (16) | nonce (12) | AES-256-GCM ciphertext + tag
//! ```
//!
//! The magic names the format and algorithm; the data-key id names the key version that sealed
//! the record (its wrapping KEK version lives with the data key), so rotation and future
//! algorithms stay readable side by side.

pub const MAGIC_V1: &[u8; 4] = b"TGE1";
pub const DEK_ID_LEN: usize = 16;
pub const HEADER_LEN: usize = 4 + DEK_ID_LEN;

pub fn header(dek_id: &[u8; DEK_ID_LEN]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + 64);
    v.extend_from_slice(MAGIC_V1);
    v.extend_from_slice(dek_id);
    v
}

/// Splits a sealed record into (data-key id, `nonce | ciphertext`), or `None` if it is not a
/// version-1 record.
pub fn parse(sealed: &[u8]) -> Option<([u8; DEK_ID_LEN], &[u8])> {
    if sealed.len() < HEADER_LEN || &sealed[..4] != MAGIC_V1 {
        return None;
    }
    let id: [u8; DEK_ID_LEN] = sealed[4..HEADER_LEN].try_into().ok()?;
    Some((id, &sealed[HEADER_LEN..]))
}
