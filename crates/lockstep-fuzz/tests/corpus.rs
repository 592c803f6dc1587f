//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the
//! fuzz entry points, so every test run covers what fuzzing found.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    let dir = PathBuf::from(manifest_dir)
        .join("../../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("corpus {}: {err}", dir.display()))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus for {target}");
    inputs
}

#[test]
fn resp_frames_corpus() {
    corpus("resp_frames")
        .iter()
        .for_each(|input| lockstep_fuzz::resp_frames(input));
}

#[test]
fn commands_corpus() {
    corpus("commands")
        .iter()
        .for_each(|input| lockstep_fuzz::commands(input));
}

#[test]
fn scripts_corpus() {
    corpus("scripts")
        .iter()
        .for_each(|input| lockstep_fuzz::scripts(input));
}

#[test]
fn peer_frames_corpus() {
    corpus("peer_frames")
        .iter()
        .for_each(|input| lockstep_fuzz::peer_frames(input));
}

#[test]
fn stored_records_corpus() {
    corpus("stored_records")
        .iter()
        .for_each(|input| lockstep_fuzz::stored_records(input));
}

#[test]
fn znode_commands_corpus() {
    corpus("znode_commands")
        .iter()
        .for_each(|input| lockstep_fuzz::znode_commands(input));
}

#[test]
fn stored_znodes_corpus() {
    corpus("stored_znodes")
        .iter()
        .for_each(|input| lockstep_fuzz::stored_znodes(input));
}
