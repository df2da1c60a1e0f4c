//! The overlay2 driver (in progress).
