//! AMF0 values: the encoding of RTMP commands and metadata.
//!
//! Decoding is hardened against hostile input: every length is checked against the bytes that
//! are actually present, nesting is capped at [`MAX_DEPTH`] and one message ([`decode_all`]) may
//! hold at most [`MAX_ELEMENTS`] values in total, at every depth and over all its top-level
//! values, so a message can not make us allocate far more memory than its own size.

use bytes::{BufMut, BytesMut};

/// Maximum nesting of objects and arrays.
pub const MAX_DEPTH: usize = 64;
/// Maximum number of values (at any depth, all top-level values together) in one decoded
/// message. Real commands and metadata hold dozens.
pub const MAX_ELEMENTS: usize = 65_536;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const MOVIECLIP: u8 = 0x04;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const RECORDSET: u8 = 0x0E;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// One AMF0 value. Object properties keep their wire order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Number (marker 0x00): an IEEE 754 double.
    Number(f64),
    /// Boolean (marker 0x01).
    Boolean(bool),
    /// String (marker 0x02); written as a long string when over 65535 bytes.
    String(String),
    /// Object (marker 0x03): anonymous object, properties in wire order.
    Object(Vec<(String, Value)>),
    /// Null (marker 0x05).
    Null,
    /// Undefined (marker 0x06).
    Undefined,
    /// ECMA array (marker 0x08): an associative array, encoded like an object with a count.
    EcmaArray(Vec<(String, Value)>),
    /// Strict array (marker 0x0A): a dense array.
    StrictArray(Vec<Value>),
    /// Date (marker 0x0B).
    Date {
        /// Milliseconds since the Unix epoch, UTC.
        millis: f64,
        /// Time zone offset field; reserved by the spec, normally 0.
        tz: i16,
    },
    /// Long string (marker 0x0C), with a 32-bit length.
    LongString(String),
}

impl Value {
    /// The text of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// First property named `key` of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(props) | Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Builds an `Object` from `(&str, Value)` pairs.
    pub fn object<'a>(props: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A `String` value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
}

/// Why AMF0 bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Amf0Error {
    /// A value (named by the string) extends past the end of the input.
    #[error("AMF0 {0} runs past end of message")]
    Truncated(&'static str),
    /// A type marker AMF0 does not define.
    #[error("unknown AMF0 marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// A defined marker we do not decode (movieclip, reference, AMF3 switch, ...), with its name.
    #[error("unsupported AMF0 marker 0x{0:02x} ({1})")]
    UnsupportedMarker(u8, &'static str),
    /// An object-end marker where no object is open.
    #[error("AMF0 object-end marker outside an object")]
    UnexpectedObjectEnd,
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// More than [`MAX_ELEMENTS`] values in one message.
    #[error("AMF0 message holds more than {MAX_ELEMENTS} values")]
    TooManyElements,
}

/// Decodes one value from the front of `buf`, advancing it past the value.
pub fn decode(buf: &mut &[u8]) -> Result<Value, Amf0Error> {
    let mut budget = MAX_ELEMENTS;
    decode_value(buf, 0, &mut budget)
}

/// Decodes values until `buf` is exhausted, within one element budget for the whole message.
pub fn decode_all(mut buf: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut budget = MAX_ELEMENTS;
    let mut values = Vec::new();
    while !buf.is_empty() {
        values.push(decode_value(&mut buf, 0, &mut budget)?);
    }
    Ok(values)
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], Amf0Error> {
    if buf.len() < n {
        return Err(Amf0Error::Truncated(what));
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

fn read_u8(buf: &mut &[u8], what: &'static str) -> Result<u8, Amf0Error> {
    Ok(take(buf, 1, what)?[0])
}

fn read_u16(buf: &mut &[u8], what: &'static str) -> Result<u16, Amf0Error> {
    let b = take(buf, 2, what)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn read_u32(buf: &mut &[u8], what: &'static str) -> Result<u32, Amf0Error> {
    let b = take(buf, 4, what)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_f64(buf: &mut &[u8], what: &'static str) -> Result<f64, Amf0Error> {
    let b = take(buf, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(f64::from_be_bytes(a))
}

// Invalid UTF-8 is replaced rather than rejected: some encoders put Latin-1 into metadata.
fn read_utf8(buf: &mut &[u8], len: usize, what: &'static str) -> Result<String, Amf0Error> {
    Ok(String::from_utf8_lossy(take(buf, len, what)?).into_owned())
}

fn read_short_string(buf: &mut &[u8], what: &'static str) -> Result<String, Amf0Error> {
    let len = read_u16(buf, what)? as usize;
    read_utf8(buf, len, what)
}

fn read_long_string(buf: &mut &[u8], what: &'static str) -> Result<String, Amf0Error> {
    let len = read_u32(buf, what)? as usize;
    read_utf8(buf, len, what)
}

fn spend(budget: &mut usize) -> Result<(), Amf0Error> {
    *budget = budget.checked_sub(1).ok_or(Amf0Error::TooManyElements)?;
    Ok(())
}

fn decode_value(buf: &mut &[u8], depth: usize, budget: &mut usize) -> Result<Value, Amf0Error> {
    spend(budget)?;
    let marker = read_u8(buf, "value marker")?;
    Ok(match marker {
        NUMBER => Value::Number(read_f64(buf, "number")?),
        BOOLEAN => Value::Boolean(read_u8(buf, "boolean")? != 0),
        STRING => Value::String(read_short_string(buf, "string")?),
        OBJECT => Value::Object(decode_properties(buf, depth + 1, budget)?),
        NULL => Value::Null,
        UNDEFINED => Value::Undefined,
        ECMA_ARRAY => {
            // The count is only a hint (encoders get it wrong); the end marker is authoritative.
            read_u32(buf, "ECMA array count")?;
            Value::EcmaArray(decode_properties(buf, depth + 1, budget)?)
        }
        STRICT_ARRAY => {
            let count = read_u32(buf, "strict array count")? as usize;
            if depth + 1 > MAX_DEPTH {
                return Err(Amf0Error::TooDeep);
            }
            // Every element takes at least one byte, so a count beyond the remaining bytes is a lie.
            if count > buf.len() {
                return Err(Amf0Error::Truncated("strict array"));
            }
            let mut items = Vec::with_capacity(count.min(*budget));
            for _ in 0..count {
                items.push(decode_value(buf, depth + 1, budget)?);
            }
            Value::StrictArray(items)
        }
        DATE => {
            let millis = read_f64(buf, "date")?;
            let tz = read_u16(buf, "date")? as i16;
            Value::Date { millis, tz }
        }
        LONG_STRING => Value::LongString(read_long_string(buf, "long string")?),
        // Typed objects are read as plain objects; the class name is of no use to us.
        TYPED_OBJECT => {
            read_short_string(buf, "typed object class name")?;
            Value::Object(decode_properties(buf, depth + 1, budget)?)
        }
        OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
        MOVIECLIP => return Err(Amf0Error::UnsupportedMarker(marker, "movieclip")),
        REFERENCE => return Err(Amf0Error::UnsupportedMarker(marker, "reference")),
        UNSUPPORTED => return Err(Amf0Error::UnsupportedMarker(marker, "unsupported")),
        RECORDSET => return Err(Amf0Error::UnsupportedMarker(marker, "recordset")),
        XML_DOCUMENT => return Err(Amf0Error::UnsupportedMarker(marker, "XML document")),
        AVMPLUS => return Err(Amf0Error::UnsupportedMarker(marker, "AMF3 switch")),
        other => return Err(Amf0Error::UnknownMarker(other)),
    })
}

/// Reads `key value` pairs up to the `00 00 09` end marker.
fn decode_properties(
    buf: &mut &[u8],
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<(String, Value)>, Amf0Error> {
    if depth > MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    let mut props = Vec::new();
    loop {
        let key = read_short_string(buf, "object key")?;
        if key.is_empty() && buf.first() == Some(&OBJECT_END) {
            *buf = &buf[1..];
            return Ok(props);
        }
        let value = decode_value(buf, depth, budget)?;
        props.push((key, value));
    }
}

/// Appends the encoding of `value` to `out`.
///
/// Strings longer than 65535 bytes are written as long strings, and property keys longer than
/// that (which AMF0 can not represent) are truncated at a character boundary.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.put_u8(STRING);
                out.put_u16(len);
                out.put_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(s, out),
        },
        Value::Object(props) => {
            out.put_u8(OBJECT);
            encode_properties(props, out);
        }
        Value::Null => out.put_u8(NULL),
        Value::Undefined => out.put_u8(UNDEFINED),
        Value::EcmaArray(props) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            encode_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.put_u8(STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(item, out);
            }
        }
        Value::Date { millis, tz } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*tz);
        }
        Value::LongString(s) => encode_long_string(s, out),
    }
}

/// Appends the encodings of all `values` to `out`.
pub fn encode_all(values: &[Value], out: &mut BytesMut) {
    for value in values {
        encode(value, out);
    }
}

fn encode_long_string(s: &str, out: &mut BytesMut) {
    out.put_u8(LONG_STRING);
    out.put_u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
    out.put_slice(s.as_bytes());
}

fn encode_properties(props: &[(String, Value)], out: &mut BytesMut) {
    for (key, value) in props {
        let mut end = key.len().min(u16::MAX as usize);
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        out.put_u16(end as u16);
        out.put_slice(&key.as_bytes()[..end]);
        encode(value, out);
    }
    out.put_slice(&[0, 0, OBJECT_END]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(v, &mut out);
        out.to_vec()
    }

    #[test]
    fn decodes_known_wire_form() {
        // "connect", 1.0, { app: "live" }
        let mut wire = vec![0x02, 0x00, 0x07];
        wire.extend_from_slice(b"connect");
        wire.push(0x00);
        wire.extend_from_slice(&1.0f64.to_be_bytes());
        wire.extend_from_slice(&[0x03, 0x00, 0x03]);
        wire.extend_from_slice(b"app");
        wire.extend_from_slice(&[0x02, 0x00, 0x04]);
        wire.extend_from_slice(b"live");
        wire.extend_from_slice(&[0x00, 0x00, 0x09]);
        let values = decode_all(&wire).unwrap();
        assert_eq!(
            values,
            vec![
                Value::string("connect"),
                Value::Number(1.0),
                Value::object([("app", Value::string("live"))]),
            ]
        );
        assert_eq!(values[2].get("app").and_then(Value::as_str), Some("live"));
        let mut out = BytesMut::new();
        encode_all(&values, &mut out);
        assert_eq!(out.to_vec(), wire);
    }

    #[test]
    fn decode_advances_slice() {
        let mut wire = enc(&Value::Number(2.5));
        wire.extend(enc(&Value::Null));
        let mut s = &wire[..];
        assert_eq!(decode(&mut s).unwrap(), Value::Number(2.5));
        assert_eq!(s, &[NULL]);
    }

    #[test]
    fn truncated_string_is_an_error() {
        let wire = [0x02, 0x00, 0x10, b'a', b'b'];
        let err = decode_all(&wire).unwrap_err();
        assert_eq!(err, Amf0Error::Truncated("string"));
        assert_eq!(err.to_string(), "AMF0 string runs past end of message");
    }

    #[test]
    fn every_truncation_of_a_value_is_an_error() {
        let wire = enc(&Value::object([
            ("a", Value::Number(1.0)),
            (
                "b",
                Value::StrictArray(vec![Value::Boolean(true), Value::Null]),
            ),
            (
                "c",
                Value::EcmaArray(vec![("d".into(), Value::string("x"))]),
            ),
            (
                "e",
                Value::Date {
                    millis: 5.0,
                    tz: -60,
                },
            ),
            ("f", Value::LongString("long".into())),
        ]));
        for cut in 0..wire.len() {
            let mut s = &wire[..cut];
            assert!(decode(&mut s).is_err(), "cut at {cut} decoded");
        }
    }

    #[test]
    fn unknown_and_unsupported_markers() {
        let err = decode_all(&[0x42]).unwrap_err();
        assert_eq!(err.to_string(), "unknown AMF0 marker 0x42");
        assert!(matches!(
            decode_all(&[REFERENCE, 0, 1]),
            Err(Amf0Error::UnsupportedMarker(REFERENCE, _))
        ));
        assert_eq!(
            decode_all(&[OBJECT_END]),
            Err(Amf0Error::UnexpectedObjectEnd)
        );
    }

    #[test]
    fn absurd_nesting_is_rejected() {
        let mut wire = Vec::new();
        for _ in 0..100 {
            wire.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        wire.push(NULL);
        let err = decode_all(&wire).unwrap_err();
        assert_eq!(err, Amf0Error::TooDeep);
        assert_eq!(err.to_string(), "AMF0 nesting deeper than 64");

        let mut wire = Vec::new();
        for _ in 0..100 {
            wire.extend_from_slice(&[OBJECT, 0, 1, b'k']);
        }
        assert_eq!(decode_all(&wire), Err(Amf0Error::TooDeep));

        // 64 levels are fine.
        let mut v = Value::Null;
        for _ in 0..MAX_DEPTH {
            v = Value::StrictArray(vec![v]);
        }
        assert_eq!(decode_all(&enc(&v)).unwrap(), vec![v]);
    }

    #[test]
    fn lying_array_count_is_rejected_without_allocating() {
        let wire = [STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, NULL];
        assert_eq!(decode_all(&wire), Err(Amf0Error::Truncated("strict array")));
    }

    #[test]
    fn element_budget_is_enforced() {
        let n = MAX_ELEMENTS + 1;
        let mut wire = vec![STRICT_ARRAY];
        wire.extend_from_slice(&(n as u32).to_be_bytes());
        wire.resize(wire.len() + n, NULL);
        assert_eq!(decode_all(&wire), Err(Amf0Error::TooManyElements));
    }

    #[test]
    fn element_budget_holds_for_the_whole_message() {
        // Millions of top-level nulls used to be decoded one budget each.
        let wire = vec![NULL; MAX_ELEMENTS + 1];
        assert_eq!(decode_all(&wire), Err(Amf0Error::TooManyElements));
        assert_eq!(decode_all(&wire[1..]).map(|v| v.len()), Ok(MAX_ELEMENTS));
    }

    #[test]
    fn typed_object_reads_as_object() {
        let mut wire = vec![TYPED_OBJECT, 0, 1, b'C', 0, 1, b'x', NULL, 0, 0, OBJECT_END];
        wire.push(NULL);
        assert_eq!(
            decode_all(&wire).unwrap(),
            vec![Value::object([("x", Value::Null)]), Value::Null]
        );
    }

    #[test]
    fn long_strings_switch_marker() {
        let s = "a".repeat(70_000);
        let wire = enc(&Value::String(s.clone()));
        assert_eq!(wire[0], LONG_STRING);
        assert_eq!(decode_all(&wire).unwrap(), vec![Value::LongString(s)]);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,20}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            (any::<i32>(), any::<i16>()).prop_map(|(m, tz)| Value::Date {
                millis: f64::from(m),
                tz
            }),
            "[a-z]{0,10}".prop_map(Value::LongString),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let props = prop::collection::vec(("[a-zA-Z0-9_]{1,12}", inner.clone()), 0..8);
            prop_oneof![
                props.clone().prop_map(Value::Object),
                props.prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..8).prop_map(Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn roundtrip(values in prop::collection::vec(arb_value(), 0..6)) {
            let mut out = BytesMut::new();
            encode_all(&values, &mut out);
            prop_assert_eq!(decode_all(&out).unwrap(), values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_all(&bytes);
        }
    }
}
