//! The query string a client sends with a stream name (`key?token=...&x=y`), the app
//! (`live?token=...`) or the RTMP tcUrl: split off the name and parsed into parameters.

/// Parameters longer than this in total are not read (a stream name is small).
const MAX_QUERY_LEN: usize = 4096;
/// Parameters read at most from one query.
const MAX_PARAMS: usize = 32;

/// `name` without its query string.
pub fn strip(name: &str) -> &str {
    name.split_once('?').map_or(name, |(name, _)| name)
}

/// The query string of `name`, empty when it has none.
pub fn of(name: &str) -> &str {
    name.split_once('?').map_or("", |(_, query)| query)
}

/// Parses `a=1&b=two` into pairs, percent-decoded; bounded in size and count. A parameter
/// without `=` has an empty value.
pub fn parse(query: &str) -> Vec<(String, String)> {
    if query.len() > MAX_QUERY_LEN {
        return Vec::new();
    }
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .take(MAX_PARAMS)
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Percent-decoding (`+` as space); an invalid escape is kept as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_query_and_parameters_are_decoded() {
        assert_eq!(strip("key?token=a.b"), "key");
        assert_eq!(strip("key"), "key");
        assert_eq!(of("key?token=a.b&x"), "token=a.b&x");
        assert_eq!(
            parse("token=a.b&x&name=two%20words+more&bad=%zz&end=%4"),
            [
                ("token".into(), "a.b".into()),
                ("x".into(), String::new()),
                ("name".into(), "two words more".into()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
            ]
        );
        assert!(parse(&"a=1&".repeat(2000)).is_empty());
        assert_eq!(parse(&"a=1&".repeat(100)).len(), MAX_PARAMS);
    }
}
