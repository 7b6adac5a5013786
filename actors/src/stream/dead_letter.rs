//! The dead-letter file: lines that could not be delivered, appended exactly as they would have
//! been sent. Writes block, so they run off the batcher's thread (`spawn_blocking`); one lock
//! for the whole process makes them one writer: the writes of two batchers (two workers, or
//! the old and new batcher of a reload) never interleave, whatever the file.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

static WRITER: Mutex<()> = Mutex::new(());

/// Appends `records` (each newline-terminated lines) to the file at `path`, created if needed.
pub fn append(path: &Path, records: &[Vec<u8>]) -> std::io::Result<()> {
    let _one_writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let start = f.metadata()?.len();
    let written = records
        .iter()
        .try_for_each(|r| f.write_all(r))
        .and_then(|()| f.flush());
    if written.is_err() {
        // No half line left behind (a full disk), for the next append to run into: these
        // records are counted lost as a whole.
        let _ = f.set_len(start);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_appends_keep_lines_whole() {
        let dir = std::env::temp_dir().join(format!("dead-letter-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl");
        let _ = std::fs::remove_file(&path);
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let line: Vec<u8> = std::iter::repeat_n(b'a' + t, 100_000).chain([b'\n']).collect();
                        append(&path, &[line.clone(), line]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let data = std::fs::read(&path).unwrap();
        let lines: Vec<&[u8]> = data[..data.len() - 1].split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 8 * 20 * 2);
        for l in lines {
            assert_eq!(l.len(), 100_000);
            assert!(l.iter().all(|&b| b == l[0]), "a line mixes two writers");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
