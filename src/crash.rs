//! Crash points: places where the tests that kill the engine mid-work make it die, so that
//! each kill provably lands inside the work (not before or after it).
//!
//! Compiled only with the `crash-points` cargo feature, which only the tests turn on (through
//! the dev-dependency on this crate); in a default build [`point`] is an empty function and
//! no environment variable is read.
//!
//! `LIGHTBOX_CRASH_AT` lists `NAME[:HOW][@PART]` items, comma-separated: at the point `NAME`,
//! for a subject (an execution ARN, a task token…) containing `PART`, the process dies by
//! `HOW`: `abort` (the default), `oom` (allocates until memory runs out: run it under a
//! memory cap) or `stack` (overflows its stack); or, to order two processes, `wait`: it holds
//! still there until the file `<LIGHTBOX_CRASH_NOTE>.go` exists. Before dying it appends `NAME SUBJECT` to the
//! file `LIGHTBOX_CRASH_NOTE` names, if any, so a test can see where it died.

/// A crash point named `name`, reached while working on `subject`.
#[cfg(feature = "crash-points")]
pub fn point(name: &str, subject: &str) {
    let Ok(spec) = std::env::var("LIGHTBOX_CRASH_AT") else { return };
    for item in spec.split(',') {
        let (head, part) = item.split_once('@').unwrap_or((item, ""));
        let (point, how) = head.split_once(':').unwrap_or((head, "abort"));
        if point != name || !subject.contains(part) {
            continue;
        }
        if let Ok(note) = std::env::var("LIGHTBOX_CRASH_NOTE") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(note) {
                let _ = writeln!(f, "{name} {subject}");
                let _ = f.sync_all();
            }
        }
        match how {
            // Not a crash: hold still here until the test creates `<LIGHTBOX_CRASH_NOTE>.go`
            // (at most a minute), so that it can act at this exact point.
            "wait" => {
                let go = std::env::var("LIGHTBOX_CRASH_NOTE").map(|n| format!("{n}.go")).unwrap_or_default();
                let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !std::path::Path::new(&go).exists() && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                return;
            }
            "oom" => exhaust_memory(),
            "stack" => {
                std::hint::black_box(overflow_stack(1));
            }
            _ => std::process::abort(),
        }
    }
}

#[cfg(feature = "crash-points")]
fn exhaust_memory() -> ! {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page, so that the memory is really taken (the cap or the OOM killer ends it).
        held.push(vec![1u8; 64 << 20]);
        if held.len() > 1 << 20 {
            std::process::abort();
        }
    }
}

#[cfg(feature = "crash-points")]
#[allow(unconditional_recursion)]
fn overflow_stack(n: u64) -> u64 {
    let buf = std::hint::black_box([n; 512]);
    overflow_stack(buf[7].wrapping_add(1)).wrapping_add(buf[3])
}

/// A crash point named `name`: nothing, in a build without the `crash-points` feature.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str, _subject: &str) {}
