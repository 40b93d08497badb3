//! Scheduling class of background threads: work that must never delay order entry (the
//! PostgreSQL projection) asks the kernel to run it only when nothing else wants the core.

/// Moves the calling thread to Linux's `SCHED_IDLE` class: beyond a sliver (weight 3 against
/// an ordinary thread's 1024) it gets a core only when no ordinary thread wants it, and an
/// ordinary thread that wakes (the gateway on a packet, a pipeline stage on its bell) takes
/// the core from it at once instead of waiting for its time slice.
/// Threads it starts afterwards inherit the class. Lowering a thread's class needs no
/// privilege. Elsewhere than Linux: `Unsupported`, and the thread stays as it was.
pub fn run_this_thread_when_idle() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param` (a valid, initialised struct on this
        // stack frame) and changes only the scheduling class of the calling thread (pid 0);
        // no memory owned by Rust is touched.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "SCHED_IDLE is Linux's",
        ))
    }
}

/// Confines the calling thread to the CPUs `cpus` (their numbers, as `taskset` and
/// `/proc/cpuinfo` count them); threads it starts afterwards inherit the set. Used to keep
/// background work (the PostgreSQL projection) off the cores order entry runs on. Elsewhere
/// than Linux: `Unsupported`, and the thread stays as it was.
pub fn run_this_thread_on(cpus: &[usize]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: an all-zero cpu_set_t is a valid empty set (it is plain bits).
        #[allow(unsafe_code)]
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("CPU {c}: at most {} CPUs are numbered", libc::CPU_SETSIZE),
                ));
            }
            // SAFETY: `c` is below CPU_SETSIZE, checked above; `set` is a valid cpu_set_t.
            #[allow(unsafe_code)]
            unsafe {
                libc::CPU_SET(c, &mut set)
            };
        }
        // SAFETY: `sched_setaffinity` reads `size_of::<cpu_set_t>()` bytes of `set`, a valid,
        // initialised struct on this stack frame, and changes only the calling thread (pid 0).
        #[allow(unsafe_code)]
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpus;
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "CPU affinity is set on Linux only",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The policy the kernel reports for a thread, from /proc (field 41 of `stat`).
    fn policy_of_this_thread() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc is mounted");
        // The command name (field 2) may hold spaces; the fields after it start past ')'.
        let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
        after
            .split(' ')
            .nth(38)
            .expect("field 41")
            .parse()
            .expect("a number")
    }

    #[test]
    fn the_calling_thread_and_its_children_run_when_idle_and_no_other_thread_does() {
        std::thread::spawn(|| {
            assert_eq!(policy_of_this_thread(), libc::SCHED_OTHER as u32);
            run_this_thread_when_idle().expect("lowering needs no privilege");
            assert_eq!(policy_of_this_thread(), libc::SCHED_IDLE as u32);
            let child = std::thread::spawn(policy_of_this_thread).join().unwrap();
            assert_eq!(child, libc::SCHED_IDLE as u32, "inherited");
        })
        .join()
        .unwrap();
        assert_eq!(
            policy_of_this_thread(),
            libc::SCHED_OTHER as u32,
            "only that thread"
        );
    }

    /// The CPUs a thread may run on, from /proc (`Cpus_allowed_list`, e.g. `0-1,3`).
    fn allowed_cpus_of_this_thread() -> Vec<usize> {
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("/proc");
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("the line")
            .trim();
        let mut out = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
                None => out.push(part.parse().unwrap()),
            }
        }
        out
    }

    #[test]
    fn the_calling_thread_and_its_children_run_on_the_cpus_given_and_no_other_thread_does() {
        let before = allowed_cpus_of_this_thread();
        let first = before[0];
        std::thread::spawn(move || {
            run_this_thread_on(&[first]).expect("a CPU this process may use");
            assert_eq!(allowed_cpus_of_this_thread(), vec![first]);
            let child = std::thread::spawn(allowed_cpus_of_this_thread)
                .join()
                .unwrap();
            assert_eq!(child, vec![first], "inherited");
            assert!(run_this_thread_on(&[libc::CPU_SETSIZE as usize]).is_err());
            assert!(run_this_thread_on(&[]).is_err(), "an empty set is refused");
        })
        .join()
        .unwrap();
        assert_eq!(allowed_cpus_of_this_thread(), before, "only that thread");
    }
}
