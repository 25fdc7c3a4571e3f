//! Watching a guest from the host without stopping it, and saying what was seen: the kernel's
//! stats page and KVM's vCPU statistics are read here, followed during a run, and turned into
//! the live table, the JSON report, the timeline and the end-of-run summary.
//!
//! Reading: [`stats_page`] (the stats page, over the protocol in `lde_abi::stats::protocol`),
//! [`kvm_stats`] (KVM_GET_STATS_FD), [`milestones`] (boot milestones, a VM-exit hook). Following: [`recorder`] (every event and ended process of a
//! run), [`monitor`] (the poller), [`api`] (the `--api-sock` server). Saying: [`report`] (JSON),
//! [`watch`] (`--watch`), [`timeline`] (SVG), [`summary`] (the closing lines).

pub mod api;
pub mod kvm_stats;
pub mod milestones;
pub mod monitor;
pub mod recorder;
pub mod report;
pub mod states;
pub mod stats_page;
pub mod summary;
pub mod timeline;
pub mod trace;
pub mod watch;
