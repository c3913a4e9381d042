//! The staging member format and recovery, compiled in read-only (see Cargo.toml).
#![allow(dead_code)]

#[path = "../../../sinks/src/archive/member.rs"]
pub mod member;
#[path = "../../../sinks/src/archive/recovery.rs"]
pub mod recovery;
