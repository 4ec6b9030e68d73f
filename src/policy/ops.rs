//! The store's write operations, shared by every writer (HTTP, DNS UPDATE, sync) and by
//! the pure UPDATE planner (`policy::update`).

/// One change to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Add `value` at `name` (or refresh its expiry) for `ttl` seconds.
    Add { name: String, value: String, ttl: u64 },
    /// Remove one exact value; absent is not an error.
    DeleteValue { name: String, value: String },
    /// Remove every value at `name`.
    DeleteName { name: String },
}
