//! The vfs driver (in progress).
