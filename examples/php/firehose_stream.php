<?php
// Streams records through a smart-relayer firehose entry with phpredis (Debian's php-redis).
//
//   php firehose_stream.php HOST PORT [COUNT]
//
// PORT 0 means HOST is a unix socket path; COUNT (default 100) is the number of iterations. RUN
// below is a run id made of the pid and random hex. Each iteration i sends, checking each reply
// exactly:
//   PING                                                   -> PONG
//   ECHO  "echo i é"                                       -> "echo i é"  (no record)
//   SELECT i % 16                                          -> OK          (accepted, ignored)
//   SET   fs:RUN:set:i "value i é <&>"                     -> OK      {"fs:RUN:set:i":"value i é <&>"}
//   SADD  fs:RUN:sadd:i a b a mi                           -> 3       {"fs:RUN:sadd:i":["a","b","mi"]}
//   HMSET fs:RUN:hmset:i f1 xi f2 y                        -> OK      {"fs:RUN:hmset:i":{"f1":"xi","f2":"y"}}
//   HSET  fs:RUN:hset:i f i                                -> 1       {"fs:RUN:hset:i":{"f":"i"}}
//   RAWSET 'raw fs:RUN:i {"i":i}'                          -> OK      the payload verbatim
//   MULTI                                                  -> OK      one record for the block:
//     SET   fs:RUN:multi:i:s first                         -> QUEUED  {"fs:RUN:multi:i:h":{"a":"1","b":"2"},
//     SET   fs:RUN:multi:i:s last                          -> QUEUED   "fs:RUN:multi:i:s":"last",
//     SADD  fs:RUN:multi:i:set p q                         -> QUEUED   "fs:RUN:multi:i:set":["p","q","r"]}
//     SADD  fs:RUN:multi:i:set q r                         -> QUEUED
//     HMSET fs:RUN:multi:i:h a 1                           -> QUEUED
//     HSET  fs:RUN:multi:i:h b 2                           -> QUEUED
//   EXEC                                                   -> [OK, OK, 2, 1, OK, 1]
// (each command inside MULTI must answer QUEUED: phpredis gives back the Redis object for it, and
// false for anything else), and every 10th iteration (i % 10 == 0) also a block that is
// discarded, so it makes no record:
//   MULTI, SET fs:RUN:discarded:i x, SADD fs:RUN:discarded:i:s y, DISCARD
//                                                          -> OK, QUEUED, QUEUED, OK
// At the end, GET (which a firehose relayer does not have) must fail with
// "ERR unknown command 'GET' for a firehose relayer", and a last PING must answer.
// integration/tests/all/firehose.rs rebuilds these records from RUN and COUNT and compares them with
// what reached S3, line by line.
//
// Any unexpected reply, false or exception prints a message on stderr and exits 1; success prints
// one summary line (run=RUN, the counts) and exits 0.

declare(strict_types=1);

function fail(string $msg): void
{
    fwrite(STDERR, "firehose_stream: FAIL: $msg\n");
    exit(1);
}

function show($v): string
{
    return var_export($v, true);
}

if ($argc < 3 || $argc > 4) {
    fwrite(STDERR, "usage: php firehose_stream.php HOST PORT [COUNT] (PORT 0: HOST is a unix socket path)\n");
    exit(2);
}
$host = $argv[1];
$port = (int)$argv[2];
$count = $argc === 4 ? (int)$argv[3] : 100;
if ($count < 1) {
    fail("COUNT must be a positive integer");
}
if (!extension_loaded('redis')) {
    fail("the phpredis extension (Debian's php-redis) is not loaded");
}

$target = $port === 0 ? "unix:$host" : "$host:$port";
$run = getmypid() . '-' . bin2hex(random_bytes(6));

// phpredis answers +OK as true; a raw command may give it as true or as the string.
function is_ok($v): bool
{
    return $v === true || $v === 'OK';
}

function is_pong($v): bool
{
    return $v === true || $v === '+PONG' || $v === 'PONG';
}

$start = microtime(true);
$records = 0;
$rawsets = 0;
$blocks = 0;
$discarded = 0;
$r = new Redis();
try {
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $target");
    }
    $r->setOption(Redis::OPT_READ_TIMEOUT, 30);

    for ($i = 0; $i < $count; $i++) {
        $p = "fs:$run";
        $v = $r->ping();
        if (!is_pong($v)) {
            fail("iteration $i: PING returned " . show($v));
        }
        $v = $r->echo("echo $i é");
        if ($v !== "echo $i é") {
            fail("iteration $i: ECHO returned " . show($v));
        }
        $v = $r->select($i % 16);
        if ($v !== true) {
            fail("iteration $i: SELECT " . ($i % 16) . " returned " . show($v) . ", expected OK");
        }
        $v = $r->set("$p:set:$i", "value $i é <&>");
        if ($v !== true) {
            fail("iteration $i: SET returned " . show($v) . ", expected OK");
        }
        $v = $r->sAdd("$p:sadd:$i", "a", "b", "a", "m$i");
        if ($v !== 3) {
            fail("iteration $i: SADD of a b a m$i returned " . show($v) . ", expected 3");
        }
        $v = $r->hMSet("$p:hmset:$i", ["f1" => "x$i", "f2" => "y"]);
        if ($v !== true) {
            fail("iteration $i: HMSET returned " . show($v) . ", expected OK");
        }
        $v = $r->hSet("$p:hset:$i", "f", (string)$i);
        if ($v !== 1) {
            fail("iteration $i: HSET returned " . show($v) . ", expected 1");
        }
        $records += 4;
        $v = $r->rawCommand("RAWSET", "raw $p:$i {\"i\":$i}");
        if (!is_ok($v)) {
            fail("iteration $i: RAWSET returned " . show($v) . ", expected OK");
        }
        $rawsets++;

        $m = $r->multi();
        if ($m === false) {
            fail("iteration $i: MULTI failed: " . show($r->getLastError()));
        }
        $queued = [
            $m->set("$p:multi:$i:s", "first"),
            $m->set("$p:multi:$i:s", "last"),
            $m->sAdd("$p:multi:$i:set", "p", "q"),
            $m->sAdd("$p:multi:$i:set", "q", "r"),
            $m->hMSet("$p:multi:$i:h", ["a" => "1"]),
            $m->hSet("$p:multi:$i:h", "b", "2"),
        ];
        foreach ($queued as $n => $q) {
            if (!($q instanceof Redis)) {
                fail("iteration $i: command $n of the block was not QUEUED: " . show($q)
                    . " (last error " . show($r->getLastError()) . ")");
            }
        }
        $v = $m->exec();
        $want = [true, true, 2, 1, true, 1];
        if ($v !== $want) {
            fail("iteration $i: EXEC returned " . show($v) . ", expected " . show($want)
                . " (last error " . show($r->getLastError()) . ")");
        }
        $records++;
        $blocks++;

        if ($i % 10 === 0) {
            $m = $r->multi();
            if ($m === false) {
                fail("iteration $i: MULTI (to discard) failed: " . show($r->getLastError()));
            }
            $queued = [$m->set("$p:discarded:$i", "x"), $m->sAdd("$p:discarded:$i:s", "y")];
            foreach ($queued as $n => $q) {
                if (!($q instanceof Redis)) {
                    fail("iteration $i: command $n of the discarded block was not QUEUED: " . show($q));
                }
            }
            $v = $r->discard();
            if ($v !== true) {
                fail("iteration $i: DISCARD returned " . show($v) . ", expected OK");
            }
            $discarded++;
        }
    }

    // A command the firehose relayer does not have: an error reply, and the connection goes on.
    $v = $r->get("fs:$run:set:0");
    // phpredis 5.3 keeps a trailing NUL byte on some error texts (redis-server's too): drop it.
    $err = $r->getLastError();
    $err = is_string($err) ? rtrim($err, "\0") : $err;
    $want = "ERR unknown command 'GET' for a firehose relayer";
    if ($v !== false || $err !== $want) {
        fail("GET returned " . show($v) . " with last error " . show($err) . ", expected false and " . show($want));
    }
    $r->clearLastError();
    $v = $r->ping();
    if (!is_pong($v)) {
        fail("last PING returned " . show($v));
    }
    $r->close();
} catch (Throwable $e) {
    fail(get_class($e) . ': ' . $e->getMessage());
}

// records: the JSON lines sent (4 per iteration and one per MULTI block); rawsets: RAWSET payloads.
printf(
    "firehose_stream: OK run=%s iterations=%d records=%d rawsets=%d blocks=%d discarded=%d against %s in %.3f s\n",
    $run,
    $count,
    $records,
    $rawsets,
    $blocks,
    $discarded,
    $target,
    microtime(true) - $start
);
exit(0);
