//! A stored chunk (any encoding byte, any header, any bodies; encoding 4's flags, elided ids and
//! LZ4 block too) must decode or be refused with a reason, never panic; a decoded chunk whose
//! events are one loan's hash chain (what encoding 4 elides, and what `upgrade` checks before
//! re-encoding an old chunk) re-encodes (as encoding 4) to one that decodes to the same events
//! and names the same head. Old encodings 1–2 hold any events, chained or not.
#![no_main]
use arrears_store::chunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let head = chunk::header(data);
    let _ = chunk::events_len(data);
    if let Ok(events) = chunk::decode(data) {
        let chained = events.windows(2).all(|w| {
            w[1].loan_id == w[0].loan_id && w[1].prev_hash == w[0].hash
        });
        if !events.is_empty() && chained {
            let bytes = chunk::encode(&events);
            assert_eq!(chunk::decode(&bytes).expect("re-encoded"), events);
            let last = chunk::head_of(events.last().expect("not empty"));
            assert_eq!(chunk::header(&bytes), Ok(Some(last)));
            if let Ok(Some(h)) = head {
                assert_eq!(h, last, "a decoded chunk's header is its last event's");
            }
        }
    }
});
