//! The binary event codec reads bytes from disk: any bytes must decode or be refused, never
//! panic; whatever decodes must encode back to the same bytes' meaning (decode ∘ encode = id).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = arrears_core::codec::decode(data) {
        let again = arrears_core::codec::decode(&arrears_core::codec::encode(&ev))
            .expect("an encoded event decodes");
        assert_eq!(again, ev);
    }
});
