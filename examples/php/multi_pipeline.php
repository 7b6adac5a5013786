<?php
// Checks phpredis' multi() and pipeline() modes through smart-relayer (or against any Redis).
//
//   php multi_pipeline.php HOST PORT [smart]
//
// PORT 0 means HOST is a unix socket path. Each check compares what phpredis returns with what
// Redis returns (EXEC results arrays, pipeline results in order, false where Redis gives an
// error, values read back) and prints one line per check: run against a redis-server directly
// and through the relayer, the transcripts are the same. Any mismatch prints a message on stderr
// and exits 1. Keys start with a prefix unique to the run (shown as <p>) and are deleted at the
// end.
//
// "smart": the relayer acknowledges some writes at once (SET, SETEX, MSET, HSET, SADD, ZADD,
// EXPIRE...) with +OK or :1, in pipelines too, so the integer replies of those commands may be
// the early ones (checked as such); what is read back is exact. Inside MULTI the replies are real.
//
// Left out because they need a connection of their own, which the relayer does not give yet:
// $r->watch() (WATCH), $r->subscribe()/psubscribe(), $r->blPop()/brPop()/bzPopMin(), $r->monitor().

declare(strict_types=1);

$prefix = 'multi_pipeline:' . getmypid() . ':' . bin2hex(random_bytes(4)) . ':';
$checks = 0;

function show($v): string
{
    global $prefix;
    return str_replace($prefix, '<p>', var_export($v, true));
}

function fail(string $msg): void
{
    global $prefix;
    fwrite(STDERR, 'multi_pipeline: FAIL: ' . str_replace($prefix, '<p>', $msg) . "\n");
    exit(1);
}

function eq(string $label, $got, $want): void
{
    global $checks;
    $checks++;
    if ($got !== $want) {
        fail("$label: got " . show($got) . ', expected ' . show($want));
    }
    echo "$label: " . str_replace("\n", ' ', show($got)) . "\n";
}

/**
 * Replies with writes outside MULTI: in smart mode they may be the early ones ($early), shown as
 * $want so that the transcript is the same.
 */
function write(string $label, $got, $want, $early): void
{
    global $smart, $checks;
    if ($smart && $got === $early && $got !== $want) {
        $checks++;
        echo "$label: " . str_replace("\n", ' ', show($want)) . "\n";
        return;
    }
    eq($label, $got, $want);
}

if ($argc < 3 || $argc > 4 || ($argc === 4 && $argv[3] !== 'smart')) {
    fwrite(STDERR, "usage: php multi_pipeline.php HOST PORT [smart] (PORT 0: HOST is a unix socket path)\n");
    exit(2);
}
$host = $argv[1];
$port = (int)$argv[2];
$smart = $argc === 4;
if (!extension_loaded('redis')) {
    fail("the phpredis extension (Debian's php-redis) is not loaded");
}

const WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value';

$p = $prefix;
$r = new Redis();
try {
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $host:$port");
    }
    $r->setOption(Redis::OPT_READ_TIMEOUT, 30);

    eq('ping', $r->ping(), true);
    eq('echo', $r->echo("a\r\nb"), "a\r\nb");
    eq('client setname', $r->client('setname', 'php-check'), true);
    eq('client getname', $r->client('getname'), 'php-check');
    eq('info has redis_version', isset($r->info('server')['redis_version']), true);
    eq('config get', array_keys($r->config('GET', 'maxmemory')), ['maxmemory']);

    // MULTI/EXEC, chained.
    eq('multi set get', $r->multi()->set("{$p}a", '1')->incr("{$p}a")->get("{$p}a")->exec(), [true, 2, '2']);
    eq('multi hash and set', $r->multi()
        ->hMSet("{$p}h", ['f1' => 'x', 'f2' => 'y'])->hGetAll("{$p}h")->sAdd("{$p}s", 'a', 'b')->sCard("{$p}s")
        ->exec(), [true, ['f1' => 'x', 'f2' => 'y'], 2, 2]);
    // A runtime error inside EXEC is false in its place; the rest is applied.
    $res = $r->multi()->set("{$p}str", 'v')->lPush("{$p}str", 'x')->append("{$p}str", 'w')->get("{$p}str")->exec();
    eq('multi WRONGTYPE inside EXEC', $res, [true, false, 2, 'vw']);
    eq('multi applied', $r->get("{$p}str"), 'vw');
    // Not chained: each call returns the Redis object while queueing.
    $q = $r->multi();
    eq('multi returns the client', $q === $r, true);
    $r->set("{$p}b", 'B');
    $r->get("{$p}b");
    $r->del("{$p}b");
    eq('multi unchained', $r->exec(), [true, 'B', 1]);
    // DISCARD: nothing of the block is applied.
    $r->multi();
    $r->set("{$p}discarded", 'x');
    $r->incr("{$p}a");
    eq('discard', $r->discard(), true);
    eq('discarded set not applied', $r->get("{$p}discarded"), false);
    eq('discarded incr not applied', $r->get("{$p}a"), '2');
    eq('exec without multi', $r->rawCommand('EXEC'), false);
    eq('exec without multi error', $r->getLastError(), 'ERR EXEC without MULTI');
    $r->clearLastError();
    eq('discard without multi', $r->rawCommand('DISCARD'), false);
    eq('discard without multi error', $r->getLastError(), 'ERR DISCARD without MULTI');
    $r->clearLastError();
    // A transaction emptied: EXEC of nothing is an empty array.
    eq('empty multi', $r->multi()->exec(), []);

    // Pipelines: results in order, false where Redis gives an error.
    eq('pipeline', $r->pipeline()
        ->set("{$p}p", '10')->incrBy("{$p}p", 5)->get("{$p}p")->lPush("{$p}p", 'x')->get("{$p}nope")
        ->rPush("{$p}l", 'a', 'b', 'c')->lRange("{$p}l", 0, -1)->exists("{$p}p", "{$p}l", "{$p}nope")
        ->exec(), [true, 15, '15', false, false, 3, ['a', 'b', 'c'], 2]);
    write('multi(Redis::PIPELINE)', $r->multi(Redis::PIPELINE)
        ->hSet("{$p}ph", 'f', 'v')->hGet("{$p}ph", 'f')->hGetAll("{$p}ph")->zAdd("{$p}z", 1, 'a', 2, 'b')
        ->zRange("{$p}z", 0, -1, true)->exec(),
        [1, 'v', ['f' => 'v'], 2, ['a' => 1.0, 'b' => 2.0]], [1, 'v', ['f' => 'v'], 1, ['a' => 1.0, 'b' => 2.0]]);
    $pipe = $r->pipeline();
    for ($i = 0; $i < 1000; $i++) {
        $pipe->set("{$p}many:$i", "v$i");
    }
    for ($i = 0; $i < 1000; $i++) {
        $pipe->get("{$p}many:$i");
    }
    $res = $pipe->exec();
    $want = array_merge(array_fill(0, 1000, true), array_map(fn ($i) => "v$i", range(0, 999)));
    eq('pipeline of 2000', $res === $want, true);

    // SELECT inside a pipeline: the DB changes for what follows, in the pipeline and after it.
    eq('pipeline with select', $r->pipeline()
        ->select(3)->set("{$p}db", 'three')->get("{$p}db")->select(0)->get("{$p}db")
        ->exec(), [true, true, 'three', true, false]);
    eq('back on db 0', $r->get("{$p}db"), false);
    eq('pipeline leaving db 3 selected', $r->pipeline()->select(3)->get("{$p}db")->exec(), [true, 'three']);
    eq('still on db 3', $r->get("{$p}db"), 'three');
    eq('select in multi', $r->multi()->select(0)->set("{$p}db", 'zero')->exec(), [true, true]);
    eq('on db 0 after the multi', $r->get("{$p}db"), 'zero');
    eq('db 3 untouched', $r->select(3) && $r->get("{$p}db") === 'three', true);
    eq('db 3 cleanup', $r->del("{$p}db"), 1);
    eq('select 0', $r->select(0), true);

    // A MULTI block sent in a pipeline.
    eq('multi in a pipeline', $r->pipeline()->multi()->incr("{$p}a")->get("{$p}a")->exec()->exec(), [[3, '3']]);

    // Writes outside MULTI in smart mode may be acknowledged early; read back is exact.
    write('sadd', $r->sAdd("{$p}s2", 'a', 'b', 'a'), 2, 1);
    eq('smembers', (function ($m) { sort($m); return $m; })($r->sMembers("{$p}s2")), ['a', 'b']);
    write('hset', $r->hSet("{$p}h2", 'f', 'v'), 1, 1);
    eq('hget', $r->hGet("{$p}h2", 'f'), 'v');

    // Cleanup.
    $keys = [];
    $it = null;
    while (($batch = $r->scan($it, "{$p}*", 500)) !== false) {
        $keys = array_merge($keys, $batch);
    }
    eq('cleanup', $r->del($keys), count($keys));
    $r->close();
} catch (Throwable $e) {
    fail(get_class($e) . ': ' . $e->getMessage());
}

echo "multi_pipeline: OK $checks checks\n";
exit(0);
