# The tests' boto3 calls (integration/src/boto3.rs runs it with the moto venv's python):
# `boto3_helper.py URL OP` with the arguments as JSON on stdin; prints the result as JSON on
# stdout. Binary values cross as {"__b64": "<base64>"} both ways.
import base64, json, sys, time
import boto3
import botocore.exceptions
from botocore.config import Config

url, op = sys.argv[1], sys.argv[2]
args = json.load(sys.stdin)
kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
          aws_secret_access_key="testing",
          config=Config(retries={"max_attempts": 1}, connect_timeout=10, read_timeout=60))


def b64(data):
    return base64.b64encode(data).decode()


def decode(v):
    if isinstance(v, dict):
        if set(v) == {"__b64"}:
            return base64.b64decode(v["__b64"])
        return {k: decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode(x) for x in v]
    return v


def encode(v):
    if isinstance(v, (bytes, bytearray)):
        return {"__b64": b64(v)}
    if isinstance(v, dict):
        return {k: encode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [encode(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def calls(calls):
    # Each call answered once (no retry: "max_attempts" alone counts retries), and checked by the
    # endpoint only (no client-side validation of the parameters).
    cfg = kw["config"].merge(Config(retries={"total_max_attempts": 1}, parameter_validation=False))
    clients, out = {}, []
    for c in calls:
        if c["service"] not in clients:
            clients[c["service"]] = boto3.client(c["service"], **dict(kw, config=cfg))
        try:
            r = getattr(clients[c["service"]], c["operation"])(**decode(c["params"]))
            r.pop("ResponseMetadata", None)
            out.append({"ok": encode(r)})
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            out.append({"error": {
                "exception": type(e).__name__,
                "code": err.get("Code", ""),
                "message": err.get("Message", ""),
                "query_error_code": err.get("QueryErrorCode"),
                "type": err.get("Type"),
                "status": e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
            }})
    return out


def create_delivery_stream(a):
    boto3.client("s3", **kw).create_bucket(Bucket=a["bucket"])
    fh = boto3.client("firehose", **kw)
    fh.create_delivery_stream(
        DeliveryStreamName=a["name"],
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose-test",
            "BucketARN": "arn:aws:s3:::" + a["bucket"],
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
        },
    )
    d = fh.describe_delivery_stream(DeliveryStreamName=a["name"])["DeliveryStreamDescription"]
    return d["DeliveryStreamStatus"]


def put_record_batch(a):
    r = boto3.client("firehose", **kw).put_record_batch(
        DeliveryStreamName=a["name"],
        Records=[{"Data": base64.b64decode(d)} for d in a["records"]],
    )
    return {"FailedPutCount": r["FailedPutCount"], "Responses": len(r["RequestResponses"])}


def s3_objects(a):
    s3 = boto3.client("s3", **kw)
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a["bucket"]):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=a["bucket"], Key=o["Key"])["Body"].read()
            out.append([o["Key"], b64(body)])
    return sorted(out)


def shard_ids(k, name):
    shards, params = [], {"StreamName": name}
    while True:
        r = k.list_shards(**params)
        shards += [s["ShardId"] for s in r["Shards"]]
        if not r.get("NextToken"):
            return shards
        params = {"NextToken": r["NextToken"]}


def create_stream(a):
    k = boto3.client("kinesis", **kw)
    k.create_stream(StreamName=a["name"], ShardCount=a["shards"])
    k.get_waiter("stream_exists").wait(StreamName=a["name"],
                                       WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    status = k.describe_stream_summary(StreamName=a["name"])["StreamDescriptionSummary"]["StreamStatus"]
    return {"status": status, "shards": shard_ids(k, a["name"])}


def stream_records(a):
    # Every record of every shard, each shard read from TRIM_HORIZON until a GetRecords call
    # returns nothing and says it is not behind.
    k = boto3.client("kinesis", **kw)
    out = []
    for shard in shard_ids(k, a["name"]):
        it = k.get_shard_iterator(StreamName=a["name"], ShardId=shard,
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        empty = 0
        while it and empty < 20:
            r = k.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                out.append([shard, rec["SequenceNumber"], rec["PartitionKey"], encode(rec["Data"])])
            if r["Records"]:
                empty = 0
            elif r.get("MillisBehindLatest", 0) == 0:
                break
            else:
                empty += 1
                time.sleep(0.1)
            it = r.get("NextShardIterator")
    return out


def create_queue(a):
    attributes = {}
    if a["fifo"]:
        attributes["FifoQueue"] = "true"
    if a["content_based_dedup"]:
        attributes["ContentBasedDeduplication"] = "true"
    q = boto3.client("sqs", **kw)
    return q.create_queue(QueueName=a["name"], Attributes=attributes)["QueueUrl"]


def receive_all(a):
    # Receives (10 at a time) and deletes until a receive finds the queue empty.
    q = boto3.client("sqs", **kw)
    out = []
    while True:
        r = q.receive_message(QueueUrl=a["url"], MaxNumberOfMessages=10, WaitTimeSeconds=0,
                              VisibilityTimeout=60,
                              MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId",
                                                           "SequenceNumber"])
        messages = r.get("Messages", [])
        if not messages:
            return out
        for m in messages:
            at = m.get("Attributes", {})
            out.append([m["MessageId"], m["Body"], at.get("MessageGroupId"),
                        at.get("MessageDeduplicationId"), at.get("SequenceNumber")])
        q.delete_message_batch(QueueUrl=a["url"], Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])


ops = {f.__name__: f for f in (calls, create_delivery_stream, put_record_batch, s3_objects,
                               create_stream, stream_records, create_queue, receive_all)}
if op not in ops:
    raise SystemExit("unknown op " + op)
json.dump(ops[op](args), sys.stdout)
