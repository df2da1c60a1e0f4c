//! Store operations behind the CLI verbs, one file per concern. They take an
//! open [`crate::Store`] and return records; printing is the CLI's job.

pub mod container;
pub mod cp;
pub mod df;
pub mod image;
pub mod image_inspect;
pub mod import;
pub mod info;
pub mod init;
pub mod inspect_mounts;
pub mod output;
pub mod prune;
pub mod release;
pub mod snapshots;
pub mod stdio;
pub mod transfer;
