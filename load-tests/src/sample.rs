//! What the machine spent during a scenario: the CPU share of the server,
//! the store, the mail servers and the harness, and the server's resident
//! memory over time, read from `/proc` every 250 ms (Linux only; elsewhere
//! every figure comes back empty).
//!
//! # How processes are classified
//!
//! Each process is put in the class of its nearest ancestor (itself
//! included) that is one of:
//!
//! - the server pid given to [`Sampler::start`] → `server`;
//! - this process → `harness`;
//! - a process whose command name starts with `postgres` or `postmaster`,
//!   or is `redis-server` → `store`;
//! - `dovecot` (Dovecot's master), or `master` whose command line names
//!   postfix (Postfix's master) → `imap`.
//!
//! Anything else is `other`. Walking up the parent chain rather than
//! matching every child's name matters: Dovecot's and Postfix's children
//! have generic names (`log`, `config`, `auth`, `local`, `error`,
//! `master`…) that other software uses too, while their parents are
//! unambiguous.
//!
//! When the server runs inside this process (`server_pid` is our own pid,
//! as `app::Mailroom` does), the split is per thread, from
//! `/proc/self/task/*/stat`: threads named `mailroom-load…` or `load-…` are
//! the harness (the main thread carries the binary's name; the harness's
//! runtime must be built with `thread_name("mailroom-load")` so its
//! workers and blocking threads do too), every other thread is the server
//! (actix's `actix-rt|…`/`actix-server…`, `mailroom-app`, and the
//! `tokio-runtime-w` blocking threads of the app's runtimes).
//!
//! # How CPU time is counted
//!
//! Per process (or thread), utime + stime from its `stat` line, in clock
//! ticks; the machine's total is the sum of the `cpu` line of `/proc/stat`
//! (user through steal, guest time being already inside user). Each
//! interval between two samples adds, per process, the growth of its ticks;
//! a process born inside the interval adds all of its ticks. A process that
//! ends loses its ticks since the last sample before its end, and one that
//! lives less than 250 ms between two samples is not seen at all: short
//! per-connection processes are undercounted, so the shares are lower
//! bounds (and `other` an upper one only of what was seen). Process times
//! are exact runtimes while the machine's counters are sampled per tick: when
//! the processes add up to more than the machine over the window (a few
//! ticks, on a saturated machine), their sum is taken as the whole.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often the sampler reads `/proc`.
const EVERY: Duration = Duration::from_millis(250);

/// Clock ticks per second of `/proc`'s counters (USER_HZ): 100 on every
/// Linux architecture we run on.
const TICKS_PER_S: f64 = 100.0;

/// Fractions of the whole machine's CPU time (all cores) over the sampled
/// window; idle is what the five leave (they sum to at most 1, within a
/// tick of rounding).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuShare {
    /// `None` when the server's pid was not known (`--target URL`): its
    /// share is then inside `other`, if it runs on this machine at all.
    pub server: Option<f64>,
    pub store: f64,
    pub imap: f64,
    pub harness: f64,
    pub other: f64,
}

/// What the sampler saw between [`Sampler::start`] and [`Sampler::stop`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub cpu_share: CpuShare,
    /// The server's VmRSS, highest and last sample, in MiB (`None` without
    /// a server pid).
    pub server_rss_mb_peak: Option<f64>,
    pub server_rss_mb_last: Option<f64>,
    /// `(seconds since start, MiB)`, one point per sample.
    pub rss_series: Vec<(f64, f64)>,
    /// Length of the window the shares cover, in seconds.
    pub window_s: f64,
    /// Cores on the machine (the shares are of all of them together).
    pub cpus: usize,
}

/// Samples `/proc` on a background thread until stopped.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Usage>,
}

impl Sampler {
    /// Starts sampling now. `server_pid`: the server's process, or this
    /// process's pid when the server runs in-process.
    ///
    /// A plain OS thread rather than a tokio task: reading `/proc` is
    /// blocking file I/O, and the samples must keep their 250 ms cadence
    /// while the harness's two runtime workers are saturated by the load
    /// they generate (the cadence only matters for the RSS series and for
    /// seeing short-lived processes; the CPU totals are exact deltas).
    pub fn start(server_pid: Option<u32>) -> Sampler {
        let (stop, stopped) = mpsc::channel::<()>();
        // The window opens here, on the caller's clock: on a saturated
        // machine the new thread may first run a good while later, and the
        // window must still cover everything the caller did after start().
        let began = Instant::now();
        let thread = std::thread::Builder::new()
            .name("load-sampler".into())
            .spawn(move || {
                let mut acc = Accumulator::new(server_pid, began);
                // recv_timeout doubles as the tick and the stop signal, so
                // stop() does not wait out a sleep.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    acc.sample();
                }
                acc.sample();
                acc.usage()
            });
        match thread {
            Ok(thread) => Sampler { stop, thread },
            // Spawning a thread fails only when the system is out of
            // threads; the run itself would then fail louder.
            Err(e) => panic!("cannot start the /proc sampler thread: {e}"),
        }
    }

    /// Stops sampling (after one last sample) and returns what it saw.
    pub fn stop(self) -> Usage {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// Resident memory of `pid` now (VmRSS), in MiB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss_mb(&status)
}

fn vm_rss_mb(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The fields of a `/proc/<pid>/stat` (or `task/<tid>/stat`) line we use.
#[derive(Clone, Debug, PartialEq)]
struct Stat {
    comm: String,
    ppid: u32,
    /// utime + stime, clock ticks.
    ticks: u64,
    /// Start time after boot, clock ticks.
    start: u64,
}

fn parse_stat(line: &str) -> Option<Stat> {
    // The command name (field 2) sits in parentheses and may itself hold
    // spaces and parentheses: it ends at the last `)`.
    let open = line.find('(')?;
    let (head, rest) = line.rsplit_once(')')?;
    let comm = head.get(open + 1..)?.to_string();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3 (index 0), so field n is at index n - 3.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let start = f.get(19)?.parse().ok()?;
    Some(Stat {
        comm,
        ppid,
        ticks: utime + stime,
        start,
    })
}

/// The machine's total CPU ticks (all cores), from `/proc/stat`'s `cpu`
/// line: user, nice, system, idle, iowait, irq, softirq, steal (guest and
/// guest_nice are already counted in user and nice).
fn parse_cpu_total(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Option<Vec<u64>> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect();
    Some(fields?.iter().sum())
}

fn cpus(proc_stat: &str) -> usize {
    proc_stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Server,
    Store,
    Imap,
    Harness,
    Other,
}

/// One process or thread as last sampled; its start time tells a reused
/// pid from the process we saw before.
#[derive(Clone, Copy)]
struct Seen {
    start: u64,
    ticks: u64,
}

struct Accumulator {
    server_pid: Option<u32>,
    own_pid: u32,
    began: Instant,
    cpus: usize,
    /// Machine ticks at the first and latest sample.
    total_first: Option<u64>,
    total_last: u64,
    /// Uptime (ticks) at the latest sample: a process started after it was
    /// born inside the next interval.
    uptime_last: f64,
    procs: HashMap<u32, Seen>,
    threads: HashMap<u32, Seen>,
    spent: [u64; 5],
    rss: Vec<(f64, f64)>,
    /// Classes by (pid, start): a process keeps its ancestry, and reading
    /// cmdlines every 250 ms would cost more than the rest.
    classes: HashMap<(u32, u64), Class>,
    /// Reads a process's command line (a seam for the tests).
    cmdline: fn(u32) -> String,
}

impl Class {
    fn index(self) -> usize {
        self as usize
    }
}

impl Accumulator {
    fn new(server_pid: Option<u32>, began: Instant) -> Accumulator {
        let mut acc = Accumulator {
            server_pid,
            own_pid: std::process::id(),
            began,
            cpus: 0,
            total_first: None,
            total_last: 0,
            uptime_last: 0.0,
            procs: HashMap::new(),
            threads: HashMap::new(),
            spent: [0; 5],
            rss: Vec::new(),
            classes: HashMap::new(),
            cmdline: read_cmdline,
        };
        acc.sample();
        acc
    }

    fn in_process(&self) -> bool {
        self.server_pid == Some(self.own_pid)
    }

    fn sample(&mut self) {
        let t = self.began.elapsed().as_secs_f64();
        let Ok(proc_stat) = std::fs::read_to_string("/proc/stat") else {
            return;
        };
        let Some(total) = parse_cpu_total(&proc_stat) else {
            return;
        };
        let uptime = read_uptime_ticks().unwrap_or(f64::INFINITY);
        let first = self.total_first.is_none();
        if first {
            self.total_first = Some(total);
            self.cpus = cpus(&proc_stat);
        }

        let stats = read_all_stats();
        let mut procs = HashMap::with_capacity(stats.len());
        for (&pid, stat) in &stats {
            let class = self.classify(pid, stat, &stats);
            // In-process, this process's ticks are counted per thread below.
            if self.in_process() && pid == self.own_pid {
                continue;
            }
            let seen = self.count(self.procs.get(&pid).copied(), stat, class, first);
            procs.insert(pid, seen);
        }
        self.procs = procs;

        if self.in_process() {
            let mut threads = HashMap::new();
            for (tid, stat) in read_stats("/proc/self/task") {
                let class = thread_class(&stat.comm);
                let seen = self.count(self.threads.get(&tid).copied(), &stat, class, first);
                threads.insert(tid, seen);
            }
            self.threads = threads;
        }

        self.total_last = total;
        self.uptime_last = uptime;
        if let Some(mb) = self.server_pid.and_then(rss_mb) {
            self.rss.push((t, mb));
        }
    }

    /// What a process or thread (`stat`, last seen as `before`) is now, its
    /// ticks since then added to `class` (none on the first sample).
    fn count(&mut self, before: Option<Seen>, stat: &Stat, class: Class, first: bool) -> Seen {
        let seen = Seen {
            start: stat.start,
            ticks: stat.ticks,
        };
        if !first {
            let d = self.delta(before, seen);
            self.spent[class.index()] += d;
        }
        seen
    }

    /// Ticks spent since the previous sample by a process seen now.
    fn delta(&self, before: Option<Seen>, now: Seen) -> u64 {
        match before {
            Some(b) if b.start == now.start => now.ticks.saturating_sub(b.ticks),
            // New since the last sample (or its pid was reused): all its
            // ticks fall in this interval if it was born in it.
            _ if (now.start as f64) >= self.uptime_last => now.ticks,
            // Existed before but was missed (a race with /proc's listing):
            // its ticks before now are unknown, count from here.
            _ => 0,
        }
    }

    fn classify(&mut self, pid: u32, stat: &Stat, all: &HashMap<u32, Stat>) -> Class {
        if let Some(&c) = self.classes.get(&(pid, stat.start)) {
            return c;
        }
        let mut class = Class::Other;
        let (mut p, mut s) = (pid, stat);
        // Bounded walk: a parent chain is short, and /proc may be caught
        // mid-change.
        for _ in 0..64 {
            if let Some(c) = self.own_class(p, s) {
                class = c;
                break;
            }
            match all.get(&s.ppid) {
                Some(parent) if s.ppid > 1 => {
                    p = s.ppid;
                    s = parent;
                }
                _ => break,
            }
        }
        self.classes.insert((pid, stat.start), class);
        class
    }

    /// The class a process gives itself and its descendants, if any.
    fn own_class(&self, pid: u32, stat: &Stat) -> Option<Class> {
        if Some(pid) == self.server_pid && pid != self.own_pid {
            return Some(Class::Server);
        }
        if pid == self.own_pid {
            return Some(Class::Harness);
        }
        name_class(&stat.comm, || (self.cmdline)(pid))
    }

    fn usage(self) -> Usage {
        // Process times are exact runtimes while the machine's counters are
        // sampled per tick, so over a short window on a saturated machine
        // the processes can add up to a few ticks more than the machine:
        // the larger of the two is the whole, and idle is then 0.
        let machine = self
            .total_first
            .map_or(0, |first| self.total_last.saturating_sub(first));
        let window = machine.max(self.spent.iter().sum());
        let share = |c: Class| {
            if window == 0 {
                0.0
            } else {
                self.spent[c.index()] as f64 / window as f64
            }
        };
        let cpu_share = CpuShare {
            server: self.server_pid.map(|_| share(Class::Server)),
            store: share(Class::Store),
            imap: share(Class::Imap),
            harness: share(Class::Harness),
            other: share(Class::Other),
        };
        let peak = self.rss.iter().map(|&(_, mb)| mb).reduce(f64::max);
        Usage {
            cpu_share,
            server_rss_mb_peak: peak,
            server_rss_mb_last: self.rss.last().map(|&(_, mb)| mb),
            rss_series: self.rss,
            window_s: self.began.elapsed().as_secs_f64(),
            cpus: self.cpus,
        }
    }
}

/// The class a command name roots, if it roots one (`cmdline` is read only
/// for the ambiguous `master`).
fn name_class(comm: &str, cmdline: impl FnOnce() -> String) -> Option<Class> {
    if comm.starts_with("postgres") || comm.starts_with("postmaster") || comm == "redis-server" {
        return Some(Class::Store);
    }
    if comm == "dovecot" || (comm == "master" && cmdline().contains("postfix")) {
        return Some(Class::Imap);
    }
    None
}

/// In-process: harness threads carry the harness's names, every other
/// thread is the app's. (Thread names are cut to 15 bytes by the kernel.)
fn thread_class(comm: &str) -> Class {
    if comm.starts_with("mailroom-load") || comm.starts_with("load-") {
        Class::Harness
    } else {
        Class::Server
    }
}

fn read_cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn read_uptime_ticks() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(secs * TICKS_PER_S)
}

fn read_all_stats() -> HashMap<u32, Stat> {
    read_stats("/proc").into_iter().collect()
}

/// Every numeric entry of `dir` with a readable `stat` (processes or
/// threads); entries that vanish while we read are skipped.
fn read_stats(dir: &str) -> Vec<(u32, Stat)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let id: u32 = e.file_name().to_str()?.parse().ok()?;
            let line = std::fs::read_to_string(e.path().join("stat")).ok()?;
            Some((id, parse_stat(&line)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_holds_spaces_and_parentheses() {
        let line = "4242 (tokio (x) 1) S 17 4242 8081 0 -1 4194304 101 0 0 0 \
                    250 37 0 0 20 0 1 0 537856 3133440 390 18446744073709551615";
        let s = parse_stat(line).expect("parses");
        assert_eq!(
            s,
            Stat {
                comm: "tokio (x) 1".into(),
                ppid: 17,
                ticks: 287,
                start: 537856,
            }
        );
        assert!(parse_stat("12 (cut) S 1 2").is_none());
    }

    #[test]
    fn reads_this_process_from_proc() {
        let me = std::process::id();
        let line = std::fs::read_to_string(format!("/proc/{me}/stat")).expect("our stat");
        let s = parse_stat(&line).expect("parses");
        assert!(s.start > 0);
        assert!(s.ppid > 0);
        // The test binary has been running (and compiling regexes,
        // spawning threads): a nonzero resident size.
        let rss = rss_mb(me).expect("VmRSS");
        assert!(rss > 0.5, "{rss}");
        let proc_stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
        assert!(parse_cpu_total(&proc_stat).expect("cpu line") > 0);
        assert!(cpus(&proc_stat) >= 1);
    }

    #[test]
    fn machine_total_sums_user_to_steal() {
        let text = "cpu  35520 0 9878 1022987 719 0 257 3974 11 12\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            parse_cpu_total(text),
            Some(35520 + 9878 + 1022987 + 719 + 257 + 3974)
        );
        assert_eq!(cpus(text), 1);
        assert_eq!(vm_rss_mb("Name:\tx\nVmRSS:\t    2048 kB\n"), Some(2.0));
    }

    #[test]
    fn classes_follow_the_ancestor_that_names_them() {
        let stat = |comm: &str, ppid: u32| Stat {
            comm: comm.into(),
            ppid,
            ticks: 0,
            start: 1,
        };
        let all: HashMap<u32, Stat> = [
            (10, stat("dovecot", 1)),
            (11, stat("log", 10)),
            (20, stat("master", 1)),
            (21, stat("smtpd", 20)),
            (30, stat("postgres", 1)),
            (31, stat("postgres", 30)),
            (40, stat("redis-server", 1)),
            (50, stat("master", 1)),
            (51, stat("log", 50)),
            (60, stat("mailroom", 1)),
            (61, stat("sh", 60)),
        ]
        .into_iter()
        .collect();
        let mut acc = Accumulator {
            server_pid: Some(60),
            own_pid: 9999,
            began: Instant::now(),
            cpus: 2,
            total_first: None,
            total_last: 0,
            uptime_last: 0.0,
            procs: HashMap::new(),
            threads: HashMap::new(),
            spent: [0; 5],
            rss: Vec::new(),
            classes: HashMap::new(),
            // Postfix's master is told apart by its command line: pid 20
            // is Postfix's, pid 50 some other program's `master`.
            cmdline: |pid| match pid {
                20 => "/usr/lib/postfix/sbin/master\0-w\0".into(),
                _ => "/opt/other/master\0".into(),
            },
        };
        let mut class_of = |pid: u32| acc.classify(pid, &all[&pid], &all);
        assert_eq!(class_of(10), Class::Imap);
        assert_eq!(class_of(11), Class::Imap);
        assert_eq!(class_of(20), Class::Imap);
        assert_eq!(class_of(21), Class::Imap);
        assert_eq!(class_of(30), Class::Store);
        assert_eq!(class_of(31), Class::Store);
        assert_eq!(class_of(40), Class::Store);
        assert_eq!(class_of(51), Class::Other);
        assert_eq!(class_of(60), Class::Server);
        assert_eq!(class_of(61), Class::Server);
        assert_eq!(thread_class("mailroom-load"), Class::Harness);
        assert_eq!(thread_class("load-sampler"), Class::Harness);
        assert_eq!(thread_class("actix-rt|system"), Class::Server);
        assert_eq!(thread_class("tokio-runtime-w"), Class::Server);
    }

    #[test]
    fn a_window_of_this_process_sees_its_own_work_and_memory() {
        let me = std::process::id();
        // In-process mode (the server pid is ours): the busy loop below
        // runs on a test thread, not one named mailroom-load…, so it is
        // server time, and our RSS is the server's series.
        let sampler = Sampler::start(Some(me));
        // Spin until this thread has run 5 ticks (50 ms of CPU), however
        // long a loaded machine takes to give them, and past the first
        // 250 ms sample.
        let ticks = || {
            std::fs::read_to_string("/proc/thread-self/stat")
                .ok()
                .and_then(|l| parse_stat(&l))
                .map_or(0, |s| s.ticks)
        };
        let (base, began) = (ticks(), Instant::now());
        let mut x = 0u64;
        while ticks() < base + 5 || began.elapsed() < Duration::from_millis(300) {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "no CPU for a minute"
            );
        }
        std::hint::black_box(x);
        let usage = sampler.stop();
        let c = usage.cpu_share;
        let sum = c.server.unwrap_or(0.0) + c.store + c.imap + c.harness + c.other;
        assert!(sum <= 1.0 + 1e-9, "{c:?}");
        assert!(
            [c.store, c.imap, c.harness, c.other]
                .iter()
                .all(|&x| x >= 0.0)
        );
        // One sample at start, one at stop, and those in between.
        assert!(usage.rss_series.len() >= 2, "{usage:?}");
        assert!(usage.server_rss_mb_peak.is_some());
        assert!(usage.window_s >= 0.3);
        assert!(usage.cpus >= 1);
        // Our 5 ticks of spinning were server time.
        assert!(c.server.is_some_and(|s| s > 0.0), "{c:?}");
    }
}
