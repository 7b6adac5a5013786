//! `delay-link LISTEN_PORT TARGET_PORT DELAY_US`: forwards 127.0.0.1:LISTEN_PORT to
//! 127.0.0.1:TARGET_PORT, delaying the bytes of each direction by DELAY_US microseconds (see
//! `integration::link`). LISTEN_PORT 0 picks a free port. Prints `listening on PORT` once it
//! accepts, then runs until it is killed.

use integration::DelayLink;
use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let parse = |i: usize, what: &str| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: delay-link LISTEN_PORT TARGET_PORT DELAY_US (bad or missing {what})");
            std::process::exit(2)
        })
    };
    if args.len() != 4 {
        eprintln!("usage: delay-link LISTEN_PORT TARGET_PORT DELAY_US");
        std::process::exit(2);
    }
    let listen = parse(1, "LISTEN_PORT");
    let target = parse(2, "TARGET_PORT");
    let delay = parse(3, "DELAY_US");
    let (Ok(listen), Ok(target)) = (u16::try_from(listen), u16::try_from(target)) else {
        eprintln!("delay-link: ports must be below 65536");
        std::process::exit(2)
    };
    let link = match DelayLink::try_start_on(listen, target, Duration::from_micros(delay)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("delay-link: cannot listen on 127.0.0.1:{listen}: {e}");
            std::process::exit(1)
        }
    };
    println!("listening on {}", link.port());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
