//! What the three services share on the AWS side: region, profile and credentials resolved by
//! aws-config, the SDK's own retries off (the batcher retries per entry, with its own backoff),
//! one timeout per call, and a failed call described the same way whatever the service.

use super::call::{Failure, Outcome};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_firehose::error::{DisplayErrorContext, ProvideErrorMetadata};
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// None: aws-config's chain (AWS_REGION, the profile's region, instance metadata), then
    /// us-east-1.
    pub region: Option<String>,
    pub profile: Option<String>,
    /// An endpoint URL instead of the region's (VPC endpoints, tests).
    pub endpoint: Option<String>,
    /// One whole call, connecting included.
    pub timeout: Duration,
}

/// The region used when neither the `region` key nor aws-config's chain gives one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the region came from, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionFrom {
    /// The `region` key.
    Config,
    /// AWS_REGION, the profile or instance metadata.
    Chain,
    /// None of them: `DEFAULT_REGION`.
    Default,
}

/// Resolves region, profile and credentials (lazily: a missing credential shows at the first
/// call, as a failed call, and is retried). Returns the SDK configuration every service's
/// client is built from, the region used and its origin.
pub async fn load(s: &AwsSettings) -> (SdkConfig, String, RegionFrom) {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(s.timeout.min(Duration::from_secs(5)))
                .operation_timeout(s.timeout)
                .build(),
        );
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &s.profile {
        loader = loader.profile_name(p);
    }
    if let Some(url) = &s.endpoint {
        loader = loader.endpoint_url(url);
    }
    let shared = loader.load().await;
    let (region, from) = match (&s.region, shared.region()) {
        (Some(r), _) => (r.clone(), RegionFrom::Config),
        (None, Some(r)) => (r.to_string(), RegionFrom::Chain),
        (None, None) => (DEFAULT_REGION.to_string(), RegionFrom::Default),
    };
    let shared = shared.into_builder().region(Region::new(region.clone())).build();
    (shared, region, from)
}

/// Runs one service call within `timeout` (the SDK's operation timeout covers the call; this
/// one also covers credential resolution, which happens before it). Err: the call as a whole
/// failed, nothing known to be stored.
pub async fn call<T, E>(timeout: Duration, call: impl Future<Output = Result<T, E>>) -> Result<T, Failure>
where
    E: ProvideErrorMetadata + std::error::Error,
{
    match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
        Err(_) => Err(Failure {
            code: None,
            message: format!("no answer in {timeout:?}"),
        }),
        Ok(Err(e)) => Err(Failure {
            code: e.code().map(str::to_string),
            message: DisplayErrorContext(&e).to_string(),
        }),
        Ok(Ok(out)) => Ok(out),
    }
}

/// The outcome of a call whose answer lists one result per entry, in order (Firehose, Kinesis):
/// `error` gives an entry's error code and message, if it was refused.
pub fn per_entry<T>(
    answers: &[T],
    sent: usize,
    error: impl Fn(&T) -> Option<(&str, Option<&str>)>,
) -> Result<Outcome, Failure> {
    if answers.len() != sent {
        return Err(Failure {
            code: None,
            message: format!("the answer has {} entries for {sent} sent", answers.len()),
        });
    }
    Ok(answers
        .iter()
        .map(|a| error(a).map(|(code, message)| entry_failure(code, message)))
        .collect())
}

/// A refused entry as the services describe it.
pub fn entry_failure(code: &str, message: Option<&str>) -> Failure {
    Failure {
        code: Some(code.to_string()),
        message: match message {
            Some(m) => format!("{code}: {m}"),
            None => code.to_string(),
        },
    }
}
