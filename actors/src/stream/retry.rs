//! When to resend, and which refusals need an operator rather than patience.

use std::time::Duration;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The wait before resending after the `attempt`th failure (1, 2...): a ceiling of 200 ms doubling
/// up to 10 s, the wait between half of it and all of it as `jitter` goes from 0 to 1 (drawn per
/// failed call, so that the relayers of many hosts do not retry in step, while the records of
/// one call go back together). Always within 100 ms..=10 s.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling = (BACKOFF_MIN * 2)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_MAX);
    ceiling
        .mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
        .clamp(BACKOFF_MIN, BACKOFF_MAX)
}

/// A jitter for `backoff`.
pub fn jitter() -> f64 {
    fastrand::f64()
}

/// Error codes that resending will not cure: a stream or queue that does not exist, bad
/// credentials or permissions, a key (KMS) that is disabled, a request the service finds invalid
/// (a call over its limits, which the relayer must never make). They are still resent until
/// `retryTimeout` (the stream or the permissions may be fixed meanwhile), but an operator must
/// hear of them.
pub fn needs_operator(code: &str) -> bool {
    const CODES: [&str; 25] = [
        "ResourceNotFoundException",
        "InvalidArgumentException",
        "InvalidKMSResourceException",
        "InvalidSourceException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ValidationException",
        "SerializationException",
        "UnknownOperationException",
        // SQS.
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "InvalidParameterValue",
        "InvalidMessageContents",
        "UnsupportedOperation",
        "BatchRequestTooLong",
        "TooManyEntriesInBatchRequest",
        "BatchEntryIdsNotDistinct",
        "EmptyBatchRequest",
        "InvalidBatchEntryId",
    ];
    // KMS refusals: `KMS.DisabledException` (Firehose, SQS), `KMSDisabledException` (Kinesis);
    // only their throttling passes by itself.
    CODES.contains(&code) || (code.starts_with("KMS") && !code.contains("Throttling"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_100_ms_and_10_s_and_grows() {
        let ms = |d: Duration| d.as_millis();
        for _ in 0..1000 {
            let j = jitter();
            let first = backoff(1, j);
            assert!((100..=200).contains(&ms(first)), "{first:?}");
            let third = backoff(3, j);
            assert!((400..=800).contains(&ms(third)), "{third:?}");
            let sixth = backoff(6, j);
            assert!((3200..=6400).contains(&ms(sixth)), "{sixth:?}");
            for attempt in [7, 8, 20, 1000, u32::MAX] {
                let d = backoff(attempt, j);
                assert!((5000..=10_000).contains(&ms(d)), "attempt {attempt}: {d:?}");
            }
            assert!(backoff(0, j) >= BACKOFF_MIN);
        }
        assert_eq!(backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(2, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(9, 1.0), BACKOFF_MAX);
    }

    #[test]
    fn refusals_that_need_an_operator() {
        for code in [
            "ResourceNotFoundException",
            "AccessDeniedException",
            "KMS.DisabledException",
            "KMSDisabledException",
            "KMSAccessDeniedException",
            "InvalidArgumentException",
            "AWS.SimpleQueueService.NonExistentQueue",
            "BatchRequestTooLong",
        ] {
            assert!(needs_operator(code), "{code}");
        }
        for code in [
            "ServiceUnavailableException",
            "ThrottlingException",
            "InternalFailure",
            "KMS.ThrottlingException",
            "KMSThrottlingException",
            "LimitExceededException",
            "ProvisionedThroughputExceededException",
            "RequestThrottled",
            "InternalError",
        ] {
            assert!(!needs_operator(code), "{code}");
        }
    }
}
