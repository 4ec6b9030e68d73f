//! To be implemented.
