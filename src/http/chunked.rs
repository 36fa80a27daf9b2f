//! Incremental decoder for the chunked transfer coding (RFC 9112 §7.1). Work in progress.
