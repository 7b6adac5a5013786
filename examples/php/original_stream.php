<?php
// A client written for the original daemon's stream relayers (its firehose.php and sqs.php
// load loops), kept working by `replies = "original"` on a firehose, kinesis or sqs entry.
//
//   php original_stream.php HOST PORT [COUNT]
//
// PORT 0 means HOST is a unix socket path; COUNT (default 20) is the number of iterations. The
// original's scripts read replies through phpiredis, which gives a status reply as its text
// ("OK", "QUEUED") and an integer as an int; this script reads them the same way, with a few
// lines of RESP of its own (phpiredis is not packaged in Debian; phpredis' rawCommand turns
// every status into true, and so cannot tell OK from QUEUED). Each iteration, on a new
// connection as the original's scripts did:
//   PING                                   -> PONG or OK
//   MULTI                                  -> OK
//     SET   or:RUN:i v                     -> OK      (the original's reply inside MULTI)
//     SADD  or:RUN:list:i <10 chars> x5    -> OK
//     HMSET or:RUN:dict:i <5> <10> x5      -> OK
//   EXEC                                   -> OK      (the original's reply to EXEC)
//   RAWSET {"run":"RUN","i":i}             -> OK
// Exactly the checks of the original's scripts: a reply must be "OK" (or an integer >= 0).
// Anything else prints a message on stderr and exits 1; success prints one summary line
// (run=RUN iterations=COUNT) and exits 0. Against a relayer that answers as Redis does
// (`+QUEUED`, EXEC's array), it fails at the first command inside MULTI.

declare(strict_types=1);

function fail(string $msg): void
{
    fwrite(STDERR, "original_stream: FAIL: $msg\n");
    exit(1);
}

/** Sends one command as a RESP array of bulk strings and reads its reply as phpiredis gave it. */
function command($conn, array $args)
{
    $out = '*' . count($args) . "\r\n";
    foreach ($args as $a) {
        $a = (string)$a;
        $out .= '$' . strlen($a) . "\r\n" . $a . "\r\n";
    }
    if (fwrite($conn, $out) !== strlen($out)) {
        fail('write failed');
    }
    return reply($conn);
}

function reply($conn)
{
    $line = fgets($conn);
    if ($line === false) {
        fail('connection closed');
    }
    $line = substr($line, 0, -2);
    $rest = substr($line, 1);
    switch ($line[0]) {
        case '+':
            return $rest;
        case '-':
            return ['error' => $rest];
        case ':':
            return (int)$rest;
        case '$':
            return (int)$rest < 0 ? null : substr(fread($conn, (int)$rest + 2), 0, -2);
        case '*':
            $items = [];
            for ($i = 0; $i < (int)$rest; $i++) {
                $items[] = reply($conn);
            }
            return $items;
    }
    fail("not RESP: $line");
}

function ok($reply): bool
{
    return $reply === 'OK' || (is_int($reply) && $reply >= 0);
}

if ($argc < 3 || $argc > 4) {
    fwrite(STDERR, "usage: php original_stream.php HOST PORT [COUNT] (PORT 0: HOST is a unix socket path)\n");
    exit(2);
}
[$host, $port] = [$argv[1], (int)$argv[2]];
$count = $argc === 4 ? (int)$argv[3] : 20;
$run = getmypid() . bin2hex(random_bytes(4));
$address = $port === 0 ? "unix://$host" : "tcp://$host:$port";

for ($i = 0; $i < $count; $i++) {
    $conn = stream_socket_client($address, $errno, $errstr, 5);
    if ($conn === false) {
        fail("connect $address: $errstr");
    }
    $pong = command($conn, ['PING']);
    if ($pong !== 'PONG' && $pong !== 'OK') {
        fail("PING: " . var_export($pong, true));
    }
    $sent = [['MULTI'], ['SET', "or:$run:$i", "v$i"]];
    for ($j = 0; $j < 5; $j++) {
        $sent[] = ['SADD', "or:$run:list:$i", str_repeat(chr(97 + $j), 10)];
    }
    for ($j = 0; $j < 5; $j++) {
        $sent[] = ['HMSET', "or:$run:dict:$i", "f$j", str_repeat(chr(65 + $j), 10)];
    }
    $sent[] = ['EXEC'];
    $sent[] = ['RAWSET', json_encode(['run' => $run, 'i' => $i])];
    foreach ($sent as $cmd) {
        $got = command($conn, $cmd);
        if (!ok($got)) {
            fail("iteration $i: " . implode(' ', $cmd) . ' answered ' . var_export($got, true));
        }
    }
    fclose($conn);
}
echo "original_stream: OK run=$run iterations=$count\n";
