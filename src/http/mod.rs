//! HTTP/1.1 wire format: request heads (httparse), request bodies, response heads.
//!
//! Pure code: no sockets, no mio, no nix. `conn.rs` drives it.
//! Ancestors: hyper `proto/h1/role.rs` + `decode.rs`, gunicorn `http/errors.py`.

pub mod body;
pub mod date;
pub mod request;
pub mod response;

pub use body::BodyDecoder;
pub use request::{Framing, Head, Limits, ParseError, Version, parse_head, parse_head_reusing};
pub use response::{ResponseFraming, reason_phrase, write_error_response, write_head};
