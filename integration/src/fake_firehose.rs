//! A Firehose endpoint of our own that can fail on demand (written by the firehose tests work).
