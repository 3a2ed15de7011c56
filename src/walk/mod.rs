//! Streaming readers of trees, tar layers and OCI layouts.
