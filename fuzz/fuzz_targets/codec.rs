//! The binary event codec reads bytes from disk: any bytes must decode or be refused, never
//! panic; whatever decodes must encode back to the same bytes' meaning (decode ∘ encode = id);
//! and the hand-written reader must agree with postcard's own deserializer on every input, read
//! whole or in the pieces a compact chunk keeps.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ours = arrears_core::codec::decode(data);
    assert_eq!(
        ours.as_ref().ok(),
        arrears_core::codec::decode_with_postcard(data)
            .as_ref()
            .ok()
    );
    // Cut where a compact chunk cuts an event (id, loan, middle, previous hash, hash): whatever
    // `decode_split` reads is what `decode` reads from the joined bytes.
    if let Some((id, rest)) = data.split_first_chunk::<16>() {
        if let Some((loan, rest)) = rest.split_first_chunk::<16>() {
            if let Some((rest, hash)) = rest.split_last_chunk::<32>() {
                if let Some((middle, prev)) = rest.split_last_chunk::<32>() {
                    if let Ok(ev) = arrears_core::codec::decode_split(id, loan, middle, prev, hash)
                    {
                        assert_eq!(Some(&ev), ours.as_ref().ok());
                    }
                }
            }
        }
    }
    if let Ok(ev) = ours {
        let again = arrears_core::codec::decode(&arrears_core::codec::encode(&ev))
            .expect("an encoded event decodes");
        assert_eq!(again, ev);
    }
});
