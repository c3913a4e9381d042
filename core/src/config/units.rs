//! Durations (`500ms`, `30s`, `10m`, `6h`), sizes (`64KiB`, `100MB`) and listen addresses.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration written with a unit: `500ms`, `30s`, `10m`, `6h`, `1h30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

/// A size in bytes written with a unit: `64KiB`, `100MB`, `1GiB`, or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A `host:port` to listen on, resolved once at validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddress(pub SocketAddr);

/// Parses a duration such as `10m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.chars().all(|c| c.is_ascii_digit()) && !text.is_empty() {
        return Err(format!("duration `{text}` needs a unit, such as `{text}s`"));
    }
    humantime::parse_duration(text)
        .map_err(|_| format!("invalid duration `{text}`: expected a number and a unit, such as 500ms, 30s, 10m or 6h"))
}

/// Parses a size such as `64KiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    text.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!(
                "invalid size `{text}`: expected a number and a unit, such as 64KiB, 100MB or 1GiB"
            )
        })
}

/// Parses a listen address such as `127.0.0.1:8080` or `localhost:8080`.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(format!(
            "invalid address `{text}`: expected host:port, such as 127.0.0.1:8080"
        ));
    }
    match text.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(addr),
        _ => Err(format!("invalid address `{text}`: expected host:port with a resolvable host, such as 127.0.0.1:8080")),
    }
}

impl ConfigDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl ByteSize {
    /// The size in bytes.
    pub fn get(self) -> u64 {
        self.0
    }
}

struct TextVisitor(&'static str);

impl Visitor<'_> for TextVisitor {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(TextVisitor("a duration such as 30s"))?;
        parse_duration(&text)
            .map(ConfigDuration)
            .map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(TextVisitor("a size such as 10MiB"))?;
        parse_size(&text).map(ByteSize).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ListenAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = d.deserialize_any(TextVisitor("an address such as 127.0.0.1:8080"))?;
        parse_address(&text)
            .map(ListenAddress)
            .map_err(de::Error::custom)
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("6h"), Ok(Duration::from_secs(6 * 3600)));
        assert!(parse_duration("10").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("ten minutes")
            .unwrap_err()
            .contains("invalid duration `ten minutes`"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KiB"), Ok(64 * 1024));
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("127.0.0.1:8080").unwrap().port(), 8080);
        assert_eq!(parse_address("localhost:9").unwrap().port(), 9);
        assert!(parse_address("8080")
            .unwrap_err()
            .contains("expected host:port"));
        assert!(parse_address("127.0.0.1:99999").is_err());
    }
}
