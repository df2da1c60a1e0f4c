//! Helpers shared by the archive and image tests: raw tar building (the
//! tar crate's builder refuses the hostile names we need) and tree checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Builds tars entry by entry with raw, unchecked names.
#[derive(Default)]
pub struct RawTar {
    pub buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    fn header(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        size: u64,
        link: &[u8],
        mode: u32,
    ) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        let u = h.as_ustar_mut().unwrap();
        u.name[..name.len()].copy_from_slice(name);
        u.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        h
    }

    fn push(&mut self, h: tar::Header, data: &[u8]) {
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Regular,
            data.len() as u64,
            b"",
            0o644,
        );
        self.push(h, data);
        self
    }

    pub fn dir(mut self, name: &str) -> Self {
        let h = self.header(name.as_bytes(), tar::EntryType::Directory, 0, b"", 0o755);
        self.push(h, b"");
        self
    }

    pub fn symlink(mut self, name: &str, target: &str) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Symlink,
            0,
            target.as_bytes(),
            0o777,
        );
        self.push(h, b"");
        self
    }

    pub fn hardlink(mut self, name: &str, target: &str) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Link,
            0,
            target.as_bytes(),
            0o644,
        );
        self.push(h, b"");
        self
    }

    /// A file header that declares `declared` bytes but carries `data`.
    pub fn lying_file(mut self, name: &str, declared: u64, data: &[u8]) -> Self {
        let h = self.header(
            name.as_bytes(),
            tar::EntryType::Regular,
            declared,
            b"",
            0o644,
        );
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

/// A scratch area: `root/` (the apply target) and `canary/` beside it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-test-archive-")
            .tempdir()
            .unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir(dir.path().join("canary")).unwrap();
        fs::write(dir.path().join("canary/file"), b"precious").unwrap();
        Sandbox { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn canary(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    /// Everything outside `root`: path -> (mode, size, nlink, mtime, content).
    pub fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        snapshot(self.dir.path(), &self.root(), &mut out);
        out
    }
}

fn snapshot(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            p.clone(),
            format!(
                "{:o} {} {} {} {:?}",
                m.mode(),
                m.len(),
                m.nlink(),
                m.mtime(),
                content
            ),
        );
        if m.is_dir() {
            snapshot(&p, skip, out);
        }
    }
}
