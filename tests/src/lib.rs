//! Test support for MusQraTT: a simulator running N engine shards in one thread on a virtual
//! clock ([`sim::Simulator`]) and the transcript script language that drives it
//! ([`script::run`]; the language is described in `tests/transcripts/README.md`).

pub mod format;
pub mod script;
pub mod sim;
