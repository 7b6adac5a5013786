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
// It also checks the commands that need a connection of their own (the relayer gives them one),
// with a second connection acting on the first: watch() then multi()/exec(), where exec() returns
// false after another connection changed a watched key, and succeeds on the retry, after
// unwatch() and after discard(); blPop()/brPop()/bzPopMin()/xRead() with a block, on data already
// there, with a timeout (false, or [] for xRead), and released by a push (or XADD) from a child
// process (pcntl_fork: PHP has no threads) once the server counts a blocked client; wait(0, 0);
// subscribe() and psubscribe() receiving what a child publishes. Stream IDs are shown as <id>.
//
// phpredis 5.3's subscribe() and psubscribe() loop until a reply other than a message arrives
// (returning from the callback, false or an exception, does not end it, nor does unsubscribe(),
// which reads its own replies). So the callback leaves with rawCommand('UNSUBSCRIBE', ch1, ch2):
// Redis answers once per channel, rawCommand() reads the first answer and the loop ends on the
// second. After that the connection serves ordinary commands again.
//
// In smart mode a SET is acknowledged before it runs, so a conflicting write is followed by a
// read on the same connection: the read sees the SET, so the SET ran before the EXEC.

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

function connect_client(): Redis
{
    global $host, $port;
    $r = new Redis();
    $ok = $port === 0 ? $r->connect($host) : $r->connect($host, $port, 5.0);
    if (!$ok) {
        fail("cannot connect to $host:$port");
    }
    $r->setOption(Redis::OPT_READ_TIMEOUT, 30);
    return $r;
}

/**
 * Runs $blocking() here while a child process, on a connection of its own, waits until $ready
 * holds for the server and then calls $release (which returns true when its reply was the one
 * expected). Returns what $blocking() returned; the child's success is a check of its own.
 */
function released(string $label, callable $blocking, callable $ready, callable $release)
{
    $pid = pcntl_fork();
    if ($pid === -1) {
        fail("$label: pcntl_fork failed");
    }
    if ($pid === 0) {
        // The child: it leaves the parent's connection alone (closing a copy of a socket does
        // not close the parent's) and prints nothing.
        $c = connect_client();
        $deadline = microtime(true) + 20;
        while (!$ready($c)) {
            if (microtime(true) > $deadline) {
                fwrite(STDERR, "multi_pipeline: FAIL: $label: the server never showed the client waiting\n");
                exit(2);
            }
            usleep(2000);
        }
        exit($release($c) ? 0 : 3);
    }
    $got = $blocking();
    pcntl_waitpid($pid, $status);
    eq("$label: the other connection's part", pcntl_wifexited($status) ? pcntl_wexitstatus($status) : -1, 0);
    return $got;
}

/** The server counts $n blocked clients (INFO is forwarded through the relayer). */
function blocked(int $n): callable
{
    return fn (Redis $c) => (int)$c->info('clients')['blocked_clients'] === $n;
}

/** getLastError(): phpredis 5.3 leaves a NUL at the end of some (those of blPop, of WATCH in MULTI). */
function last_error(Redis $r): ?string
{
    $e = $r->getLastError();
    return $e === null ? null : rtrim($e, "\0");
}

function dedicated_checks(Redis $r, string $p): void
{
    $o = connect_client();

    // WATCH: another connection's change makes exec() return false; the retry succeeds.
    $k = "{$p}balance";
    write('watched key set', $r->set($k, '10'), true, true);
    eq('watch', $r->watch($k), true);
    eq('watch: read', $r->get($k), '10');
    write('conflicting set', $o->set($k, '99'), true, true);
    eq('conflicting set read back', $o->get($k), '99');
    eq('exec after a conflict', $r->multi()->set($k, '20')->exec(), false);
    eq('the conflicting value stays', $r->get($k), '99');
    eq('watch again', $r->watch([$k, "{$p}other"]), true);
    eq('exec without a conflict', $r->multi()->incr($k)->get($k)->exec(), [100, '100']);
    eq('watch then unwatch', $r->watch($k) && $r->unwatch(), true);
    write('set after unwatch', $o->set($k, '1'), true, true);
    eq('read after unwatch', $o->get($k), '1');
    eq('exec after unwatch', $r->multi()->incr($k)->exec(), [2]);
    $r->watch($k);
    $r->multi();
    $r->incr($k);
    eq('discard', $r->discard(), true);
    write('set after discard', $o->set($k, '5'), true, true);
    eq('read after discard', $o->get($k), '5');
    eq('exec after discard (which unwatches)', $r->multi()->incr($k)->exec(), [6]);
    // A watch in a pipeline, then the transaction.
    eq('watch in a pipeline', $r->pipeline()->watch($k)->get($k)->exec(), [true, '6']);
    write('conflict after a pipelined watch', $o->set($k, '7'), true, true);
    eq('read it', $o->get($k), '7');
    eq('exec after a pipelined watch', $r->multi()->set($k, 'lost')->exec(), false);
    $r->multi();
    eq('watch inside multi', $r->watch($k), false);
    eq('watch inside multi error', last_error($r), 'ERR WATCH inside MULTI is not allowed');
    $r->clearLastError();
    eq('exec after it', $r->exec(), []);

    // Blocking pops: on data already there, with a timeout, released by a child's push.
    $q = "{$p}queue";
    eq('rpush', $r->rPush($q, 'a', 'b'), 2);
    eq('blPop on data', $r->blPop([$q], 1), [$q, 'a']);
    eq('brPop on data, variadic keys', $r->brPop("{$p}none", $q, 1), [$q, 'b']);
    // phpredis 5.3 takes whole seconds only ("Timeout value must be a LONG"): 1 s each.
    eq('blPop timeout', $r->blPop([$q], 1), []);
    eq('brPop timeout', $r->brPop([$q, "{$p}none"], 1), []);
    eq('blPop released by a push', released('blPop', fn () => $r->blPop([$q], 10), blocked(1),
        fn (Redis $c) => $c->rPush($q, 'job-1') === 1), [$q, 'job-1']);
    eq('brPop on two lists released by a push', released('brPop', fn () => $r->brPop(["{$p}q1", "{$p}q2"], 10),
        blocked(1), fn (Redis $c) => $c->lPush("{$p}q2", 'x', 'y') === 2), ["{$p}q2", 'x']);
    eq('brPop left the rest', $r->lRange("{$p}q2", 0, -1), ['y']);
    eq('brpoplpush released by a push', released('brpoplpush', fn () => $r->brpoplpush("{$p}src", "{$p}dst", 10),
        blocked(1), fn (Redis $c) => $c->rPush("{$p}src", 'm') === 1), 'm');
    eq('bzPopMin released by zAdd', released('bzPopMin', fn () => $r->bzPopMin("{$p}bz", 10), blocked(1),
        fn (Redis $c) => in_array($c->zAdd("{$p}bz", 1.5, 'm'), [1, true], true)), ["{$p}bz", 'm', '1.5']);
    $r->set("{$p}str", 'v');
    eq('blPop on a string', $r->blPop(["{$p}str"], 1), false);
    eq('blPop on a string error', last_error($r), WRONGTYPE);
    $r->clearLastError();
    eq('blocking pops in a pipeline', $r->pipeline()
        ->rPush($q, 'p1', 'p2')->blPop([$q], 1)->incr("{$p}after")->brPop([$q], 1)
        ->exec(), [2, [$q, 'p1'], 1, [$q, 'p2']]);
    // Inside MULTI they do not block: the timeout forms at once.
    eq('blocking pops inside MULTI', $r->multi()
        ->blPop([$q], 1)->rPush($q, 't1')->brPop([$q], 1)->bzPopMin("{$p}bz", 1)->brpoplpush($q, "{$p}dst", 1)
        ->exec(), [[], 1, [$q, 't1'], [], false]);

    // XREAD BLOCK released by a child's XADD; the IDs are the server's clock.
    $st = "{$p}stream";
    $got = released('xRead', fn () => $r->xRead([$st => '$'], 1, 10000), blocked(1),
        fn (Redis $c) => is_string($c->xAdd($st, '*', ['f' => 'v'])));
    eq('xRead block released by xAdd', array_map('array_values', $got), [$st => [['f' => 'v']]]);
    eq('xRead block timeout', $r->xRead([$st => '$'], 1, 50), []);
    eq('xRead block on data already there', array_map('array_values', $r->xRead([$st => '0'], 1, 50)),
        [$st => [['f' => 'v']]]);

    // WAIT: no replicas, so at once.
    eq('wait', $r->wait(0, 0), 0);

    // Pub/sub on a connection of its own: a child publishes once the server counts the
    // subscriptions.
    $s = connect_client();
    eq('subscriber setname', $s->client('setname', 'php-sub'), true);
    $got = [];
    $ch1 = "{$p}news";
    $ch2 = "{$p}sport";
    $ret = released('subscribe', function () use ($s, $ch1, $ch2, &$got) {
        return $s->subscribe([$ch1, $ch2], function (Redis $s, string $chan, string $msg) use ($ch1, $ch2, &$got) {
            $got[] = [$chan, $msg];
            if ($msg === 'quit') {
                $got[] = $s->rawCommand('UNSUBSCRIBE', $ch1, $ch2);
            }
        });
    }, fn (Redis $c) => $c->pubsub('numsub', [$ch2]) === [$ch2 => 1],
        fn (Redis $c) => $c->publish($ch1, 'n1') === 1 && $c->publish($ch2, 's1') === 1
            && $c->publish("{$p}nobody", 'x') === 0 && $c->publish($ch1, 'quit') === 1);
    eq('subscribe: messages', $got, [[$ch1, 'n1'], [$ch2, 's1'], [$ch1, 'quit'], ['unsubscribe', $ch1, 1]]);
    eq('subscribe: returned', $ret, null);
    eq('subscriber serves commands again', $s->get("{$p}str"), 'v');
    eq('subscriber keeps its name', $s->client('getname'), 'php-sub');
    eq('nobody subscribed any more', $o->pubsub('numsub', [$ch1, $ch2]), [$ch1 => 0, $ch2 => 0]);
    $got = [];
    $pat = "{$p}w*";
    $ret = released('psubscribe', function () use ($s, $pat, &$got) {
        return $s->psubscribe([$pat], function (Redis $s, string $pattern, string $chan, string $msg) use ($pat, &$got) {
            $got[] = [$pattern, $chan, $msg];
            if ($msg === 'quit') {
                $got[] = $s->rawCommand('PUNSUBSCRIBE', $pat, $pat);
            }
        });
    }, fn (Redis $c) => $c->pubsub('numpat') === 1,
        fn (Redis $c) => $c->publish("{$p}weather", 'rain') === 1 && $c->publish("{$p}wind", 'quit') === 1);
    eq('psubscribe: messages', $got, [[$pat, "{$p}weather", 'rain'], [$pat, "{$p}wind", 'quit'], ['punsubscribe', $pat, 0]]);
    eq('psubscribe: returned', $ret, null);
    eq('psubscriber serves commands again', $s->get("{$p}str"), 'v');
    eq('no pattern left', $o->pubsub('numpat'), 0);
    $s->close();
    $o->close();
}

$p = $prefix;
try {
    $r = connect_client();

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

    dedicated_checks($r, $p);

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
