<?php
// Load loop through smart-relayer with phpredis (Debian's php-redis).
//
//   php relay_loop.php HOST PORT ITERATIONS
//
// PORT 0 means HOST is a unix socket path. Each iteration: PING, SETEX of a 10 KB value, GET and
// compare, HSET, HGET and compare, HDEL, DEL, EXISTS. Any mismatch, false reply or exception prints
// a message on stderr and exits 1; success prints one summary line and exits 0.

declare(strict_types=1);

function fail(string $msg): void
{
    fwrite(STDERR, "relay_loop: FAIL: $msg\n");
    exit(1);
}

if ($argc !== 4) {
    fwrite(STDERR, "usage: php relay_loop.php HOST PORT ITERATIONS (PORT 0: HOST is a unix socket path)\n");
    exit(2);
}
$host = $argv[1];
$port = (int)$argv[2];
$iterations = (int)$argv[3];
if ($iterations < 1) {
    fail("ITERATIONS must be a positive integer");
}
if (!extension_loaded('redis')) {
    fail("the phpredis extension (Debian's php-redis) is not loaded");
}

$target = $port === 0 ? "unix:$host" : "$host:$port";
$run = getmypid() . '-' . bin2hex(random_bytes(6));
$key = "relay_loop:$run:str";
$hash = "relay_loop:$run:hash";

$start = microtime(true);
$r = new Redis();
try {
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $target");
    }
    $r->setOption(Redis::OPT_READ_TIMEOUT, 30);

    for ($i = 0; $i < $iterations; $i++) {
        // 10 KB value, different on every iteration so a stale reply cannot match.
        $value = str_pad("$run:$i:", 10240, chr(ord('a') + $i % 26));
        $field = "f$i";

        $pong = $r->ping();
        if ($pong !== true && $pong !== '+PONG' && $pong !== 'PONG') {
            fail("iteration $i: PING returned " . var_export($pong, true));
        }
        if ($r->setex($key, 60, $value) !== true) {
            fail("iteration $i: SETEX did not return OK");
        }
        $got = $r->get($key);
        if ($got !== $value) {
            fail("iteration $i: GET returned " . (is_string($got) ? strlen($got) . " bytes, not the value written" : var_export($got, true)));
        }
        $n = $r->hSet($hash, $field, $value);
        if ($n !== 1) {
            fail("iteration $i: HSET returned " . var_export($n, true) . ", expected 1");
        }
        $got = $r->hGet($hash, $field);
        if ($got !== $value) {
            fail("iteration $i: HGET returned " . (is_string($got) ? strlen($got) . " bytes, not the value written" : var_export($got, true)));
        }
        $n = $r->hDel($hash, $field);
        if ($n !== 1) {
            fail("iteration $i: HDEL returned " . var_export($n, true) . ", expected 1");
        }
        $n = $r->del($key);
        if ($n !== 1) {
            fail("iteration $i: DEL returned " . var_export($n, true) . ", expected 1");
        }
        $n = $r->exists($key);
        if ($n !== 0 && $n !== false) {
            fail("iteration $i: EXISTS after DEL returned " . var_export($n, true));
        }
    }
    $r->del($key, $hash);
    $r->close();
} catch (Throwable $e) {
    fail(get_class($e) . ': ' . $e->getMessage());
}

printf("relay_loop: OK %d iterations against %s in %.3f s\n", $iterations, $target, microtime(true) - $start);
exit(0);
