//! Identity documents presented at the front desk.
//!
//! - Chinese resident identity card (GB 11643-1999): six digits of region,
//!   eight of birth date, three of sequence (odd for men), and a check
//!   character by ISO 7064 MOD 11-2. A lower-case `x` is accepted and written
//!   upper-case. Legacy 15-digit cards (two-digit year, no check character)
//!   are converted to 18 characters.
//! - Residence permits for people from Hong Kong (81), Macau (82) and Taiwan
//!   (83): the same layout, told apart by their region code.
//! - Korean resident registration number: `YYMMDD-GNNNNNC`, where G gives the
//!   century and sex. Numbers issued from October 2020 carry a random last
//!   digit, so a check digit that does not match is reported, not refused.
//! - Any other document, with a birth date typed by hand, marked as such.
//!
//! Validation is a pure function of the text and today's date (to refuse a
//! birth date in the future).

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// Which document was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// Chinese resident identity card.
    CnResidentId,
    /// Residence permit for Hong Kong, Macau and Taiwan residents.
    CnResidencePermit,
    /// Korean resident registration number.
    KrResidentRegistration,
    /// Any other document (passport, driving licence), birth date typed by hand.
    Other,
}

impl DocumentKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::CnResidentId => "cn_resident_id",
            DocumentKind::CnResidencePermit => "cn_residence_permit",
            DocumentKind::KrResidentRegistration => "kr_resident_registration",
            DocumentKind::Other => "other",
        }
    }
}

/// Sex as the document encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Male.
    Male,
    /// Female.
    Female,
    /// The document does not say (a hand-entered document).
    Unknown,
}

/// Where the birth date came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BirthDateSource {
    /// Read from the document number itself.
    Document,
    /// Typed by staff from a document whose number does not encode it.
    EnteredByHand,
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Which document.
    pub kind: DocumentKind,
    /// The normalised number: 18 characters with an upper-case `X` for
    /// Chinese cards, `YYMMDD-GNNNNNC` for Korean numbers.
    pub number: String,
    /// Birth date.
    pub birth_date: Date,
    /// Sex.
    pub sex: Sex,
    /// Where the birth date came from.
    pub birth_date_source: BirthDateSource,
    /// True when a legacy 15-digit card was converted to 18 characters.
    pub converted_from_legacy: bool,
    /// For Korean numbers: whether the last digit matches the check formula
    /// (numbers issued from October 2020 need not). `None` elsewhere.
    pub check_digit_matches: Option<bool>,
}

/// Why a document number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing was entered.
    #[error("the number is empty")]
    Empty,
    /// Wrong number of characters.
    #[error("the number has {found} characters, {expected} expected")]
    Length {
        /// The lengths accepted.
        expected: &'static str,
        /// The length found.
        found: usize,
    },
    /// A character not allowed at its position.
    #[error("character {found:?} at position {position} is not allowed there")]
    Character {
        /// Position, counted from 1.
        position: usize,
        /// The character.
        found: char,
    },
    /// The region code's province is unknown.
    #[error("region code {code} does not start with a valid province code")]
    Region {
        /// The six-digit region code.
        code: String,
    },
    /// The birth date does not exist.
    #[error("birth date {text} does not exist")]
    DateImpossible {
        /// The digits as found.
        text: String,
    },
    /// The birth date is after today.
    #[error("birth date {date} is in the future")]
    DateFuture {
        /// The date.
        date: Date,
    },
    /// The check character does not match.
    #[error("check character is {found:?}, {expected:?} expected")]
    CheckCharacter {
        /// What the other characters give.
        expected: char,
        /// What was entered.
        found: char,
    },
}

impl IdError {
    /// A short, stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            IdError::Empty => "empty",
            IdError::Length { .. } => "length",
            IdError::Character { .. } => "character",
            IdError::Region { .. } => "region",
            IdError::DateImpossible { .. } => "date_impossible",
            IdError::DateFuture { .. } => "date_future",
            IdError::CheckCharacter { .. } => "check_character",
        }
    }
}

/// Which numbering scheme to validate against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentType {
    /// Chinese identity card or residence permit.
    CnId,
    /// Korean resident registration number.
    KrRrn,
}

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DocumentType::CnId => "cn_id",
            DocumentType::KrRrn => "kr_rrn",
        })
    }
}

/// Validates `input` as a document of `doc_type`; surrounding white space is
/// ignored, as is a hyphen in a Korean number.
pub fn validate(doc_type: DocumentType, input: &str, today: Date) -> Result<Document, IdError> {
    match doc_type {
        DocumentType::CnId => validate_cn(input, today),
        DocumentType::KrRrn => validate_kr(input, today),
    }
}

const CN_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CN_CHECK: &[u8; 11] = b"10X98765432";

/// Province-level codes (the first two digits of a region code), including
/// 81, 82 and 83 for the residence permits of Hong Kong, Macau and Taiwan
/// residents.
const CN_PROVINCES: [u8; 35] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
    83,
];

pub(crate) fn cn_province_known(code: u8) -> bool {
    CN_PROVINCES.contains(&code)
}

/// The check character (ISO 7064 MOD 11-2) that ends a Chinese ID number
/// beginning with these 17 digits; None unless they are 17 ASCII digits.
pub fn cn_check_for(first_17: &str) -> Option<char> {
    let digits = first_17.as_bytes();
    (digits.len() == 17 && digits.iter().all(u8::is_ascii_digit)).then(|| cn_check_character(digits))
}

/// The ISO 7064 MOD 11-2 check character of the first 17 digits.
fn cn_check_character(digits: &[u8]) -> char {
    let sum: u32 = digits.iter().zip(CN_WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    char::from(CN_CHECK[(sum % 11) as usize])
}

fn birth_date(year: &[u8], month: &[u8], day: &[u8], today: Date) -> Result<Date, IdError> {
    let number = |digits: &[u8]| digits.iter().fold(0i32, |n, d| n * 10 + i32::from(d - b'0'));
    let text = || format!("{}-{}-{}", ascii(year), ascii(month), ascii(day));
    let (y, m, d) = (number(year), number(month), number(day));
    let date = match (i16::try_from(y), i8::try_from(m), i8::try_from(d)) {
        (Ok(y), Ok(m), Ok(d)) => Date::new(y, m, d).map_err(|_| IdError::DateImpossible { text: text() })?,
        _ => return Err(IdError::DateImpossible { text: text() }),
    };
    if y < 1800 {
        return Err(IdError::DateImpossible { text: text() });
    }
    if date > today {
        return Err(IdError::DateFuture { date });
    }
    Ok(date)
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn first_non_digit(chars: &[char], range: std::ops::Range<usize>) -> Option<(usize, char)> {
    range.into_iter().find(|&i| !chars[i].is_ascii_digit()).map(|i| (i + 1, chars[i]))
}

/// Validates a Chinese identity card or residence permit number, 18 or
/// (legacy) 15 characters.
pub fn validate_cn(input: &str, today: Date) -> Result<Document, IdError> {
    let chars: Vec<char> = input.trim().chars().collect();
    if chars.is_empty() {
        return Err(IdError::Empty);
    }
    match chars.len() {
        18 => {
            if let Some((position, found)) = first_non_digit(&chars, 0..17) {
                return Err(IdError::Character { position, found });
            }
            let last = chars[17].to_ascii_uppercase();
            if !(last.is_ascii_digit() || last == 'X') {
                return Err(IdError::Character { position: 18, found: chars[17] });
            }
            let digits: Vec<u8> = chars[..17].iter().map(|&c| c as u8).collect();
            let document = cn_fields(&digits, today, false)?;
            let expected = cn_check_character(&digits);
            if last != expected {
                return Err(IdError::CheckCharacter { expected, found: chars[17] });
            }
            Ok(document)
        }
        15 => {
            if let Some((position, found)) = first_non_digit(&chars, 0..15) {
                return Err(IdError::Character { position, found });
            }
            // Legacy cards write the year in two digits, all in the 1900s.
            let mut digits: Vec<u8> = chars[..6].iter().map(|&c| c as u8).collect();
            digits.extend_from_slice(b"19");
            digits.extend(chars[6..15].iter().map(|&c| c as u8));
            cn_fields(&digits, today, true)
        }
        found => Err(IdError::Length { expected: "18 (or 15 for a legacy card)", found }),
    }
}

/// Reads region, date and sex from the first 17 digits and writes the
/// normalised number.
fn cn_fields(digits: &[u8], today: Date, legacy: bool) -> Result<Document, IdError> {
    let province = (digits[0] - b'0') * 10 + (digits[1] - b'0');
    if !cn_province_known(province) {
        return Err(IdError::Region { code: ascii(&digits[..6]) });
    }
    let birth_date = birth_date(&digits[6..10], &digits[10..12], &digits[12..14], today)?;
    let sex = if (digits[16] - b'0') % 2 == 1 { Sex::Male } else { Sex::Female };
    let kind = if (81..=83).contains(&province) { DocumentKind::CnResidencePermit } else { DocumentKind::CnResidentId };
    let mut number = ascii(digits);
    number.push(cn_check_character(digits));
    Ok(Document {
        kind,
        number,
        birth_date,
        sex,
        birth_date_source: BirthDateSource::Document,
        converted_from_legacy: legacy,
        check_digit_matches: None,
    })
}

const KR_WEIGHTS: [u32; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];

/// Validates a Korean resident registration number, with or without the
/// hyphen after the sixth digit.
pub fn validate_kr(input: &str, today: Date) -> Result<Document, IdError> {
    let chars: Vec<char> = input.trim().chars().collect();
    if chars.is_empty() {
        return Err(IdError::Empty);
    }
    let digits: Vec<char> = match chars.len() {
        14 if chars[6] == '-' => chars[..6].iter().chain(&chars[7..]).copied().collect(),
        14 => {
            return Err(IdError::Character { position: 7, found: chars[6] });
        }
        13 => chars.clone(),
        found => {
            return Err(IdError::Length { expected: "13 digits (14 with the hyphen)", found });
        }
    };
    let hyphenated = chars.len() == 14;
    if let Some((index, found)) = digits.iter().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        let position = if hyphenated && index >= 6 { index + 2 } else { index + 1 };
        return Err(IdError::Character { position, found: *found });
    }
    let digits: Vec<u8> = digits.iter().map(|&c| c as u8 - b'0').collect();
    let g = digits[6];
    let century: &[u8] = match g {
        9 | 0 => b"18",
        1 | 2 | 5 | 6 => b"19",
        _ => b"20",
    };
    let ascii_digits: Vec<u8> = digits.iter().map(|d| d + b'0').collect();
    let mut year = century.to_vec();
    year.extend_from_slice(&ascii_digits[0..2]);
    let birth_date = birth_date(&year, &ascii_digits[2..4], &ascii_digits[4..6], today)?;
    let sex = if g % 2 == 1 { Sex::Male } else { Sex::Female };
    let sum: u32 = digits[..12].iter().zip(KR_WEIGHTS).map(|(&d, w)| u32::from(d) * w).sum();
    let check = ((11 - sum % 11) % 10) as u8;
    let mut number = ascii(&ascii_digits[..6]);
    number.push('-');
    number.push_str(&ascii(&ascii_digits[6..]));
    Ok(Document {
        kind: DocumentKind::KrResidentRegistration,
        number,
        birth_date,
        sex,
        birth_date_source: BirthDateSource::Document,
        converted_from_legacy: false,
        check_digit_matches: Some(check == digits[12]),
    })
}

/// Records a document whose number does not encode the birth date (a
/// passport, for instance): the number is kept as typed (trimmed), the birth
/// date is what staff entered, and the record says so.
pub fn other_document(number: &str, birth_date: Date, today: Date) -> Result<Document, IdError> {
    let number = number.trim();
    if number.is_empty() {
        return Err(IdError::Empty);
    }
    let found = number.chars().count();
    if found > 32 {
        return Err(IdError::Length { expected: "1 to 32", found });
    }
    if let Some((index, found)) = number.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-')) {
        return Err(IdError::Character { position: index + 1, found });
    }
    if birth_date > today {
        return Err(IdError::DateFuture { date: birth_date });
    }
    Ok(Document {
        kind: DocumentKind::Other,
        number: number.to_ascii_uppercase(),
        birth_date,
        sex: Sex::Unknown,
        birth_date_source: BirthDateSource::EnteredByHand,
        converted_from_legacy: false,
        check_digit_matches: None,
    })
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    const TODAY: Date = date(2026, 11, 22);

    /// Completes 17 digits with their check character.
    fn cn(first17: &str) -> String {
        let digits: Vec<u8> = first17.bytes().collect();
        format!("{first17}{}", cn_check_character(&digits))
    }

    #[test]
    fn check_character_matches_the_standard_example() {
        // The worked example of GB 11643-1999, appendix A.
        assert_eq!(cn_check_character(b"11010519491231002"), 'X');
        assert_eq!(cn_check_for("11010519491231002"), Some('X'));
        assert_eq!(cn_check_for("1101051949123100"), None, "16 digits");
        assert_eq!(cn_check_for("1101051949123100X"), None, "not all digits");
        let document = validate_cn("11010519491231002X", TODAY).unwrap();
        assert_eq!(document.number, "11010519491231002X");
        assert_eq!(document.birth_date, date(1949, 12, 31));
        assert_eq!(document.sex, Sex::Female);
        assert_eq!(document.kind, DocumentKind::CnResidentId);
        assert!(!document.converted_from_legacy);
        assert_eq!(cn_check_character(b"44052418800101001"), '4');
    }

    #[test]
    fn lower_case_x_and_spaces_are_normalised() {
        let document = validate_cn("  11010519491231002x\n", TODAY).unwrap();
        assert_eq!(document.number, "11010519491231002X");
    }

    #[test]
    fn legacy_fifteen_digit_cards_convert() {
        // 110105 491231 002 → 110105 19491231 002 X
        let document = validate_cn("110105491231002", TODAY).unwrap();
        assert_eq!(document.number, "11010519491231002X");
        assert_eq!(document.birth_date, date(1949, 12, 31));
        assert!(document.converted_from_legacy);
        assert_eq!(document.sex, Sex::Female);
        let document = validate_cn("310104880229011", TODAY).unwrap();
        assert_eq!(document.number, cn("31010419880229011"));
        assert_eq!(document.sex, Sex::Male);
        assert_eq!(validate_cn("310104890229011", TODAY).unwrap_err(), IdError::DateImpossible { text: "1989-02-29".into() });
    }

    #[test]
    fn residence_permits() {
        for (code, _) in [("810000", "Hong Kong"), ("820000", "Macau"), ("830000", "Taiwan")] {
            let number = cn(&format!("{code}19900101001"));
            let document = validate_cn(&number, TODAY).unwrap();
            assert_eq!(document.kind, DocumentKind::CnResidencePermit, "{number}");
        }
    }

    #[test]
    fn each_invalid_reason() {
        let good = cn("31010420080115123");
        let mut wrong_check = good.clone();
        let last = wrong_check.pop().unwrap();
        let other = if last == '0' { '1' } else { '0' };
        wrong_check.push(other);
        let cases: Vec<(String, IdError)> = vec![
            ("".into(), IdError::Empty),
            ("   ".into(), IdError::Empty),
            ("3101042008011512".into(), IdError::Length { expected: "18 (or 15 for a legacy card)", found: 16 }),
            (format!("{good}1"), IdError::Length { expected: "18 (or 15 for a legacy card)", found: 19 }),
            ("3101042008O115123X".into(), IdError::Character { position: 11, found: 'O' }),
            ("31010420080115123Y".into(), IdError::Character { position: 18, found: 'Y' }),
            ("31010420080115123４".into(), IdError::Character { position: 18, found: '４' }),
            ("X10104200801151234".into(), IdError::Character { position: 1, found: 'X' }),
            ("31010408011512Z".into(), IdError::Character { position: 15, found: 'Z' }),
            (cn("99010420080115123"), IdError::Region { code: "990104".into() }),
            (cn("00010420080115123"), IdError::Region { code: "000104".into() }),
            (cn("91010420080115123"), IdError::Region { code: "910104".into() }),
            (cn("31010420080231123"), IdError::DateImpossible { text: "2008-02-31".into() }),
            (cn("31010420081301123"), IdError::DateImpossible { text: "2008-13-01".into() }),
            (cn("31010420080000123"), IdError::DateImpossible { text: "2008-00-00".into() }),
            (cn("31010417991231123"), IdError::DateImpossible { text: "1799-12-31".into() }),
            (cn("31010420261123123"), IdError::DateFuture { date: date(2026, 11, 23) }),
            (wrong_check, IdError::CheckCharacter { expected: last, found: other }),
        ];
        for (input, expected) in cases {
            assert_eq!(validate_cn(&input, TODAY), Err(expected), "input {input:?}");
        }
        // Born today is fine.
        assert!(validate_cn(&cn("31010420261122123"), TODAY).is_ok());
        // Every province in the table is accepted.
        for province in CN_PROVINCES {
            assert!(validate_cn(&cn(&format!("{province:02}010420080115123")), TODAY).is_ok(), "{province}");
        }
    }

    #[test]
    fn error_codes_are_distinct() {
        let errors = [
            IdError::Empty,
            IdError::Length { expected: "", found: 0 },
            IdError::Character { position: 1, found: 'a' },
            IdError::Region { code: String::new() },
            IdError::DateImpossible { text: String::new() },
            IdError::DateFuture { date: TODAY },
            IdError::CheckCharacter { expected: '1', found: '2' },
        ];
        let mut codes: Vec<&str> = errors.iter().map(IdError::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }

    /// A number with a valid check digit, for a given first 12 digits.
    fn kr(first12: &str) -> String {
        let digits: Vec<u32> = first12.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = digits.iter().zip(KR_WEIGHTS).map(|(d, w)| d * w).sum();
        format!("{}-{}{}", &first12[..6], &first12[6..], (11 - sum % 11) % 10)
    }

    #[test]
    fn korean_numbers() {
        let cases = [
            ("900101100000", date(1990, 1, 1), Sex::Male),
            ("900101200000", date(1990, 1, 1), Sex::Female),
            ("080315300000", date(2008, 3, 15), Sex::Male),
            ("080315400000", date(2008, 3, 15), Sex::Female),
            ("850704500000", date(1985, 7, 4), Sex::Male),
            ("850704600000", date(1985, 7, 4), Sex::Female),
            ("100101700000", date(2010, 1, 1), Sex::Male),
            ("100101800000", date(2010, 1, 1), Sex::Female),
            ("991231900000", date(1899, 12, 31), Sex::Male),
            ("991231000000", date(1899, 12, 31), Sex::Female),
        ];
        for (first12, birth_date, sex) in cases {
            let number = kr(first12);
            let document = validate_kr(&number, TODAY).unwrap();
            assert_eq!((document.birth_date, document.sex), (birth_date, sex), "{number}");
            assert_eq!(document.check_digit_matches, Some(true));
            assert_eq!(document.number, number);
            // Without the hyphen it normalises to the same number.
            assert_eq!(validate_kr(&number.replace('-', ""), TODAY).unwrap().number, number);
        }
    }

    #[test]
    fn korean_check_digit_mismatch_is_reported_not_refused() {
        // Numbers issued from October 2020 end in a random digit.
        let number = kr("200101300000");
        let last = number.chars().last().unwrap().to_digit(10).unwrap();
        let changed = format!("{}{}", &number[..13], (last + 1) % 10);
        let document = validate_kr(&changed, TODAY).unwrap();
        assert_eq!(document.check_digit_matches, Some(false));
        assert_eq!(document.birth_date, date(2020, 1, 1));
    }

    #[test]
    fn korean_invalid_reasons() {
        let cases = [
            ("", IdError::Empty),
            // Thirteen characters are read as thirteen digits, so a hyphen
            // with a digit missing is refused for the hyphen.
            ("900101-123456", IdError::Character { position: 7, found: '-' }),
            ("900101 1234567", IdError::Character { position: 7, found: ' ' }),
            ("900101-12a4567", IdError::Character { position: 10, found: 'a' }),
            ("90a1011234567", IdError::Character { position: 3, found: 'a' }),
            ("900230-1234567", IdError::DateImpossible { text: "1990-02-30".into() }),
            ("271231-3234567", IdError::DateFuture { date: date(2027, 12, 31) }),
        ];
        for (input, expected) in cases {
            assert_eq!(validate_kr(input, TODAY), Err(expected), "input {input:?}");
        }
        assert_eq!(validate_kr("900101-12345", TODAY), Err(IdError::Length { expected: "13 digits (14 with the hyphen)", found: 12 }));
    }

    #[test]
    fn other_documents_are_marked_hand_entered() {
        let document = other_document(" e1234567 ", date(2001, 5, 6), TODAY).unwrap();
        assert_eq!(document.kind, DocumentKind::Other);
        assert_eq!(document.number, "E1234567");
        assert_eq!(document.birth_date_source, BirthDateSource::EnteredByHand);
        assert_eq!(document.sex, Sex::Unknown);
        assert_eq!(other_document("", date(2001, 5, 6), TODAY), Err(IdError::Empty));
        assert_eq!(other_document("E12/4", date(2001, 5, 6), TODAY), Err(IdError::Character { position: 4, found: '/' }));
        assert_eq!(other_document("E1", date(2027, 1, 1), TODAY), Err(IdError::DateFuture { date: date(2027, 1, 1) }));
    }

    #[test]
    fn never_panics_on_mutations() {
        let seeds = [cn("31010420080115123"), "110105491231002".to_owned(), kr("900101100000")];
        let alphabet = ['0', '9', 'x', 'X', '-', ' ', 'é', '\u{0}', '４', '/'];
        for seed in &seeds {
            let chars: Vec<char> = seed.chars().collect();
            for i in 0..=chars.len() {
                for &c in &alphabet {
                    let mut replaced = chars.clone();
                    if i < chars.len() {
                        replaced[i] = c;
                    }
                    let mut inserted = chars.clone();
                    inserted.insert(i, c);
                    let truncated: String = chars[..i].iter().collect();
                    for text in [replaced.iter().collect::<String>(), inserted.iter().collect(), truncated] {
                        for doc_type in [DocumentType::CnId, DocumentType::KrRrn] {
                            let _ = validate(doc_type, &text, TODAY);
                        }
                    }
                }
            }
        }
    }
}
