//! Small glue between the DNS actor and the protocol core's auth rules.

/// May a TSIG key with `scope` perform this op at `owner`? Deletes need a
/// wildcard-free matching suffix (node.md §3.5).
pub fn scope_allows(scope: &[String], owner: &str, delete: bool) -> bool {
    crate::proto::registration::coverage(scope, owner).allows(delete)
}

/// Verify an unsigned claim value; its `exp` when valid.
pub fn verify_claim(value: &str, now: u64) -> Option<u64> {
    crate::proto::records::claim::ClaimRecord::parse_and_verify(value, now).map(|c| c.exp)
}
