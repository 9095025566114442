//! Feeds arbitrary bytes to the decoder. It must never panic, and whatever it
//! accepts must encode to a message it accepts again, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = netbar_protocol::decode(data) {
        let again = netbar_protocol::decode(netbar_protocol::encode(&envelope).as_bytes());
        assert_eq!(again.as_ref(), Ok(&envelope));
    }
});
