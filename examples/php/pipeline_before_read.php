<?php
// Large pipelines through smart-relayer with phpredis (Debian's php-redis): phpredis' pipeline
// mode writes every queued command at exec() before it reads any reply.
//
//   php pipeline_before_read.php HOST PORT GETS SETS
//
// PORT 0 means HOST is a unix socket path. Sets a 1 KB value, then one pipeline
// (multi(Redis::PIPELINE)) of GETS GETs of it, every reply compared with the value; then one
// pipeline of SETS SETs (`SET <run>:set:<i> <i> EX 600`), every reply true, and a pipeline of GETs
// of a sample of those keys compared. Keys start with pipeline_before_read:<run>: and expire
// after 10 minutes. Any mismatch, false reply or exception prints a message on stderr and exits 1;
// success prints one summary line and exits 0.

declare(strict_types=1);

function fail(string $msg): void
{
    fwrite(STDERR, "pipeline_before_read: FAIL: $msg\n");
    exit(1);
}

if ($argc !== 5) {
    fwrite(STDERR, "usage: php pipeline_before_read.php HOST PORT GETS SETS (PORT 0: HOST is a unix socket path)\n");
    exit(2);
}
$host = $argv[1];
$port = (int)$argv[2];
$gets = (int)$argv[3];
$sets = (int)$argv[4];
if ($gets < 0 || $sets < 0) {
    fail("GETS and SETS must be integers >= 0");
}
if (!extension_loaded('redis')) {
    fail("the phpredis extension (Debian's php-redis) is not loaded");
}

$target = $port === 0 ? "unix:$host" : "$host:$port";
$run = getmypid() . '-' . bin2hex(random_bytes(6));
$prefix = "pipeline_before_read:$run";

/** What a reply was, for a message. */
function show($v): string
{
    return is_string($v) ? strlen($v) . ' bytes' : var_export($v, true);
}

$r = new Redis();
try {
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $target");
    }
    // Generous: the pipeline's replies are read only once all of it is written.
    $r->setOption(Redis::OPT_READ_TIMEOUT, 60);

    $key = "$prefix:value";
    $value = str_pad("$run:", 1024, 'abcdefghijklmnopqrstuvwxyz');
    if ($r->set($key, $value, ['EX' => 600]) !== true) {
        fail("SET of the value did not return true");
    }

    $start = microtime(true);
    $p = $r->multi(Redis::PIPELINE);
    for ($i = 0; $i < $gets; $i++) {
        $p->get($key);
    }
    $res = $p->exec();
    $get_s = microtime(true) - $start;
    if (!is_array($res) || count($res) !== $gets) {
        fail("the GET pipeline's exec() returned " . (is_array($res) ? count($res) . " replies, not $gets" : var_export($res, true)));
    }
    foreach ($res as $i => $got) {
        if ($got !== $value) {
            fail("GET $i of $gets returned " . show($got) . ", not the value");
        }
    }
    unset($res);

    $start = microtime(true);
    $p = $r->multi(Redis::PIPELINE);
    for ($i = 0; $i < $sets; $i++) {
        $p->set("$prefix:set:$i", (string)$i, ['EX' => 600]);
    }
    $res = $p->exec();
    $set_s = microtime(true) - $start;
    if (!is_array($res) || count($res) !== $sets) {
        fail("the SET pipeline's exec() returned " . (is_array($res) ? count($res) . " replies, not $sets" : var_export($res, true)));
    }
    foreach ($res as $i => $got) {
        if ($got !== true) {
            fail("SET $i of $sets returned " . var_export($got, true));
        }
    }
    unset($res);
    if ($sets > 0) {
        $sample = array_merge(range(0, $sets - 1, 997), [$sets - 1]);
        $p = $r->multi(Redis::PIPELINE);
        foreach ($sample as $i) {
            $p->get("$prefix:set:$i");
        }
        foreach ($p->exec() as $j => $got) {
            if ($got !== (string)$sample[$j]) {
                fail("$prefix:set:{$sample[$j]} read back as " . var_export($got, true));
            }
        }
    }
    $r->close();
} catch (Throwable $e) {
    fail(get_class($e) . ': ' . $e->getMessage());
}

printf("pipeline_before_read: OK gets=%d sets=%d get_s=%.3f set_s=%.3f run=%s\n", $gets, $sets, $get_s, $set_s, $run);
exit(0);
