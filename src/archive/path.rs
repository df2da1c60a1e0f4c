//! Archive path hygiene: turning tar names into safe relative components.

use super::error::{ArchiveError, Result};

/// A relative path inside the root, as validated components (never empty,
/// never `.` or `..`, never containing `/` or NUL).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(pub Vec<Vec<u8>>);

impl RelPath {
    /// Parses an archive entry name. `./` prefixes and empty components are
    /// dropped; absolute paths, `..` components and NUL bytes are refused.
    pub fn parse(raw: &[u8]) -> Result<RelPath> {
        let shown = || escape_name(raw);
        if raw.first() == Some(&b'/') {
            return Err(ArchiveError::UnsafePath {
                path: shown(),
                reason: "absolute path",
            });
        }
        if raw.contains(&0) {
            return Err(ArchiveError::UnsafePath {
                path: shown(),
                reason: "NUL byte in path",
            });
        }
        let mut parts = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    return Err(ArchiveError::UnsafePath {
                        path: shown(),
                        reason: "`..` component",
                    })
                }
                c => parts.push(c.to_vec()),
            }
        }
        Ok(RelPath(parts))
    }

    /// True for the root itself (`./`).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Splits into parent and last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &[u8])> {
        let (last, parent) = self.0.split_last()?;
        Some((RelPath(parent.to_vec()), last))
    }

    /// Joins with one more component.
    pub fn join(&self, name: &[u8]) -> RelPath {
        let mut v = self.0.clone();
        v.push(name.to_vec());
        RelPath(v)
    }

    /// The path as bytes, `a/b/c`, or `.` for the root.
    pub fn as_bytes(&self) -> Vec<u8> {
        if self.0.is_empty() {
            return b".".to_vec();
        }
        self.0.join(&b'/')
    }

    /// The path for messages: escaped and shortened by [`escape_name`].
    pub fn display(&self) -> String {
        escape_name(&self.as_bytes())
    }
}

/// Longest part of a name shown in a message, in bytes.
pub const MAX_SHOWN_NAME: usize = 256;

/// An entry name or link target from an archive, made safe to print: bytes
/// that are not printable UTF-8 (control characters such as a terminal's
/// ESC, invalid UTF-8) and backslashes are shown as `\xNN` escapes, and a
/// name longer than [`MAX_SHOWN_NAME`] bytes is cut, saying how long it was.
pub fn escape_name(raw: &[u8]) -> String {
    use std::fmt::Write as _;
    let shown = &raw[..raw.len().min(MAX_SHOWN_NAME)];
    let mut out = String::with_capacity(shown.len() + 16);
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if raw.len() > shown.len() {
        let _ = write!(out, "... ({} bytes)", raw.len());
    }
    out
}

/// Where a symlink in directory `dir` with `target` points, inside the
/// root: absolute targets start at the root, `..` stops at the root (the
/// same clamping `RESOLVE_IN_ROOT` applies).
pub fn resolve_lexical(dir: &RelPath, target: &[u8]) -> RelPath {
    let mut parts = if target.first() == Some(&b'/') {
        Vec::new()
    } else {
        dir.0.clone()
    };
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c.to_vec()),
        }
    }
    RelPath(parts)
}

/// True when a relative symlink target placed in directory `dir` climbs
/// above the root lexically (`a/b -> ../../x`). Absolute targets are
/// container-absolute and therefore fine.
pub fn symlink_escapes(dir: &RelPath, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = dir.0.len() as i64;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_normalises_and_refuses() {
        assert_eq!(RelPath::parse(b"./a//b/").unwrap().as_bytes(), b"a/b");
        assert!(RelPath::parse(b"./").unwrap().is_root());
        assert!(RelPath::parse(b"/etc/passwd").is_err());
        assert!(RelPath::parse(b"a/../../b").is_err());
        assert!(RelPath::parse(b"..").is_err());
        assert_eq!(RelPath::parse(b"..a/b..").unwrap().0.len(), 2);
    }

    #[test]
    fn names_are_escaped_and_cut() {
        assert_eq!(escape_name(b"a/b c"), "a/b c");
        assert_eq!(escape_name(b"x\x1b[2Jy"), "x\\x1b[2Jy");
        assert_eq!(escape_name(b"\xff\\"), "\\xff\\x5c");
        assert_eq!(escape_name("é\u{9b}".as_bytes()), "é\\xc2\\x9b");
        let long = vec![b'a'; 10_000];
        let shown = escape_name(&long);
        assert!(shown.len() < 300, "{}", shown.len());
        assert!(shown.ends_with("... (10000 bytes)"));
    }

    #[test]
    fn symlink_escape_is_lexical() {
        let d = RelPath::parse(b"a/b").unwrap();
        assert!(!symlink_escapes(&d, b"../../x"));
        assert!(symlink_escapes(&d, b"../../../x"));
        assert!(symlink_escapes(&RelPath(vec![]), b"../x"));
        assert!(!symlink_escapes(&RelPath(vec![]), b"/etc/x"));
        assert!(symlink_escapes(&d, b"c/../../../../x"));
    }
}
