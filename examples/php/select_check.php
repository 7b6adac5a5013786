<?php
// Checks that SELECT through smart-relayer keeps each client on its own DB, with phpredis.
//
//   php select_check.php HOST PORT ITERATIONS
//
// PORT 0 means HOST is a unix socket path. Each iteration SELECTs a random DB (0..15), writes a key
// unique to this run, iteration and DB, and reads back every key this run has written in that DB;
// it also checks that the key just written is not visible from another DB. Any mismatch, false
// reply or exception prints a message on stderr and exits 1; keys are deleted at the end.

declare(strict_types=1);

const DBS = 16;

function fail(string $msg): void
{
    fwrite(STDERR, "select_check: FAIL: $msg\n");
    exit(1);
}

function select_db(Redis $r, int $db, string $when): void
{
    if ($r->select($db) !== true) {
        fail("$when: SELECT $db did not return OK");
    }
}

if ($argc !== 4) {
    fwrite(STDERR, "usage: php select_check.php HOST PORT ITERATIONS (PORT 0: HOST is a unix socket path)\n");
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
// $written[$db][$key] = value: what this run has written in each DB and not yet deleted.
$written = array_fill(0, DBS, []);
$checks = 0;

$start = microtime(true);
$r = new Redis();
try {
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $target");
    }
    $r->setOption(Redis::OPT_READ_TIMEOUT, 30);

    for ($i = 0; $i < $iterations; $i++) {
        $db = random_int(0, DBS - 1);
        $key = "select_check:$run:$i";
        $value = "db=$db;i=$i;run=$run;" . bin2hex(random_bytes(8));

        select_db($r, $db, "iteration $i");
        if ($r->set($key, $value, ['EX' => 300]) !== true) {
            fail("iteration $i: SET in DB $db did not return OK");
        }
        $written[$db][$key] = $value;

        // Every key this run wrote in this DB reads back as written (the last few, to stay linear).
        foreach (array_slice($written[$db], -8, null, true) as $k => $v) {
            $got = $r->get($k);
            $checks++;
            if ($got !== $v) {
                fail("iteration $i: GET $k in DB $db returned " . var_export($got, true) . ", expected " . var_export($v, true));
            }
        }

        // The key just written is not visible from another DB.
        $other = ($db + random_int(1, DBS - 1)) % DBS;
        select_db($r, $other, "iteration $i");
        $got = $r->get($key);
        $checks++;
        if ($got !== false) {
            fail("iteration $i: key written in DB $db is visible in DB $other: " . var_export($got, true));
        }
        // And what was written there is still there.
        foreach (array_slice($written[$other], -2, null, true) as $k => $v) {
            $got = $r->get($k);
            $checks++;
            if ($got !== $v) {
                fail("iteration $i: GET $k in DB $other returned " . var_export($got, true) . ", expected " . var_export($v, true));
            }
        }
    }

    // Clean up, checking each key is still in its DB.
    foreach ($written as $db => $keys) {
        if ($keys === []) {
            continue;
        }
        select_db($r, $db, "cleanup");
        $n = $r->del(array_keys($keys));
        if ($n !== count($keys)) {
            fail("cleanup: DEL in DB $db removed " . var_export($n, true) . " of " . count($keys) . " keys");
        }
    }
    select_db($r, 0, "cleanup");
    $r->close();
} catch (Throwable $e) {
    fail(get_class($e) . ': ' . $e->getMessage());
}

printf("select_check: OK %d iterations, %d reads checked against %s in %.3f s\n",
    $iterations, $checks, $target, microtime(true) - $start);
exit(0);
