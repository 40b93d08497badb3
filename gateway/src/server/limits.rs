//! The process's own limits that a server must fit under.

/// Raises this process's soft limit on open files to its hard limit (as servers that hold many
/// sockets do) and returns the soft limit after, or `None` where it cannot be read.
pub fn raise_open_files() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the local struct passed to them.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r = raised;
            }
        }
    }
    Some(r.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_files_limit_is_read_and_never_lowered() {
        let before = super::raise_open_files().expect("RLIMIT_NOFILE is readable on Linux");
        let after = super::raise_open_files().unwrap();
        assert!(after >= before && after > 0);
    }
}
