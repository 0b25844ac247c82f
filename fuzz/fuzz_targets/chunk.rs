//! A stored chunk (any encoding byte, any header, any bodies) must decode or be refused with a
//! reason, never panic; a decoded chunk re-encodes to one that decodes to the same events.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = arrears_store::chunk::header(data);
    if let Ok(events) = arrears_store::chunk::decode(data) {
        if !events.is_empty() {
            let bytes = arrears_store::chunk::encode(&events);
            assert_eq!(arrears_store::chunk::decode(&bytes).expect("re-encoded"), events);
        }
    }
});
