//! Feeds arbitrary text to the front desk's document checks, as each
//! document type. They must never panic; what they accept must be accepted
//! again, unchanged, from its normalised number; and what a venue that keeps
//! no numbers records must be only a Korean number's first seven digits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbar_protocol::identity::{DocumentKind, DocumentType, validate};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else { return };
    let doc_type = [DocumentType::CnId, DocumentType::CnPermanentResidence, DocumentType::KrRrn][usize::from(selector) % 3];
    let text = String::from_utf8_lossy(text);
    let today = jiff::civil::date(2026, 12, 7);
    let Ok(document) = validate(doc_type, &text, today) else { return };
    let again = validate(doc_type, &document.number, today).expect("a normalised number validates");
    assert_eq!(again.birth_date, document.birth_date);
    assert_eq!((again.kind, &again.number, again.permanent_residence), (document.kind, &document.number, document.permanent_residence));
    let kept = document.keeping_birth_date_only();
    match document.kind {
        DocumentKind::KrResidentRegistration => assert_eq!(kept.number, document.number[..8]),
        _ => assert!(kept.number.is_empty()),
    }
});
