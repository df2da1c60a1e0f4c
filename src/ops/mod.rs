//! Store operations behind the CLI verbs, one file per concern. They take an
//! open [`crate::Store`] and return records; printing is the CLI's job.

pub mod container;
pub mod image;
pub mod import;
pub mod info;
pub mod init;
pub mod output;
pub mod release;
pub mod snapshots;
pub mod transfer;
