//! The few parts of POSIX ustar the export bundle uses: regular files with short paths, written
//! as a stream (a header, then the data as it comes, then padding), and read back entry by
//! entry. About a hundred lines, so the bundle needs no archive crate: the format is fixed by
//! POSIX and `tar -xf` reads what this writes.

use std::io;

pub const BLOCK: usize = 512;
/// ustar's `name` field; bundle paths are built from ids and stay well under it.
const NAME_LEN: usize = 100;

/// The 512-byte header of a regular file `path` of `size` bytes.
pub fn header(path: &str, size: u64, mtime_secs: u64) -> io::Result<[u8; BLOCK]> {
    if path.is_empty() || path.len() >= NAME_LEN || path.contains("..") || path.starts_with('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bundle path {path:?} is not a short relative path"),
        ));
    }
    let mut h = [0u8; BLOCK];
    h[..path.len()].copy_from_slice(path.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime_secs);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    octal(&mut h[148..155], u64::from(sum));
    h[155] = b' ';
    Ok(h)
}

/// Zero bytes that complete an entry of `size` bytes to a whole block.
pub fn padding(size: u64) -> usize {
    (BLOCK - (size % BLOCK as u64) as usize) % BLOCK
}

/// The archive's end: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0u8; 2 * BLOCK];

fn octal(field: &mut [u8], v: u64) {
    // Digits, then a NUL: the field's last byte.
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

/// A parsed header: the entry's path and size. `None`: the end of the archive.
pub fn parse(h: &[u8; BLOCK]) -> io::Result<Option<(String, u64)>> {
    if h.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("tar: {what}"));
    let stored = parse_octal(&h[148..156]).ok_or_else(|| bad("checksum field"))?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != stored {
        return Err(bad("header checksum"));
    }
    if h[156] != b'0' && h[156] != 0 {
        return Err(bad("only regular files are expected"));
    }
    let end = h[..NAME_LEN]
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(NAME_LEN);
    let name = std::str::from_utf8(&h[..end]).map_err(|_| bad("path"))?;
    if name.is_empty() || name.contains("..") || name.starts_with('/') {
        return Err(bad("path"));
    }
    let size = parse_octal(&h[124..136]).ok_or_else(|| bad("size"))?;
    Ok(Some((name.to_owned(), size)))
}

fn parse_octal(f: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(f).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_parses_back_and_a_changed_byte_is_refused() {
        let h = header("knowledge/kb_1/doc_2/source", 1234, 1_700_000_000).unwrap();
        assert_eq!(
            parse(&h).unwrap(),
            Some(("knowledge/kb_1/doc_2/source".into(), 1234))
        );
        let mut bad = h;
        bad[130] ^= 1;
        assert!(parse(&bad).is_err());
        assert_eq!(parse(&[0u8; BLOCK]).unwrap(), None);
        assert_eq!(padding(1234), 512 * 3 - 1234);
        assert_eq!(padding(1024), 0);
        assert!(header("../etc/passwd", 1, 0).is_err());
    }
}
