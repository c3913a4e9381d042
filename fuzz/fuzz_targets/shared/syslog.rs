//! The syslog parser's source files, compiled in read-only (see Cargo.toml).
#![allow(dead_code, unused_imports)]

#[path = "../../../sources/src/syslog/parse.rs"]
pub mod parse;
#[path = "../../../sources/src/syslog/time.rs"]
pub mod time;
