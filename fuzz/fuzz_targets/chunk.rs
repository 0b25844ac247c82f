//! A stored chunk (any encoding byte, any header, any bodies; encoding 4's flags, elided ids and
//! LZ4 block too) must decode or be refused with a reason, never panic; a decoded chunk
//! re-encodes (as encoding 4) to one that decodes to the same events and names the same head.
#![no_main]
use arrears_store::chunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let head = chunk::header(data);
    let _ = chunk::events_len(data);
    if let Ok(events) = chunk::decode(data) {
        if !events.is_empty() {
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
