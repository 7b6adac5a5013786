//! The PutRecordBatch call, through aws-sdk-firehose. The SDK's own retries are off: the
//! batcher retries per entry, with its own backoff, and never drops a record it cannot place.

use aws_config::BehaviorVersion;
use aws_sdk_firehose::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderSettings {
    pub stream: String,
    /// None: aws-config's chain (AWS_REGION, the profile's region, instance metadata), then
    /// us-east-1.
    pub region: Option<String>,
    pub profile: Option<String>,
    /// An endpoint URL instead of the region's (VPC endpoints, tests).
    pub endpoint: Option<String>,
    /// One whole call, connecting included.
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct Sender {
    client: Client,
    stream: String,
    timeout: Duration,
}

/// Why a call, or one record of it, was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The service's error code (`ThrottlingException`, `ResourceNotFoundException`...), when
    /// there is one (not for a timeout or a refused connection).
    pub code: Option<String>,
    pub message: String,
}

/// The outcome of a call that was answered: per record, `None` when stored, else why not.
pub type Outcome = Vec<Option<Failure>>;

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

impl Sender {
    /// Resolves region, profile and credentials (lazily: a missing credential shows at the
    /// first call, as a failed call, and is retried). Returns the region used and its origin.
    pub async fn new(s: &SenderSettings) -> (Sender, String, RegionFrom) {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &s.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(p) = &s.profile {
            loader = loader.profile_name(p);
        }
        let shared = loader.load().await;
        let (region, from) = match (&s.region, shared.region()) {
            (Some(r), _) => (r.clone(), RegionFrom::Config),
            (None, Some(r)) => (r.to_string(), RegionFrom::Chain),
            (None, None) => (DEFAULT_REGION.to_string(), RegionFrom::Default),
        };
        let mut conf = aws_sdk_firehose::config::Builder::from(&shared)
            .region(aws_config::Region::new(region.clone()))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(s.timeout.min(Duration::from_secs(5)))
                    .operation_timeout(s.timeout)
                    .build(),
            );
        if let Some(url) = &s.endpoint {
            conf = conf.endpoint_url(url);
        }
        let sender = Sender {
            client: Client::from_conf(conf.build()),
            stream: s.stream.clone(),
            timeout: s.timeout,
        };
        (sender, region, from)
    }

    /// One PutRecordBatch call. Err: the call as a whole failed (nothing known to be stored).
    /// The SDK's `Blob` owns its bytes: the batcher hands over a copy of each record and keeps
    /// the original for a resend.
    pub async fn put(&self, records: Vec<Vec<u8>>) -> Result<Outcome, Failure> {
        let n = records.len();
        let records: Vec<Record> = records
            .into_iter()
            .map(|b| Record::builder().data(Blob::new(b)).build().expect("data is set"))
            .collect();
        let call = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send();
        // The SDK's operation timeout covers the call; this one also covers credential
        // resolution, which happens before it.
        let out = match tokio::time::timeout(self.timeout + Duration::from_secs(1), call).await {
            Err(_) => {
                return Err(Failure {
                    code: None,
                    message: format!("no answer in {:?}", self.timeout),
                })
            }
            Ok(Err(e)) => {
                return Err(Failure {
                    code: e.code().map(str::to_string),
                    message: DisplayErrorContext(&e).to_string(),
                })
            }
            Ok(Ok(out)) => out,
        };
        let responses = out.request_responses();
        if responses.len() != n {
            return Err(Failure {
                code: None,
                message: format!("the answer has {} entries for {n} records", responses.len()),
            });
        }
        Ok(responses
            .iter()
            .map(|r| {
                r.error_code().map(|code| Failure {
                    code: Some(code.to_string()),
                    message: match r.error_message() {
                        Some(m) => format!("{code}: {m}"),
                        None => code.to_string(),
                    },
                })
            })
            .collect())
    }
}
