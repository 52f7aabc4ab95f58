// SPDX-License-Identifier: MIT OR Apache-2.0
//! A tiny TAP harness for test binaries that run in the bus1 guest, where the
//! runner (scripts/results.py) counts top-level `ok N - name` / `not ok N -
//! name` lines. Included with `#[path]` by test targets built with
//! `harness = false`. Arguments: substrings that select tests (any matches);
//! `--list` prints the names.
#![allow(dead_code)]

use std::any::Any;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};

/// A test: name and function. A test fails by panicking (assert!) and is
/// skipped by calling [`skip`].
pub type Test = (&'static str, fn());

struct Skip(String);

/// Skips the current test with a reason (reported as `# SKIP reason`).
pub fn skip(reason: &str) -> ! {
    panic::resume_unwind(Box::new(Skip(reason.to_string())))
}

fn describe(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

/// Runs the selected tests, prints TAP, exits 0 iff none failed.
pub fn main(tests: &[Test]) -> ! {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--") || a == "--list").collect();
    if args.iter().any(|a| a == "--list") {
        for (n, _) in tests {
            println!("{n}: test");
        }
        std::process::exit(0);
    }
    let sel: Vec<&Test> =
        tests.iter().filter(|(n, _)| args.is_empty() || args.iter().any(|a| n.contains(a.as_str()))).collect();
    // Panic messages go to stderr with a TAP comment prefix.
    panic::set_hook(Box::new(|info| {
        if info.payload().downcast_ref::<Skip>().is_some() {
            return;
        }
        let loc = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("# panicked at {loc}: {}", describe(info.payload()));
    }));
    println!("TAP version 13");
    println!("1..{}", sel.len());
    let (mut failed, mut skipped) = (0, 0);
    for (i, (name, f)) in sel.iter().enumerate() {
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        let _ = std::io::stderr().flush();
        match r {
            Ok(()) => println!("ok {} - {name}", i + 1),
            Err(p) => match p.downcast_ref::<Skip>() {
                Some(Skip(why)) => {
                    skipped += 1;
                    println!("ok {} - {name} # SKIP {why}", i + 1)
                }
                None => {
                    failed += 1;
                    println!("not ok {} - {name}", i + 1);
                }
            },
        }
        let _ = std::io::stdout().flush();
    }
    println!("# {} passed, {failed} failed, {skipped} skipped", sel.len() - failed - skipped);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
