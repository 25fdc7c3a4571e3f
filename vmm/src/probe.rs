//! `lde probe`: boots the guest with a few small programs and reports, for each system-call
//! door and trap, whether this host delivers it architecturally, through a path the kernel
//! recovers, or not at all; and which CPU protections the kernel could turn on and what a
//! process can still see of another's state (AVX) on this host.

use std::collections::HashMap;

/// How a door or trap arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// As the manuals say.
    Architectural,
    /// Not as the manuals say, but the kernel recognises it and completes it.
    Recovered(&'static str),
    /// It did not arrive (or the program was not ended by the expected trap).
    Missing(&'static str),
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Delivery::Architectural => write!(f, "architectural"),
            Delivery::Recovered(how) => write!(f, "recovered: {how}"),
            Delivery::Missing(why) => write!(f, "NOT DELIVERED: {why}"),
        }
    }
}

/// One line of the probe's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub what: &'static str,
    pub delivery: Delivery,
}

/// The programs the probe runs: a few calls through each door, then one trap each.
pub const PROGRAMS: &[&str] =
    &["calls 10", "bad-ud2", "bad-int3", "bad-cli", "bad-kread", "bad-div0", "avx set", "avx check"];

/// The traps the probe expects: (row label, program, trap mnemonic in its `killed` line).
const TRAPS: &[(&str, &str, &str)] = &[
    ("#UD (ud2)", "bad-ud2", "#UD"),
    ("#BP (int3)", "bad-int3", "#BP"),
    ("#GP (cli)", "bad-cli", "#GP"),
    ("#PF (read of a supervisor page)", "bad-kread", "#PF"),
    ("#DE (divide by zero)", "bad-div0", "#DE"),
];

/// The `key=value` words of the transcript's `stats: doors` line.
fn door_counts(transcript: &str) -> HashMap<&str, u64> {
    transcript
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("stats: doors "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect()
}

/// Reads the probe run's serial transcript.
pub fn parse(transcript: &str) -> Vec<Row> {
    let doors = door_counts(transcript);
    let door = |name: &str, recovered_how: &'static str| {
        let arch = doors.get(format!("{name}.arch").as_str()).copied().unwrap_or(0);
        let recovered = doors.get(format!("{name}.recovered").as_str()).copied().unwrap_or(0);
        match (arch, recovered) {
            (0, 0) => Delivery::Missing("no call arrived"),
            (_, 0) => Delivery::Architectural,
            (0, _) => Delivery::Recovered(recovered_how),
            _ => Delivery::Recovered("some calls architectural, some recovered"),
        }
    };
    let mut rows = vec![
        Row {
            what: "syscall",
            delivery: door("syscall", "#PF at LSTAR in ring 3 (CPL stays 3); the kernel completes the call"),
        },
        Row { what: "int 0x80", delivery: door("int80", "#UD at the int instruction; the kernel completes the call") },
    ];
    for &(what, program, trap) in TRAPS {
        let killed = transcript
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .find(|l| l.starts_with("killed ") && l.contains(&format!(" name={program} ")));
        let delivery = match killed {
            Some(line) if line.contains(&format!(" trap={trap} ")) => Delivery::Architectural,
            Some(_) => Delivery::Missing("the program died of another trap"),
            None => Delivery::Missing("the program was not stopped"),
        };
        rows.push(Row { what, delivery });
    }
    rows
}

/// One line of the probe's isolation table: a protection and what the host made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isolation {
    pub what: &'static str,
    pub state: String,
    /// Whether this is a hole: something a process should not be able to do, and can here.
    pub deviation: bool,
}

/// Reads the isolation rows from the transcript's `stats: protection` and `avx:` lines.
pub fn parse_isolation(transcript: &str) -> Vec<Isolation> {
    let lines: Vec<&str> = transcript.lines().map(|l| l.trim_end_matches('\r')).collect();
    let words: HashMap<&str, &str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("stats: protection "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.split_once('='))
        .collect();
    let row = |what, state: &str, deviation| Isolation { what, state: state.to_string(), deviation };
    let cr4 = |what, key: &str, meaning: &str| match words.get(key) {
        Some(&"on") => row(what, &format!("on: {meaning}"), false),
        Some(&"off") => row(what, "off: the CPU does not offer it", false),
        _ => row(what, "unknown: no `stats: protection` line", true),
    };
    let mut rows = vec![
        cr4("SMEP", "smep", "ring 0 never executes a user page"),
        cr4("UMIP", "umip", "ring 3 cannot read the GDT/IDT addresses (sgdt, sidt, ...)"),
        match words.get("smap") {
            Some(&"offered-unused") => row(
                "SMAP",
                "offered, not used: it needs stac/clac around user accesses, which kill PVM guests in ring 0",
                false,
            ),
            Some(_) => row("SMAP", "off: the CPU does not offer it", false),
            None => row("SMAP", "unknown: no `stats: protection` line", true),
        },
    ];
    let avx: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("avx: ")).collect();
    rows.push(if avx.iter().any(|l| l.starts_with("ymm15 held another process's value")) {
        row(
            "AVX state",
            "DEVIATION: ring 3 can use AVX although the kernel never enabled it, and the upper halves \
             of the ymm registers pass between processes (the kernel switches only the x87/SSE state)",
            true,
        )
    } else if avx.contains(&"ymm15 stayed private") {
        row("AVX state", "private: each process saw only its own ymm15", false)
    } else if !avx.is_empty() && avx.iter().all(|l| l.starts_with("unavailable in ring 3")) {
        row("AVX state", "not available to ring 3 (#UD): nothing to leak", false)
    } else {
        row("AVX state", "unknown: the avx programs did not report", true)
    });
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pvm_transcript() {
        let t = "lde kernel 0.1.0: ...\r\nkilled pid=2 name=bad-ud2 trap=#UD rip=0x80000000b1\r\n\
                 killed pid=3 name=bad-int3 trap=#BP rip=0x1\r\nkilled pid=4 name=bad-cli trap=#GP rip=0x1\r\n\
                 killed pid=5 name=bad-kread trap=#GP rip=0x1\r\n\
                 stats: doors syscall.arch=0 syscall.recovered=14 int80.arch=0 int80.recovered=10\r\n";
        let rows = parse(t);
        assert!(matches!(rows[0].delivery, Delivery::Recovered(_)), "{rows:?}");
        assert!(matches!(rows[1].delivery, Delivery::Recovered(_)));
        assert_eq!(rows[2].delivery, Delivery::Architectural);
        assert_eq!(rows[3].delivery, Delivery::Architectural);
        assert_eq!(rows[5].delivery, Delivery::Missing("the program died of another trap"));
        assert_eq!(rows[6].delivery, Delivery::Missing("the program was not stopped"));
    }

    #[test]
    fn reads_the_isolation_rows() {
        let pvm = "stats: protection smep=on umip=on smap=offered-unused syscall=recovered int80=recovered\r\n\
                   avx: ymm15 set\r\navx: ymm15 held another process's value (AVX state is shared)\r\n";
        let rows = parse_isolation(pvm);
        assert_eq!(rows.iter().map(|r| r.what).collect::<Vec<_>>(), ["SMEP", "UMIP", "SMAP", "AVX state"]);
        assert!(rows[0].state.starts_with("on:") && !rows[0].deviation);
        assert!(rows[3].deviation, "{rows:?}");
        let tcg = "stats: protection smep=off umip=on smap=absent\navx: unavailable in ring 3 (#UD)\n\
                   avx: unavailable in ring 3 (#UD)\n";
        let rows = parse_isolation(tcg);
        assert!(rows[0].state.starts_with("off:"));
        assert!(rows[2].state.starts_with("off:"));
        assert!(!rows[3].deviation && rows[3].state.starts_with("not available"), "{rows:?}");
        let rows = parse_isolation("");
        assert!(rows.iter().all(|r| r.deviation), "{rows:?}");
    }

    #[test]
    fn reads_an_architectural_transcript() {
        let rows = parse("stats: doors syscall.arch=14 syscall.recovered=0 int80.arch=10 int80.recovered=0\n");
        assert_eq!(rows[0].delivery, Delivery::Architectural);
        assert_eq!(rows[1].delivery, Delivery::Architectural);
        assert_eq!(parse("")[0].delivery, Delivery::Missing("no call arrived"));
    }
}
