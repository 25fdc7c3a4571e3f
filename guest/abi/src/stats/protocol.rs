//! The stats-page protocol: how the kernel (the writer: one guest processor at a time, the
//! holder of its big kernel lock where there are several) publishes
//! [`StatsPage`] and how the host (the reader, on another CPU, without a VM exit) copies it
//! without ever seeing a half-written value. The two halves sit side by side under this file:
//! `protocol/writer.rs` (the kernel's) and `protocol/reader.rs` (the host's); their unit tests,
//! a writer thread racing the reader among them, are `protocol/tests.rs`.
//!
//! Invariants:
//! - **Counters** (every field before `ended_written`) form one seqlock. The writer makes
//!   [`StatsPage::seq`] odd before it changes any of them and even again after the last
//!   change ([`StatsPage::update`]). The reader reads `seq`, retries while it is odd, copies
//!   the counters, reads `seq` again, and retries unless it is unchanged ([`snapshot`]).
//! - **Rings** (`events`, `ended`) carry a sequence number per entry: entry `n` (counted from
//!   0 since boot) lives in slot `n % capacity` and is written with its own `seq` set to 0
//!   first, then its body, then `seq` = `n + 1` last; only then does the ring's `*_written`
//!   count become `n + 1` ([`StatsPage::push_event`], [`StatsPage::push_ended`]). The reader
//!   reads `*_written`, drops the entries older than `written - capacity` (overwritten), and
//!   accepts entry `n` only if its `seq` equals `n + 1` both in the copy and when read again
//!   after the copy; otherwise the writer lapped the reader while it copied, and the entry is
//!   counted as lost ([`events_since`], [`ended_since`]).
//!
//! The writer keeps its stores in order with volatile writes and compiler fences (x86 does not
//! reorder stores with stores); the reader orders its loads with acquire fences (x86 does not
//! reorder loads with loads).
//!
//! [`StatsPage`]: super::StatsPage
//! [`StatsPage::seq`]: super::StatsPage::seq
//! [`StatsPage::update`]: super::StatsPage::update
//! [`StatsPage::push_event`]: super::StatsPage::push_event
//! [`StatsPage::push_ended`]: super::StatsPage::push_ended

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::{
    ended_since, events_since, snapshot, snapshot_stopped, PageBytes, ReadError, RingRead, SNAPSHOT_TRIES,
};
