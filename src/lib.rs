//! Strata: container layers on copy-on-write block storage.
pub mod serve;
