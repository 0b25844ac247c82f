//! The binary event codec reads bytes from disk: any bytes must decode or be refused, never
//! panic; whatever decodes must encode back to the same bytes' meaning (decode ∘ encode = id);
//! and the hand-written reader must agree with postcard's own deserializer on every input.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = arrears_core::codec::decode(data);
    assert_eq!(
        ours.as_ref().ok(),
        arrears_core::codec::decode_with_postcard(data).as_ref().ok()
    );
    if let Ok(ev) = ours {
        let again = arrears_core::codec::decode(&arrears_core::codec::encode(&ev))
            .expect("an encoded event decodes");
        assert_eq!(again, ev);
    }
});
