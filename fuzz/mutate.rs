//! A small mutation fuzzer that runs inside `cargo test` on stable Rust:
//! it reads the seed inputs of a corpus directory (`fuzz/corpus/<target>`),
//! mutates them at random and hands each result to the target, for a
//! bounded number of cases. `TRIBUTARY_FUZZ_CASES` sets the number (CI
//! keeps it small so each target takes seconds), `TRIBUTARY_FUZZ_SEED`
//! replays a run; the seed is printed so a failure can be replayed.
//!
//! Included with `#[path]` by the fuzz tests of each crate.

use std::path::Path;

/// Cases run when `TRIBUTARY_FUZZ_CASES` is not set.
const DEFAULT_CASES: usize = 2_000;

/// Fragments that tend to reach edge cases of JSON and protobuf parsers.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\u0000",
    b"\\ud800",
    b"\0",
    b"\xff\xfe",
    b"null",
    b"-0",
    b"1e999",
    b"18446744073709551616",
    b"\"dependencies\": [\"a\"]",
    b"\"trigger_rule\": \"one_failed\"",
    b"\"retry_backoff\": \"exponential\"",
    b"\x0a\xff\xff\xff\xff\x0f",
    b"\x12\x00",
];

/// Reads every file of `fuzz/corpus/<target>` under the repository root.
pub fn corpus(repository_root: &Path, target: &str) -> Vec<Vec<u8>> {
    let directory = repository_root.join("fuzz/corpus").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", directory.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("seed file");
            (path.display().to_string(), bytes)
        })
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} has no seeds", directory.display());
    seeds.into_iter().map(|(_, bytes)| bytes).collect()
}

fn cases() -> usize {
    std::env::var("TRIBUTARY_FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs `target` on every seed, then on `TRIBUTARY_FUZZ_CASES` mutations.
pub fn fuzz(seeds: &[Vec<u8>], mut target: impl FnMut(&[u8])) {
    let seed = std::env::var("TRIBUTARY_FUZZ_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("fuzzing with TRIBUTARY_FUZZ_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    for input in seeds {
        target(input);
    }
    for _ in 0..cases() {
        let mut input = seeds[rng.usize(..seeds.len())].clone();
        for _ in 0..rng.usize(1..=4) {
            mutate(&mut rng, &mut input, seeds);
        }
        target(&input);
    }
}

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let at = |rng: &mut fastrand::Rng, input: &Vec<u8>| rng.usize(..=input.len());
    match rng.u8(..8) {
        0 if !input.is_empty() => {
            let index = rng.usize(..input.len());
            input[index] ^= 1 << rng.u8(..8);
        }
        1 => {
            let index = at(rng, input);
            input.insert(index, rng.u8(..));
        }
        2 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=16)).min(input.len());
            input.drain(start..end);
        }
        3 => {
            let token = TOKENS[rng.usize(..TOKENS.len())];
            let index = at(rng, input);
            input.splice(index..index, token.iter().copied());
        }
        4 if !input.is_empty() => {
            // Repeat a slice many times: long ids, deep nesting.
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=8)).min(input.len());
            let slice = input[start..end].to_vec();
            let times = rng.usize(1..=2_000);
            let repeated: Vec<u8> = slice
                .iter()
                .copied()
                .cycle()
                .take(slice.len() * times)
                .collect();
            input.splice(end..end, repeated);
        }
        5 => {
            // Splice in part of another seed.
            let other = &seeds[rng.usize(..seeds.len())];
            if !other.is_empty() {
                let start = rng.usize(..other.len());
                let end = rng.usize(start..=other.len());
                let index = at(rng, input);
                input.splice(index..index, other[start..end].iter().copied());
            }
        }
        6 if !input.is_empty() => {
            let cut = rng.usize(..input.len());
            input.truncate(cut);
        }
        _ => {
            let index = at(rng, input);
            let digit = b'0' + rng.u8(..10);
            input.insert(index, digit);
        }
    }
}
