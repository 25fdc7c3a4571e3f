//! The process table's unit tests: run order, ends and reaping, sleepers, readers, `wait`.

use super::*;

/// The table of processes without machine state.
type Table = super::Table<()>;

struct Woken {
    items: [usize; MAX_PROCS],
    len: usize,
}

impl Woken {
    fn push(&mut self, s: usize) {
        self.items[self.len] = s;
        self.len += 1;
    }

    fn as_slice(&self) -> &[usize] {
        &self.items[..self.len]
    }
}

#[test]
fn round_robin_in_spawn_order() {
    let mut t = Table::new();
    let a = t.alloc("a", 0).unwrap();
    let b = t.alloc("b", 0).unwrap();
    t.make_ready(a);
    t.make_ready(b);
    assert_eq!((t.get(a).pid, t.get(b).pid), (1, 2));
    assert_eq!(t.pick_next(), Some(a));
    t.preempt(a, false);
    assert_eq!(t.pick_next(), Some(b));
    t.preempt(b, true);
    assert_eq!(t.pick_next(), Some(a));
    assert_eq!(t.get(a).acct.involuntary, 1);
    assert_eq!(t.get(b).acct.voluntary, 1);
    assert_eq!(t.get(a).acct.scheduled, 2);
}

#[test]
fn exit_reap_and_slot_reuse() {
    let mut t = Table::new();
    let a = t.alloc("first", 0).unwrap();
    t.make_ready(a);
    assert_eq!(t.pick_next(), Some(a));
    t.end(a, End::Killed { vector: 13, rip: 0x10 }, |_| panic!("no parent"));
    assert_eq!(t.get(a).state, State::Zombie);
    assert!(!t.any_live() && !t.all_live());
    assert!(t.get(a).end.unwrap().failed());
    t.reap(a);
    let b = t.alloc("second", 0).unwrap();
    assert_eq!(b, a, "the slot is reused");
    assert_eq!(t.get(b).pid, 2, "pids are not");
    assert_eq!(t.get(b).end, None);
}

#[test]
fn table_fills_up() {
    let mut t = Table::new();
    for i in 0..MAX_PROCS {
        let s = t.alloc("p", 0).unwrap();
        t.make_ready(s);
        assert_eq!(s, i);
    }
    assert_eq!(t.alloc("one too many", 0), None);
    assert_eq!(t.ready_count(), MAX_PROCS);
}

#[test]
fn sleepers_wake_at_their_deadline() {
    let mut t = Table::new();
    let a = t.alloc("a", 0).unwrap();
    let b = t.alloc("b", 0).unwrap();
    t.make_ready(a);
    t.make_ready(b);
    assert_eq!(t.pick_next(), Some(a));
    t.block(a, State::Sleeping { until: 100 });
    assert_eq!(t.pick_next(), Some(b));
    t.block(b, State::Sleeping { until: 50 });
    assert_eq!(t.pick_next(), None);
    let mut woken = Woken { items: [0; MAX_PROCS], len: 0 };
    assert_eq!(t.wake_sleepers(10, |s| woken.push(s)), Some(50));
    assert_eq!(t.wake_sleepers(60, |s| woken.push(s)), Some(100));
    assert_eq!(t.pick_next(), Some(b));
    assert_eq!(t.wake_sleepers(100, |s| woken.push(s)), None);
    assert_eq!(woken.as_slice(), &[b, a]);
    assert_eq!(t.pick_next(), Some(a));
    assert!(t.any_live() && !t.all_live());
}

#[test]
fn readers_block_and_wake_together() {
    let mut t = Table::new();
    let a = t.alloc("cat", 0).unwrap();
    t.make_ready(a);
    assert_eq!(t.pick_next(), Some(a));
    t.block(a, State::Reading);
    assert!(t.any_reading());
    let mut n = 0;
    t.wake_readers(|s| {
        assert_eq!(s, a);
        n += 1
    });
    assert_eq!(n, 1);
    assert!(!t.any_reading());
    assert_eq!(t.pick_next(), Some(a));
}

#[test]
fn wait_reports_children_in_the_order_they_ended_then_no_child() {
    let mut t = Table::new();
    let parent = t.alloc("parent", 0).unwrap();
    t.make_ready(parent);
    assert_eq!(t.pick_next(), Some(parent));
    assert_eq!(t.wait_for(parent), Wait::NoChild, "no child yet");
    let ppid = t.get(parent).pid;
    let a = t.alloc("a", ppid).unwrap();
    t.make_ready(a);
    let b = t.alloc("b", ppid).unwrap();
    t.make_ready(b);
    let (apid, bpid) = (t.get(a).pid, t.get(b).pid);
    assert_eq!(t.wait_for(parent), Wait::Block, "both alive");
    t.block(parent, State::Waiting);
    assert_eq!(t.pick_next(), Some(a));
    t.preempt(a, false);
    // b ends first and wakes the parent; a ends before the parent runs: no second wake-up.
    assert_eq!(t.pick_next(), Some(b));
    let mut woken = Woken { items: [0; MAX_PROCS], len: 0 };
    t.end(b, End::Exited(0), |s| woken.push(s));
    t.reap(b);
    assert_eq!(t.pick_next(), Some(a));
    t.end(a, End::Killed { vector: 6, rip: 0x1000 }, |s| woken.push(s));
    t.reap(a);
    assert_eq!(woken.as_slice(), &[parent]);
    assert_eq!(t.pick_next(), Some(parent));
    assert_eq!(t.pick_next(), None, "the parent was queued once");
    assert_eq!(t.wait_for(parent), Wait::Ended(bpid));
    assert_eq!(t.wait_for(parent), Wait::Ended(apid));
    assert_eq!(t.wait_for(parent), Wait::NoChild);
}

#[test]
fn orphans_wake_nobody_and_a_reused_slot_has_no_children() {
    let mut t = Table::new();
    let parent = t.alloc("parent", 0).unwrap();
    t.make_ready(parent);
    assert_eq!(t.pick_next(), Some(parent));
    let child = t.alloc("child", t.get(parent).pid).unwrap();
    t.make_ready(child);
    // Another process waits for a child of its own, which is still alive.
    let other = t.alloc("other", 0).unwrap();
    t.make_ready(other);
    let own = t.alloc("own", t.get(other).pid).unwrap();
    let own_pid = t.get(own).pid;
    t.end(parent, End::Exited(0), |_| panic!("the kernel does not wait"));
    t.reap(parent);
    assert_eq!(t.pick_next(), Some(child));
    t.preempt(child, false);
    assert_eq!(t.pick_next(), Some(other));
    t.make_ready(own);
    assert_eq!(t.wait_for(other), Wait::Block);
    t.block(other, State::Waiting);
    // The parent's slot goes to a new process: the orphan's end reaches neither it nor the
    // unrelated waiter.
    let reused = t.alloc("reused", 0).unwrap();
    assert_eq!(reused, parent);
    t.make_ready(reused);
    assert_eq!(t.pick_next(), Some(child));
    t.end(child, End::Exited(0), |_| panic!("nobody waits for an orphan"));
    t.reap(child);
    assert_eq!(t.pick_next(), Some(own));
    t.end(own, End::Exited(0), |_| {});
    t.reap(own);
    assert_eq!(t.pick_next(), Some(reused));
    assert_eq!(t.wait_for(reused), Wait::NoChild, "the orphan was not its child");
    t.preempt(reused, true);
    assert_eq!(t.pick_next(), Some(other), "woken by its own child");
    assert_eq!(t.wait_for(other), Wait::Ended(own_pid));
}

#[test]
fn long_names_are_cut_on_a_char_boundary() {
    let mut t = Table::new();
    let s = t.alloc("abcdefghijklmnoé-long", 0).unwrap();
    assert_eq!(t.get(s).name(), "abcdefghijklmno");
}
