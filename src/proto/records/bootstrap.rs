//! `bootstrap` record (protocol §4). To be implemented.
