//! AES-256-GCM with a fresh random 96-bit nonce per message. Callers bound the number of
//! messages per key (the keyring rotates data keys well before 2^32 uses, NIST SP 800-38D's
//! bound for random nonces).

use crate::{Aad, Key};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ciphertext cannot be decrypted (wrong key, wrong associated data, or altered)")]
pub struct Undecryptable;

/// Returns `nonce | ciphertext | tag`.
pub fn seal(key: &Key, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new(key.bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    // Encryption with a valid key and in-memory buffers cannot fail.
    if let Ok(ct) = cipher.encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plaintext,
            aad: aad.bytes(),
        },
    ) {
        out.extend_from_slice(&ct);
    }
    out
}

/// Opens `nonce | ciphertext | tag`.
pub fn open(
    key: &Key,
    aad: &Aad,
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, Undecryptable> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(Undecryptable);
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new(key.bytes().into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.bytes(),
            },
        )
        .map(zeroize::Zeroizing::new)
        .map_err(|_| Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_mutation_fails() {
        let k = Key::generate();
        let aad = Aad::new("x", &[b"t1"]);
        let s = seal(&k, &aad, b"hello");
        assert_eq!(&*open(&k, &aad, &s).unwrap(), b"hello");
        for i in 0..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert_eq!(open(&k, &aad, &t), Err(Undecryptable), "flip at {i}");
        }
        assert_eq!(open(&k, &Aad::new("x", &[b"t2"]), &s), Err(Undecryptable));
        assert_eq!(open(&Key::generate(), &aad, &s), Err(Undecryptable));
        assert_ne!(seal(&k, &aad, b"hello"), s, "nonces must differ");
    }
}
