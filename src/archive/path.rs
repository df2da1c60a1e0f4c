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
        let shown = || String::from_utf8_lossy(raw).into_owned();
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

    /// The path for messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.as_bytes()).into_owned()
    }
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
    fn symlink_escape_is_lexical() {
        let d = RelPath::parse(b"a/b").unwrap();
        assert!(!symlink_escapes(&d, b"../../x"));
        assert!(symlink_escapes(&d, b"../../../x"));
        assert!(symlink_escapes(&RelPath(vec![]), b"../x"));
        assert!(!symlink_escapes(&RelPath(vec![]), b"/etc/x"));
        assert!(symlink_escapes(&d, b"c/../../../../x"));
    }
}
