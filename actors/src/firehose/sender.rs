//! The PutRecordBatch call, through aws-sdk-firehose. The SDK's own retries are off: the
//! batcher retries per entry, with its own backoff, and never drops a record it cannot place.

use aws_config::BehaviorVersion;
use aws_sdk_firehose::error::DisplayErrorContext;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderSettings {
    pub stream: String,
    pub region: String,
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

/// The outcome of a call that was answered: per record, `None` when stored, else the error.
pub type Outcome = Vec<Option<String>>;

impl Sender {
    /// Resolves region, profile and credentials (lazily: a missing credential shows at the
    /// first call, as a failed call, and is retried).
    pub async fn new(s: &SenderSettings) -> Sender {
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new(s.region.clone()));
        if let Some(p) = &s.profile {
            loader = loader.profile_name(p);
        }
        let shared = loader.load().await;
        let mut conf = aws_sdk_firehose::config::Builder::from(&shared)
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
        Sender {
            client: Client::from_conf(conf.build()),
            stream: s.stream.clone(),
            timeout: s.timeout,
        }
    }

    /// One PutRecordBatch call. Err: the call as a whole failed (nothing known to be stored).
    pub async fn put(&self, records: Vec<Bytes>) -> Result<Outcome, String> {
        let n = records.len();
        let records: Vec<Record> = records
            .into_iter()
            .map(|b| {
                Record::builder()
                    .data(Blob::new(Vec::from(b)))
                    .build()
                    .expect("data is set")
            })
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
            Err(_) => return Err(format!("no answer in {:?}", self.timeout)),
            Ok(Err(e)) => return Err(DisplayErrorContext(&e).to_string()),
            Ok(Ok(out)) => out,
        };
        let responses = out.request_responses();
        if responses.len() != n {
            return Err(format!(
                "the answer has {} entries for {n} records",
                responses.len()
            ));
        }
        Ok(responses
            .iter()
            .map(|r| {
                r.error_code().map(|code| match r.error_message() {
                    Some(m) => format!("{code}: {m}"),
                    None => code.to_string(),
                })
            })
            .collect())
    }
}
