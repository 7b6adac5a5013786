<?php
// The loop smart mode exists for (phpredis, Debian's php-redis): a request that writes a lot.
//
//   php smart_loop.php HOST PORT ITERATIONS              run the loop, print the time and run id
//   php smart_loop.php HOST PORT ITERATIONS verify RUN   check every key of run RUN on HOST:PORT
//
// PORT 0 means HOST is a unix socket path. Each iteration writes, with keys unique to the run:
//   SETEX smart_loop:RUN:s:I 3600 <1 KB value>
//   HSET  smart_loop:RUN:h:I f <1 KB value>
//   EXPIRE smart_loop:RUN:h:I 3600
// and checks the replies (OK, 1, true); after the loop one GET of the last string key must return
// the last value. Success prints `run=RUN`, `iterations=N` and `elapsed_s=SECONDS` (the loop and the
// GET, not the connection) and exits 0; any mismatch, false reply or exception prints a message on
// stderr and exits 1.
//
// Verify mode connects (usually to the backend itself) and checks that run RUN left exactly
// 2 x ITERATIONS keys, each with its value and a TTL in (0, 3600]; it prints `verified=N`.

declare(strict_types=1);

const TTL = 3600;
const VALUE_BYTES = 1024;

function fail(string $msg): void
{
    fwrite(STDERR, "smart_loop: FAIL: $msg\n");
    exit(1);
}

function show($v): string
{
    return is_string($v) ? strlen($v) . ' bytes' . (strlen($v) <= 40 ? ' ' . var_export($v, true) : '') : var_export($v, true);
}

/// The value of iteration $i: different on every iteration and every run, VALUE_BYTES long.
function value_of(string $run, int $i): string
{
    return str_pad("$run:$i:", VALUE_BYTES, chr(ord('a') + $i % 26));
}

function str_key(string $run, int $i): string
{
    return "smart_loop:$run:s:$i";
}

function hash_key(string $run, int $i): string
{
    return "smart_loop:$run:h:$i";
}

if ($argc !== 4 && !($argc === 6 && $argv[4] === 'verify')) {
    fwrite(STDERR, "usage: php smart_loop.php HOST PORT ITERATIONS [verify RUN] (PORT 0: HOST is a unix socket path)\n");
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

$r = new Redis();
try {
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $target");
    }
    $r->setOption(Redis::OPT_READ_TIMEOUT, 30);

    if ($argc === 6) {
        $run = $argv[5];
        $keys = 0;
        $it = null;
        do {
            $batch = $r->scan($it, "smart_loop:$run:*", 1000);
            if ($batch !== false) {
                $keys += count($batch);
            }
        } while ($it > 0);
        if ($keys !== 2 * $iterations) {
            fail("run $run: $keys keys on $target, expected " . (2 * $iterations));
        }
        for ($i = 0; $i < $iterations; $i++) {
            $value = value_of($run, $i);
            $got = $r->get(str_key($run, $i));
            if ($got !== $value) {
                fail("run $run: " . str_key($run, $i) . " holds " . show($got) . ", not the value written");
            }
            $got = $r->hGet(hash_key($run, $i), 'f');
            if ($got !== $value) {
                fail("run $run: " . hash_key($run, $i) . " field f holds " . show($got) . ", not the value written");
            }
            foreach ([str_key($run, $i), hash_key($run, $i)] as $key) {
                $ttl = $r->ttl($key);
                if (!is_int($ttl) || $ttl <= 0 || $ttl > TTL) {
                    fail("run $run: TTL of $key is " . var_export($ttl, true) . ", expected 1.." . TTL);
                }
            }
        }
        printf("verified=%d\n", 2 * $iterations);
        exit(0);
    }

    $run = getmypid() . '-' . bin2hex(random_bytes(6));
    $start = microtime(true);
    for ($i = 0; $i < $iterations; $i++) {
        $value = value_of($run, $i);
        $got = $r->setex(str_key($run, $i), TTL, $value);
        if ($got !== true) {
            fail("iteration $i: SETEX returned " . show($got));
        }
        $got = $r->hSet(hash_key($run, $i), 'f', $value);
        if ($got !== 1) {
            fail("iteration $i: HSET returned " . show($got) . ", expected 1");
        }
        $got = $r->expire(hash_key($run, $i), TTL);
        if ($got !== true) {
            fail("iteration $i: EXPIRE returned " . show($got) . ", expected true");
        }
    }
    $last = $iterations - 1;
    $got = $r->get(str_key($run, $last));
    if ($got !== value_of($run, $last)) {
        fail("GET " . str_key($run, $last) . " returned " . show($got) . ", not the last value written");
    }
    $elapsed = microtime(true) - $start;
    $r->close();
} catch (Throwable $e) {
    fail(get_class($e) . ': ' . $e->getMessage());
}

printf("run=%s\niterations=%d\nelapsed_s=%.6f\n", $run, $iterations, $elapsed);
exit(0);
