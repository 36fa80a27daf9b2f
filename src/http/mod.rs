//! HTTP/1.1 wire format: the pure request parser and chunked decoder, and response encoding.
pub mod chunked;
pub mod parser;
pub mod response;
