//! OCI image layout and `docker save` archives.
