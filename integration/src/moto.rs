//! moto's server: a real Firehose + S3 endpoint for end-to-end tests (written by the firehose tests work).
