//! The parser against tricky real-world lines, and against random bytes.

use super::*;
use proptest::prelude::*;

/// 2024-06-15T12:00:00Z: every RFC 3164 line below is read at this moment.
const NOW: i64 = 1_718_452_800_000;

fn cx() -> ParseContext {
    ParseContext {
        now_ms: NOW,
        zone: TimeZone::Utc,
    }
}

fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

/// The parts of a parsed line as text, for compact expectations.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    pri: Option<u8>,
    version: Option<u8>,
    time: Option<i64>,
    host: Option<String>,
    app: Option<String>,
    procid: Option<String>,
    msgid: Option<String>,
    message: String,
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn row(line: &[u8]) -> Row {
    let p =
        parse(line, &cx()).unwrap_or_else(|e| panic!("{:?}: {e:?}", String::from_utf8_lossy(line)));
    Row {
        pri: p.pri,
        version: p.version,
        time: p.time_ms,
        host: text(p.hostname),
        app: text(p.app),
        procid: text(p.procid),
        msgid: text(p.msgid),
        message: String::from_utf8_lossy(p.message).into_owned(),
    }
}

#[allow(clippy::too_many_arguments)]
fn expect(
    pri: Option<u8>,
    version: Option<u8>,
    time: Option<&str>,
    host: Option<&str>,
    app: Option<&str>,
    procid: Option<&str>,
    msgid: Option<&str>,
    message: &str,
) -> Row {
    Row {
        pri,
        version,
        time: time.map(ms),
        host: host.map(str::to_owned),
        app: app.map(str::to_owned),
        procid: procid.map(str::to_owned),
        msgid: msgid.map(str::to_owned),
        message: message.to_owned(),
    }
}

#[test]
fn rfc5424_lines() {
    // RFC 5424 §6.5 example 1, with the BOM before the message.
    assert_eq!(
        row(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xEF\xBB\xBF'su root' failed for lonvick on /dev/pts/8"),
        expect(Some(34), Some(1), Some("2003-10-11T22:14:15.003Z"), Some("mymachine.example.com"), Some("su"), None, Some("ID47"), "'su root' failed for lonvick on /dev/pts/8")
    );
    // Microseconds and a negative offset; procid text.
    assert_eq!(
        row(b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts."),
        expect(Some(165), Some(1), Some("2003-08-24T12:14:15Z"), Some("192.0.2.1"), Some("myproc"), Some("8710"), None, "%% It's time to make the do-nuts.")
    );
    // NILVALUE everywhere, no message at all.
    assert_eq!(
        row(b"<13>1 - - - - - -"),
        expect(Some(13), Some(1), None, None, None, None, None, "")
    );
    // Ends after MSGID (no structured data): accepted.
    assert_eq!(
        row(b"<13>1 - host app - ID1"),
        expect(
            Some(13),
            Some(1),
            None,
            Some("host"),
            Some("app"),
            None,
            Some("ID1"),
            ""
        )
    );
    // Structured data that does not parse stays in the message.
    assert_eq!(
        row(b"<13>1 - host app - - [broken sd] hello"),
        expect(
            Some(13),
            Some(1),
            None,
            Some("host"),
            Some("app"),
            None,
            None,
            "[broken sd] hello"
        )
    );
}

#[test]
fn rfc5424_structured_data_with_escapes() {
    let line = br#"<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App" eventID="1011"][esc@1 q="a\"b" b="c\\d" r="e\]f" o="g\nh" ip="1" ip="2"] msg"#;
    let p = parse(line, &cx()).unwrap();
    assert_eq!(p.message, b"msg");
    assert_eq!(p.structured_data.len(), 2);
    assert_eq!(p.structured_data[0].id, b"exampleSDID@32473");
    assert_eq!(
        p.structured_data[0].params[1],
        (&b"eventSource"[..], Cow::Borrowed(&b"App"[..]))
    );
    let esc: Vec<(String, String)> = p.structured_data[1]
        .params
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into(),
                String::from_utf8_lossy(v).into(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = esc.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        pairs,
        [
            ("q", "a\"b"),
            ("b", "c\\d"),
            ("r", "e]f"),
            ("o", "g\\nh"),
            ("ip", "1"),
            ("ip", "2")
        ]
    );
    // An element with no parameters, and the BOM after structured data.
    let p = parse(b"<14>1 - h a - - [timeQuality] \xEF\xBB\xBFtext", &cx()).unwrap();
    assert_eq!(
        (
            p.structured_data[0].id,
            p.structured_data[0].params.len(),
            p.message
        ),
        (&b"timeQuality"[..], 0, &b"text"[..])
    );
}

#[test]
fn rfc3164_lines() {
    // RFC 3164 §5.4 examples.
    assert_eq!(
        row(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"),
        expect(
            Some(34),
            None,
            Some("2023-10-11T22:14:15Z"),
            Some("mymachine"),
            Some("su"),
            None,
            None,
            "'su root' failed for lonvick on /dev/pts/8"
        )
    );
    assert_eq!(
        row(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!"),
        expect(
            Some(13),
            None,
            Some("2024-02-05T17:32:18Z"),
            Some("10.0.0.99"),
            None,
            None,
            None,
            "Use the BFG!"
        )
    );
    // host tag[pid]: with a tag that has parentheses (loghub Linux).
    assert_eq!(
        row(b"<86>Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname= uid=0"),
        expect(Some(86), None, Some("2024-06-14T15:16:01Z"), Some("combo"), Some("sshd(pam_unix)"), Some("19939"), None, "authentication failure; logname= uid=0")
    );
    // Missing hostname: the tag follows the timestamp.
    assert_eq!(
        row(b"<30>Jun 15 11:59:00 systemd[1]: Started Session 1."),
        expect(
            Some(30),
            None,
            Some("2024-06-15T11:59:00Z"),
            None,
            Some("systemd"),
            Some("1"),
            None,
            "Started Session 1."
        )
    );
    // `[` at the start of the message, with and without a tag.
    assert_eq!(
        row(b"<13>Jun 15 11:59:00 web01 app: [INFO] request done"),
        expect(
            Some(13),
            None,
            Some("2024-06-15T11:59:00Z"),
            Some("web01"),
            Some("app"),
            None,
            None,
            "[INFO] request done"
        )
    );
    assert_eq!(
        row(b"<13>Jun 15 11:59:00 web01 [INFO] request done"),
        expect(
            Some(13),
            None,
            Some("2024-06-15T11:59:00Z"),
            Some("web01"),
            None,
            None,
            None,
            "[INFO] request done"
        )
    );
    assert_eq!(
        row(b"<13>Jun 15 11:59:00 [1234]: [x] y"),
        expect(
            Some(13),
            None,
            Some("2024-06-15T11:59:00Z"),
            None,
            None,
            Some("1234"),
            None,
            "[x] y"
        )
    );
    // Missing PRI (a relayed file line), and a high-precision RFC 3339 timestamp.
    assert_eq!(
        row(b"Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186"),
        expect(
            None,
            None,
            Some("2023-12-10T06:55:46Z"),
            Some("LabSZ"),
            Some("sshd"),
            Some("24200"),
            None,
            "Invalid user webmaster from 173.234.31.186"
        )
    );
    assert_eq!(
        row(b"<13>2024-06-15T13:59:00.123+02:00 host kernel: [  0.000] Linux"),
        expect(
            Some(13),
            None,
            Some("2024-06-15T11:59:00.123Z"),
            Some("host"),
            Some("kernel"),
            None,
            None,
            "[  0.000] Linux"
        )
    );
}

#[test]
fn vendor_lines() {
    // Cisco IOS: sequence number, unsynchronised-clock mark, milliseconds, no host.
    assert_eq!(
        row(b"<189>29: *Mar  1 00:02:32.299: %SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)"),
        expect(Some(189), None, Some("2024-03-01T00:02:32.299Z"), None, None, None, None, "%SYS-5-CONFIG_I: Configured from console by vty0 (10.0.0.1)")
    );
    // Cisco with a year in the timestamp.
    assert_eq!(
        row(b"<187>123: Mar  1 2023 00:02:32: %LINK-3-UPDOWN: Interface Gi0/1, changed state to down"),
        expect(Some(187), None, Some("2023-03-01T00:02:32Z"), None, None, None, None, "%LINK-3-UPDOWN: Interface Gi0/1, changed state to down")
    );
    // Fortinet: key=value after the PRI, no header: all of it is the message.
    assert_eq!(
        row(b"<189>date=2019-05-10 time=11:37:47 devname=\"FGT60D\" logid=\"0000000013\" type=\"traffic\""),
        expect(Some(189), None, None, None, None, None, None, "date=2019-05-10 time=11:37:47 devname=\"FGT60D\" logid=\"0000000013\" type=\"traffic\"")
    );
}

#[test]
fn non_utf8_bytes_are_kept() {
    let p = parse(b"<13>Jun 15 11:59:00 h\xff app: caf\xe9 \xff", &cx()).unwrap();
    assert_eq!(
        p.hostname, None,
        "a host name with a stray byte is not a host name"
    );
    assert_eq!(p.message, b"h\xff app: caf\xe9 \xff");
    let p = parse(b"<13>Jun 15 11:59:00 host app: caf\xe9", &cx()).unwrap();
    assert_eq!((p.app, p.message), (Some(&b"app"[..]), &b"caf\xe9"[..]));
    let p = parse(b"<13>1 - h\xfe app - - - bytes \xc3\x28", &cx()).unwrap();
    assert_eq!(
        (p.hostname, p.message),
        (Some(&b"h\xfe"[..]), &b"bytes \xc3\x28"[..])
    );
}

#[test]
fn parse_errors_name_the_reason() {
    let reason = |line: &[u8]| parse(line, &cx()).unwrap_err();
    assert_eq!(
        reason(b"hello world").reason,
        "no PRI and no timestamp: not a syslog message"
    );
    assert_eq!(
        reason(b"<999>x").reason,
        "invalid PRI: expected <0> to <191>"
    );
    assert_eq!(
        reason(b"<html>").reason,
        "invalid PRI: expected <0> to <191>"
    );
    let e = reason(b"<13>1 2003-13-11T22:14:15Z host app - - - x");
    assert_eq!((e.reason, e.pri), ("invalid RFC 5424 timestamp", Some(13)));
    assert_eq!(
        reason(b"<13>1 - host").reason.split(':').next(),
        Some("RFC 5424 header ends early")
    );
}

proptest! {
    #[test]
    fn never_panics_on_random_bytes(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&line, &cx());
    }

    #[test]
    fn never_panics_on_syslog_shaped_noise(
        head in prop_oneof![Just("<13>1 "), Just("<13>"), Just("<189>29: *"), Just(""), Just("<13>1 - h a - - [")],
        body in "[ -~\\[\\]\"\\\\=:]{0,80}",
    ) {
        let line = format!("{head}{body}");
        if let Ok(p) = parse(line.as_bytes(), &cx()) {
            prop_assert!(p.message.len() <= line.len());
        }
    }
}
