//! The node actors (lands with the node-runtime issue).
