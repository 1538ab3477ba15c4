//! Request-body decoder: Content-Length or chunked (with trailers).
//!
//! The chunked decoder is a flat state machine stepped one byte at a time by a
//! single `match` (chunk data is copied in bulk), in the style of hyper's
//! `proto/h1/decode.rs`. Keeping all state in the enum means input may arrive
//! split at any byte and the result is identical.
//!
//! Strictness is deliberate: chunk framing is where a front-end proxy and an
//! origin most often disagree (lenient chunk-size parsing, bare LF, odd
//! extensions), and every disagreement is a request-smuggling opportunity. So:
//!
//! * chunk-size is `1*HEXDIG`, at most 16 digits (fits in u64);
//! * whitespace after the size is only accepted as BWS before a `;` extension;
//! * chunk extensions are skipped but bounded (4096 bytes per message) so a
//!   client cannot make us spin on extension bytes that carry no body;
//! * every line in the chunked framing (size line, data terminator, trailer
//!   fields, final empty line) must end in CRLF: a bare LF is rejected
//!   everywhere here (the request head, parsed by httparse, tolerates bare LF as
//!   RFC 9112 §2.2 allows; inside the body we take the strict reading);
//! * trailer fields follow the header rules (token name, no whitespace before
//!   the colon, no obs-fold, no CTL except HTAB in values) and the trailer
//!   section is capped at 8190 bytes.

use super::request::{Framing, ParseError, is_token};

/// Max total bytes of chunk extensions in one message.
pub const MAX_EXTENSION_BYTES: usize = 4096;
/// Max total bytes of the trailer section (field lines with their CRLFs).
pub const MAX_TRAILER_BYTES: usize = 8190;

#[derive(Debug)]
pub enum BodyDecoder {
    Length {
        remaining: u64,
    },
    /// `size` is the remaining bytes of the current chunk (or the size being
    /// parsed), `seen` the body bytes delivered so far, `ext` the chunk
    /// extension bytes seen so far, `trailer_bytes` the trailer section bytes
    /// seen so far and `line` a trailer field line in progress (allocated
    /// only if the message has trailers).
    Chunked {
        state: ChunkedState,
        size: u64,
        seen: u64,
        ext: usize,
        trailer_bytes: usize,
        line: Vec<u8>,
    },
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedState {
    /// Start of a chunk-size line: the first HEXDIG is required.
    Size,
    /// Inside the chunk-size, `digits` read so far.
    SizeMore { digits: u8 },
    /// BWS after the chunk-size; only `;` (an extension) may follow.
    SizeLws,
    /// Inside chunk extensions, until CR.
    Extension,
    /// CR of the size line seen, LF expected.
    SizeLf,
    /// Chunk data; `size` bytes left.
    Data,
    /// CR after chunk data expected.
    DataCr,
    /// LF after chunk data expected.
    DataLf,
    /// Start of a trailer field line, or CR of the final empty line.
    Trailer,
    /// Inside a trailer field line, until CR.
    TrailerLine,
    /// CR of a trailer line seen, LF expected.
    TrailerLf,
    /// CR of the final empty line seen, LF expected.
    EndLf,
}

/// Result of one `decode` step.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Bytes of `input` consumed.
    pub consumed: usize,
    /// True once the whole body (and trailers) has been read.
    pub done: bool,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> BodyDecoder {
        match framing {
            Framing::None | Framing::Length(0) => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::Length { remaining: n },
            Framing::Chunked => BodyDecoder::Chunked {
                state: ChunkedState::Size,
                size: 0,
                seen: 0,
                ext: 0,
                trailer_bytes: 0,
                line: Vec::new(),
            },
        }
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// Decode from `input`, appending body bytes to `out` and trailer fields to `trailers`.
    /// `limit` is the max total body size (0 = unlimited): exceeding it is BodyTooLarge.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        trailers: &mut Vec<(String, Vec<u8>)>,
        limit: u64,
    ) -> Result<Decoded, ParseError> {
        let d = match self {
            BodyDecoder::Done => {
                return Ok(Decoded {
                    consumed: 0,
                    done: true,
                });
            }
            BodyDecoder::Length { remaining } => {
                // parse_head already refused a Content-Length over the limit;
                // this keeps the decoder safe on its own.
                if limit != 0 && *remaining > limit {
                    return Err(ParseError::BodyTooLarge);
                }
                let n = (*remaining).min(input.len() as u64) as usize;
                out.extend_from_slice(&input[..n]);
                *remaining -= n as u64;
                Decoded {
                    consumed: n,
                    done: *remaining == 0,
                }
            }
            BodyDecoder::Chunked {
                state,
                size,
                seen,
                ext,
                trailer_bytes,
                line,
            } => {
                let mut c = Chunk {
                    state,
                    size,
                    seen,
                    ext,
                    trailer_bytes,
                    line,
                };
                c.decode(input, out, trailers, limit)?
            }
        };
        if d.done {
            *self = BodyDecoder::Done;
        }
        Ok(d)
    }
}

/// Borrowed view of the `Chunked` variant's fields.
struct Chunk<'a> {
    state: &'a mut ChunkedState,
    size: &'a mut u64,
    seen: &'a mut u64,
    ext: &'a mut usize,
    trailer_bytes: &'a mut usize,
    line: &'a mut Vec<u8>,
}

fn hex_val(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

impl Chunk<'_> {
    /// The size line is over: enforce the body limit before reading any data.
    fn size_done(&self, limit: u64) -> Result<(), ParseError> {
        if limit != 0 && self.seen.saturating_add(*self.size) > limit {
            return Err(ParseError::BodyTooLarge);
        }
        Ok(())
    }

    fn count_trailer_byte(&mut self) -> Result<(), ParseError> {
        *self.trailer_bytes += 1;
        if *self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ParseError::HeaderTooLarge);
        }
        Ok(())
    }

    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        trailers: &mut Vec<(String, Vec<u8>)>,
        limit: u64,
    ) -> Result<Decoded, ParseError> {
        use ChunkedState::*;
        let mut pos = 0;
        while pos < input.len() {
            if *self.state == Data {
                let n = (*self.size).min((input.len() - pos) as u64) as usize;
                out.extend_from_slice(&input[pos..pos + n]);
                pos += n;
                *self.size -= n as u64;
                *self.seen += n as u64;
                if *self.size == 0 {
                    *self.state = DataCr;
                }
                continue;
            }
            let b = input[pos];
            pos += 1;
            *self.state = match *self.state {
                Size => {
                    *self.size = hex_val(b).ok_or(ParseError::Bad("invalid chunk size"))?;
                    SizeMore { digits: 1 }
                }
                SizeMore { digits } => {
                    if let Some(v) = hex_val(b) {
                        if digits >= 16 {
                            return Err(ParseError::Bad("chunk size too long"));
                        }
                        *self.size = (*self.size << 4) | v;
                        SizeMore { digits: digits + 1 }
                    } else {
                        self.size_done(limit)?;
                        match b {
                            b'\r' => SizeLf,
                            b';' => Extension,
                            b' ' | b'\t' => SizeLws,
                            _ => return Err(ParseError::Bad("invalid chunk size")),
                        }
                    }
                }
                SizeLws => match b {
                    b' ' | b'\t' => SizeLws,
                    b';' => Extension,
                    _ => return Err(ParseError::Bad("invalid chunk size line")),
                },
                Extension => match b {
                    b'\r' => SizeLf,
                    b'\t' | b' '..=0x7e | 0x80..=0xff => {
                        *self.ext += 1;
                        if *self.ext > MAX_EXTENSION_BYTES {
                            return Err(ParseError::Bad("chunk extensions too long"));
                        }
                        Extension
                    }
                    _ => return Err(ParseError::Bad("invalid byte in chunk extension")),
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err(ParseError::Bad("chunk size line not ended by CRLF"));
                    }
                    if *self.size == 0 { Trailer } else { Data }
                }
                Data => unreachable!("handled above"),
                DataCr => {
                    if b != b'\r' {
                        return Err(ParseError::Bad("chunk data not followed by CRLF"));
                    }
                    DataLf
                }
                DataLf => {
                    if b != b'\n' {
                        return Err(ParseError::Bad("chunk data not followed by CRLF"));
                    }
                    Size
                }
                Trailer => match b {
                    b'\r' => EndLf,
                    b'\n' => return Err(ParseError::Bad("bare LF in chunked body")),
                    b' ' | b'\t' => return Err(ParseError::Bad("obs-fold in trailer")),
                    _ => {
                        self.count_trailer_byte()?;
                        self.line.push(b);
                        TrailerLine
                    }
                },
                TrailerLine => {
                    self.count_trailer_byte()?;
                    if b == b'\r' {
                        TrailerLf
                    } else if b == b'\n' {
                        return Err(ParseError::Bad("bare LF in chunked body"));
                    } else {
                        self.line.push(b);
                        TrailerLine
                    }
                }
                TrailerLf => {
                    self.count_trailer_byte()?;
                    if b != b'\n' {
                        return Err(ParseError::Bad("trailer line not ended by CRLF"));
                    }
                    trailers.push(parse_trailer(self.line)?);
                    self.line.clear();
                    Trailer
                }
                EndLf => {
                    if b != b'\n' {
                        return Err(ParseError::Bad("chunked body not ended by CRLF"));
                    }
                    return Ok(Decoded {
                        consumed: pos,
                        done: true,
                    });
                }
            };
        }
        Ok(Decoded {
            consumed: pos,
            done: false,
        })
    }
}

/// `field-name ":" OWS field-value OWS` with the same rules as request headers.
fn parse_trailer(line: &[u8]) -> Result<(String, Vec<u8>), ParseError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::Bad("trailer field without colon"))?;
    let name = &line[..colon];
    // Also rejects whitespace before the colon and an empty name.
    if !is_token(name) {
        return Err(ParseError::Bad("invalid trailer field name"));
    }
    let mut value = &line[colon + 1..];
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    if !value
        .iter()
        .all(|&b| matches!(b, b'\t' | b' '..=0x7e | 0x80..=0xff))
    {
        return Err(ParseError::Bad("invalid trailer field value"));
    }
    let name =
        std::str::from_utf8(name).map_err(|_| ParseError::Bad("invalid trailer field name"))?;
    Ok((name.to_owned(), value.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Trailers = Vec<(String, Vec<u8>)>;

    /// Decode `input` in one call.
    fn whole(
        framing: Framing,
        input: &[u8],
        limit: u64,
    ) -> Result<(Vec<u8>, Trailers, Decoded), ParseError> {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        let mut tr = Vec::new();
        let r = d.decode(input, &mut out, &mut tr, limit)?;
        assert_eq!(r.done, d.is_done());
        Ok((out, tr, r))
    }

    /// Decode `input` fed in pieces of the given sizes (the caller keeps
    /// unconsumed bytes, like a connection buffer would).
    fn pieces(
        framing: Framing,
        input: &[u8],
        split: &[usize],
        limit: u64,
    ) -> Result<(Vec<u8>, Trailers, usize), ParseError> {
        let mut d = BodyDecoder::new(framing);
        let mut out = Vec::new();
        let mut tr = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut consumed_total = 0;
        let mut bounds: Vec<usize> = split.to_vec();
        bounds.push(input.len());
        for &end in &bounds {
            buf.extend_from_slice(&input[fed..end]);
            fed = end;
            let r = d.decode(&buf, &mut out, &mut tr, limit)?;
            buf.drain(..r.consumed);
            consumed_total += r.consumed;
            if r.done {
                return Ok((out, tr, consumed_total));
            }
        }
        Err(ParseError::Bad("test: not done"))
    }

    /// Result of feeding one byte at a time, and of every two-piece split,
    /// must equal the one-shot result.
    fn check_all_splits(
        framing: Framing,
        input: &[u8],
        limit: u64,
    ) -> Result<(Vec<u8>, Trailers, usize), ParseError> {
        let one = whole(framing, input, limit).map(|(o, t, d)| {
            assert!(d.done);
            (o, t, d.consumed)
        });
        let bytes: Vec<usize> = (1..input.len()).collect();
        assert_eq!(pieces(framing, input, &bytes, limit), one, "byte at a time");
        for i in 0..=input.len() {
            assert_eq!(pieces(framing, input, &[i], limit), one, "split at {i}");
        }
        one
    }

    fn chunked(input: &[u8]) -> Result<(Vec<u8>, Trailers, usize), ParseError> {
        check_all_splits(Framing::Chunked, input, 0)
    }

    /// A malformed body must fail (not hang) whichever way it is split.
    fn chunked_err(input: &[u8]) -> ParseError {
        let e = chunked(input).expect_err("should fail");
        assert_ne!(
            e,
            ParseError::Bad("test: not done"),
            "{input:?} never failed"
        );
        e
    }

    fn chunked_bad(input: &[u8]) {
        let e = chunked_err(input);
        assert!(matches!(e, ParseError::Bad(_)), "{e:?} for {input:?}");
    }

    #[test]
    fn none_and_zero_length_are_done() {
        assert!(BodyDecoder::new(Framing::None).is_done());
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
        let (out, _, d) = whole(Framing::None, b"GET / HTTP/1.1", 0).unwrap();
        assert_eq!(
            d,
            Decoded {
                consumed: 0,
                done: true
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn length() {
        assert!(matches!(
            BodyDecoder::new(Framing::Length(5)),
            BodyDecoder::Length { remaining: 5 }
        ));
        let (out, _, n) = check_all_splits(Framing::Length(5), b"helloGET /", 0).unwrap();
        assert_eq!(out, b"hello");
        assert_eq!(n, 5);
        let mut d = BodyDecoder::new(Framing::Length(5));
        let mut out = Vec::new();
        let r = d.decode(b"he", &mut out, &mut Vec::new(), 0).unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 2,
                done: false
            }
        );
        let r = d.decode(b"", &mut out, &mut Vec::new(), 0).unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 0,
                done: false
            }
        );
        let r = d.decode(b"lloXX", &mut out, &mut Vec::new(), 0).unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 3,
                done: true
            }
        );
        assert!(d.is_done());
        assert_eq!(out, b"hello");
    }

    #[test]
    fn length_limit() {
        let e = whole(Framing::Length(11), b"x", 10).unwrap_err();
        assert_eq!(e, ParseError::BodyTooLarge);
        assert!(whole(Framing::Length(10), &[b'x'; 10], 10).unwrap().2.done);
    }

    #[test]
    fn chunked_simple() {
        assert!(matches!(
            BodyDecoder::new(Framing::Chunked),
            BodyDecoder::Chunked {
                state: ChunkedState::Size,
                ..
            }
        ));
        let (out, tr, n) = chunked(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT").unwrap();
        assert_eq!(out, b"hello world");
        assert!(tr.is_empty());
        assert_eq!(n, 26);
    }

    #[test]
    fn chunked_empty_body() {
        let (out, _, n) = chunked(b"0\r\n\r\n").unwrap();
        assert!(out.is_empty());
        assert_eq!(n, 5);
    }

    #[test]
    fn chunked_hex_sizes() {
        let mut input = b"1a\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 26]);
        input.extend_from_slice(b"\r\nA\r\n0123456789\r\n000\r\n\r\n");
        let (out, _, _) = chunked(&input).unwrap();
        assert_eq!(out.len(), 36);
        // 16 digits (leading zeros) are fine
        let (out, _, _) = chunked(b"0000000000000001\r\nx\r\n0\r\n\r\n").unwrap();
        assert_eq!(out, b"x");
    }

    #[test]
    fn chunked_bad_sizes() {
        chunked_bad(b"\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"g\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"-1\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"+1\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"0x1\r\nx\r\n0\r\n\r\n");
        chunked_bad(b" 1\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"1 \r\nx\r\n0\r\n\r\n");
        chunked_bad(b"1 2\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"00000000000000001\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"10000000000000000\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"ffffffffffffffffff\r\n");
    }

    #[test]
    fn chunked_huge_size_hits_limit_before_data() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let r = d.decode(
            b"ffffffffffffffff\r\n",
            &mut Vec::new(),
            &mut Vec::new(),
            1 << 20,
        );
        assert_eq!(r.unwrap_err(), ParseError::BodyTooLarge);
        // unlimited: fine until the data runs out
        let mut d = BodyDecoder::new(Framing::Chunked);
        let r = d.decode(
            b"ffffffffffffffff\r\nab",
            &mut Vec::new(),
            &mut Vec::new(),
            0,
        );
        assert_eq!(
            r.unwrap(),
            Decoded {
                consumed: 20,
                done: false
            }
        );
    }

    #[test]
    fn chunked_extensions_ignored() {
        let (out, _, _) =
            chunked(b"5;foo=bar\r\nhello\r\n1 ; a=\"b;c\" ;d\r\n!\r\n0;last\r\n\r\n").unwrap();
        assert_eq!(out, b"hello!");
    }

    #[test]
    fn chunked_extension_limit() {
        let mut input = b"1;".to_vec();
        input.extend_from_slice(&[b'e'; MAX_EXTENSION_BYTES]);
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(whole(Framing::Chunked, &input, 0).is_ok());
        let mut input = b"1;".to_vec();
        input.extend_from_slice(&[b'e'; MAX_EXTENSION_BYTES + 1]);
        input.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(matches!(
            whole(Framing::Chunked, &input, 0),
            Err(ParseError::Bad(_))
        ));
        // the bound is per message, not per chunk
        let mut input = Vec::new();
        for _ in 0..3 {
            input.extend_from_slice(b"1;");
            input.extend_from_slice(&[b'e'; 1500]);
            input.extend_from_slice(b"\r\nx\r\n");
        }
        input.extend_from_slice(b"0\r\n\r\n");
        assert!(matches!(
            whole(Framing::Chunked, &input, 0),
            Err(ParseError::Bad(_))
        ));
    }

    #[test]
    fn chunked_bad_extension_bytes() {
        chunked_bad(b"1;a\x00\r\nx\r\n0\r\n\r\n");
        chunked_bad(b"1;a\nx\r\n0\r\n\r\n");
        chunked_bad(b"1;a\rx\r\n0\r\n\r\n");
    }

    #[test]
    fn chunked_requires_crlf() {
        // bare LF after size, after data, after last chunk, in trailers
        chunked_bad(b"1\nx\r\n0\r\n\r\n");
        chunked_bad(b"1\r\nx\n0\r\n\r\n");
        chunked_bad(b"1\r\nx\r\n0\n\r\n");
        chunked_bad(b"1\r\nx\r\n0\r\n\n");
        chunked_bad(b"1\r\nx\r\n0\r\nA: b\n\r\n");
        // CR not followed by LF
        chunked_bad(b"1\rx\r\n0\r\n\r\n");
        chunked_bad(b"1\r\nx\rx0\r\n\r\n");
        chunked_bad(b"1\r\nx\r\n0\r\n\rx");
        chunked_bad(b"1\r\nx\r\n0\r\nA: b\rx");
    }

    #[test]
    fn chunked_data_must_be_followed_by_crlf() {
        // more data than announced
        chunked_bad(b"1\r\nxy\r\n0\r\n\r\n");
        chunked_bad(b"3\r\nxy\r\n\r\n0\r\n\r\n");
        chunked_bad(b"1\r\nx  \r\n0\r\n\r\n");
    }

    #[test]
    fn chunked_trailers() {
        let (out, tr, n) =
            chunked(b"1\r\nx\r\n0\r\nX-Sum: abc \r\nx-b:\t1\t2\r\nEmpty:\r\n\r\nZ").unwrap();
        assert_eq!(out, b"x");
        assert_eq!(
            tr,
            vec![
                ("X-Sum".to_string(), b"abc".to_vec()),
                ("x-b".to_string(), b"1\t2".to_vec()),
                ("Empty".to_string(), Vec::new()),
            ]
        );
        assert_eq!(n, 42);
        let (_, tr, _) = chunked(b"0\r\nA: caf\xc3\xa9\r\n\r\n").unwrap();
        assert_eq!(tr[0].1, b"caf\xc3\xa9");
    }

    #[test]
    fn chunked_bad_trailers() {
        chunked_bad(b"0\r\nA : b\r\n\r\n");
        chunked_bad(b"0\r\nA\t: b\r\n\r\n");
        chunked_bad(b"0\r\nA(: b\r\n\r\n");
        chunked_bad(b"0\r\n: b\r\n\r\n");
        chunked_bad(b"0\r\nNoColon\r\n\r\n");
        chunked_bad(b"0\r\nA: b\x00c\r\n\r\n");
        chunked_bad(b"0\r\nA: b\x7fc\r\n\r\n");
        chunked_bad(b"0\r\nA\x01: b\r\n\r\n");
        chunked_bad(b"0\r\nA: b\r\n c\r\n\r\n");
        chunked_bad(b"0\r\nA: b\r\n\tc\r\n\r\n");
    }

    #[test]
    fn chunked_trailer_cap() {
        // exactly MAX_TRAILER_BYTES (line + CRLF) is fine
        let mut input = b"0\r\nA: ".to_vec();
        input.resize(3 + MAX_TRAILER_BYTES - 2, b'v');
        input.extend_from_slice(b"\r\n\r\n");
        let (_, tr, _) = whole(Framing::Chunked, &input, 0).unwrap();
        assert_eq!(tr.len(), 1);
        let mut input = b"0\r\nA: ".to_vec();
        input.resize(3 + MAX_TRAILER_BYTES - 1, b'v');
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            whole(Framing::Chunked, &input, 0).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        // also across many small lines, and without the line being finished
        let input = b"0\r\n"
            .iter()
            .copied()
            .chain(b"A: b\r\n".repeat(2000))
            .collect::<Vec<_>>();
        assert_eq!(
            whole(Framing::Chunked, &input, 0).unwrap_err(),
            ParseError::HeaderTooLarge
        );
        let mut input = b"0\r\nA: ".to_vec();
        input.resize(10000, b'v');
        assert_eq!(
            whole(Framing::Chunked, &input, 0).unwrap_err(),
            ParseError::HeaderTooLarge
        );
    }

    #[test]
    fn chunked_limit() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert!(check_all_splits(Framing::Chunked, input, 11).is_ok());
        assert_eq!(
            check_all_splits(Framing::Chunked, input, 10).unwrap_err(),
            ParseError::BodyTooLarge
        );
        // fires at the size line, before the data arrives
        let mut d = BodyDecoder::new(Framing::Chunked);
        let r = d.decode(b"5\r\nhello\r\n6\r\n", &mut Vec::new(), &mut Vec::new(), 10);
        assert_eq!(r.unwrap_err(), ParseError::BodyTooLarge);
    }

    #[test]
    fn done_decoder_consumes_nothing() {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut out = Vec::new();
        let r = d
            .decode(b"0\r\n\r\nGET", &mut out, &mut Vec::new(), 0)
            .unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 5,
                done: true
            }
        );
        assert!(matches!(d, BodyDecoder::Done));
        let r = d.decode(b"GET", &mut out, &mut Vec::new(), 0).unwrap();
        assert_eq!(
            r,
            Decoded {
                consumed: 0,
                done: true
            }
        );
    }
}
