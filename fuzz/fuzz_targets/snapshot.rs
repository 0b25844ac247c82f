//! Stored snapshot bytes — any bytes — are read, or refused with a reason (`SnapshotError`),
//! never a panic; a snapshot that reads is written back to bytes that read to the same
//! snapshot, and writing that again gives the same bytes (the reader's model is the writer).
#![no_main]
use arrears_projection::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Snapshot::read(data) {
        let bytes = s.encode();
        let again = Snapshot::read(&bytes).expect("a written snapshot reads");
        assert_eq!(again, s);
        assert_eq!(again.encode(), bytes);
    }
});
