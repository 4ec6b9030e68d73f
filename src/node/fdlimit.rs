//! The open-file limit: raised from the soft to the hard limit at start, so the
//! connection caps (sized from it) leave room for the store, sockets and clients.

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (logging both) and return the soft
/// limit in force afterwards. Idempotent; on failure the current soft limit is kept and
/// returned (a warning is logged).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "getrlimit(RLIMIT_NOFILE) failed");
        return 1024;
    }
    let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
    if lim.rlim_cur >= lim.rlim_max {
        tracing::info!(soft, hard, "open-file limit already at the hard limit");
        return soft;
    }
    let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(soft, hard, error = %std::io::Error::last_os_error(),
            "could not raise the open-file limit; keeping the soft limit");
        return soft;
    }
    tracing::info!(
        was = soft,
        now = hard,
        hard,
        "raised the soft open-file limit to the hard limit"
    );
    hard
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn soft_limit_ends_at_the_hard_limit() {
        let n = super::raise_fd_limit();
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(n, lim.rlim_cur as u64);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(super::raise_fd_limit(), n, "idempotent");
    }
}
