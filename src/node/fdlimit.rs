//! The open-file limit: raised from the soft to the hard limit at start, so the
//! connection caps (sized from it) leave room for the store, sockets and clients.

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (logging both) and return the soft
/// limit in force afterwards. Idempotent; on failure the current soft limit is kept and
/// returned (a warning is logged).
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    // `None` is RLIM_INFINITY.
    let (soft, hard) = (lim.current.unwrap_or(u64::MAX), lim.maximum.unwrap_or(u64::MAX));
    if soft >= hard {
        tracing::info!(soft, hard, "open-file limit already at the hard limit");
        return soft;
    }
    let raised = Rlimit { current: lim.maximum, maximum: lim.maximum };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        tracing::warn!(soft, hard, error = %e,
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
    fn soft_limit_ends_at_the_hard_limit() {
        use rustix::process::{getrlimit, Resource};
        let n = super::raise_fd_limit();
        let lim = getrlimit(Resource::Nofile);
        assert_eq!(n, lim.current.unwrap_or(u64::MAX));
        assert_eq!(lim.current, lim.maximum);
        assert_eq!(super::raise_fd_limit(), n, "idempotent");
    }
}
