//! Identity documents presented at the front desk.
//!
//! - Chinese resident identity card (GB 11643-1999): six digits of region,
//!   eight of birth date, three of sequence (odd for men), and a check
//!   character by ISO 7064 MOD 11-2. A lower-case `x` is accepted and written
//!   upper-case. Legacy 15-digit cards (two-digit year, no check character)
//!   are converted to 18 characters.
//! - Residence permits for people from Hong Kong (81), Macau (82) and Taiwan
//!   (83): the same layout, told apart by their region code.
//! - Foreign permanent resident ID cards (外国人永久居留身份证). The 2023
//!   edition, issued from 1 December 2023, follows GB 11643: `9`, the
//!   accepting province (2 digits), the holder's nationality (ISO 3166-1
//!   numeric, 3 digits), the birth date YYYYMMDD, a 3-digit sequence whose
//!   last digit is odd for men (as open implementations and the published
//!   samples read it; the official table was not found), and the MOD 11-2
//!   check character. The 2017
//!   edition's 15 characters are the nationality's three letters (ISO 3166-1
//!   alpha-3), the province and city (4 digits), the birth date YYMMDD, a
//!   sequence digit and a check digit (ICAO 9303's 7-3-1 weights, as open
//!   implementations compute it; no official text of it was found, so a
//!   check digit that does not match is reported, not refused).
//! - Korean resident registration number: `YYMMDD-GNNNNNC`, where G gives the
//!   century and sex. Numbers issued from October 2020 carry a random last
//!   digit, so a check digit that does not match is reported, not refused.
//!   The first seven digits alone (`YYMMDD-G`) are accepted too: they are
//!   all a Korean venue may take (개인정보 보호법 제24조의2), see
//!   [`Document::keeping_birth_date_only`].
//! - Any other document, with a birth date typed by hand, marked as such.
//!
//! Validation is a pure function of the text and today's date (to refuse a
//! birth date in the future).

use std::fmt;

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::countries::{self, Country};

/// Which document was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// Chinese resident identity card.
    CnResidentId,
    /// Residence permit for Hong Kong, Macau and Taiwan residents.
    CnResidencePermit,
    /// Foreign permanent resident ID card (2023 or 2017 edition).
    CnPermanentResidence,
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
            DocumentKind::CnPermanentResidence => "cn_permanent_residence",
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

/// A province-level division of China (GB/T 2260), by the first two digits
/// of a region code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Province {
    /// The two digits.
    pub code: u8,
    /// Its name in Chinese.
    pub name_zh: &'static str,
    /// Its name in English.
    pub name_en: &'static str,
}

/// The province-level codes, including 81, 82 and 83 for the residence
/// permits of Hong Kong, Macau and Taiwan residents.
const PROVINCES: [Province; 35] = {
    const fn p(code: u8, name_zh: &'static str, name_en: &'static str) -> Province {
        Province { code, name_zh, name_en }
    }
    [
        p(11, "北京市", "Beijing"),
        p(12, "天津市", "Tianjin"),
        p(13, "河北省", "Hebei"),
        p(14, "山西省", "Shanxi"),
        p(15, "内蒙古自治区", "Inner Mongolia"),
        p(21, "辽宁省", "Liaoning"),
        p(22, "吉林省", "Jilin"),
        p(23, "黑龙江省", "Heilongjiang"),
        p(31, "上海市", "Shanghai"),
        p(32, "江苏省", "Jiangsu"),
        p(33, "浙江省", "Zhejiang"),
        p(34, "安徽省", "Anhui"),
        p(35, "福建省", "Fujian"),
        p(36, "江西省", "Jiangxi"),
        p(37, "山东省", "Shandong"),
        p(41, "河南省", "Henan"),
        p(42, "湖北省", "Hubei"),
        p(43, "湖南省", "Hunan"),
        p(44, "广东省", "Guangdong"),
        p(45, "广西壮族自治区", "Guangxi"),
        p(46, "海南省", "Hainan"),
        p(50, "重庆市", "Chongqing"),
        p(51, "四川省", "Sichuan"),
        p(52, "贵州省", "Guizhou"),
        p(53, "云南省", "Yunnan"),
        p(54, "西藏自治区", "Tibet"),
        p(61, "陕西省", "Shaanxi"),
        p(62, "甘肃省", "Gansu"),
        p(63, "青海省", "Qinghai"),
        p(64, "宁夏回族自治区", "Ningxia"),
        p(65, "新疆维吾尔自治区", "Xinjiang"),
        p(71, "台湾省", "Taiwan"),
        p(81, "香港特别行政区", "Hong Kong"),
        p(82, "澳门特别行政区", "Macau"),
        p(83, "台湾地区", "Taiwan"),
    ]
};

/// The province of a two-digit code.
pub fn province(code: u8) -> Option<&'static Province> {
    PROVINCES.iter().find(|province| province.code == code)
}

pub(crate) fn cn_province_known(code: u8) -> bool {
    province(code).is_some()
}

/// The provinces whose offices accept applications for permanent residence:
/// the mainland's (not 71, nor the permits' 81 to 83).
fn mainland_province(code: u8) -> Option<&'static Province> {
    province(code).filter(|province| province.code < 70)
}

/// Which edition of the permanent-residence card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Edition {
    /// 15 characters: three letters and twelve digits.
    #[serde(rename = "2017")]
    Edition2017,
    /// 18 characters after GB 11643, issued from 1 December 2023.
    #[serde(rename = "2023")]
    Edition2023,
}

/// What a permanent-residence card's number says of its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermanentResidence {
    /// The card's edition.
    pub edition: Edition,
    /// The holder's nationality.
    pub nationality: &'static Country,
    /// The province whose office accepted the application.
    pub province: &'static Province,
}

/// A validated document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Which document.
    pub kind: DocumentKind,
    /// The normalised number: 18 characters with an upper-case `X` for
    /// Chinese cards (15 upper-case characters for a 2017 permanent-residence
    /// card), `YYMMDD-GNNNNNC` (or only `YYMMDD-G`) for Korean numbers; empty
    /// when the number is not kept.
    pub number: String,
    /// Birth date.
    pub birth_date: Date,
    /// Sex.
    pub sex: Sex,
    /// Where the birth date came from.
    pub birth_date_source: BirthDateSource,
    /// True when a legacy 15-digit card was converted to 18 characters.
    pub converted_from_legacy: bool,
    /// For Korean numbers and 2017 permanent-residence cards: whether the
    /// last digit matches the check formula (Korean numbers issued from
    /// October 2020 need not). `None` elsewhere, and when only a Korean
    /// number's first seven digits were given.
    pub check_digit_matches: Option<bool>,
    /// For permanent-residence cards: nationality and province.
    pub permanent_residence: Option<PermanentResidence>,
}

impl Document {
    /// The document as a venue that may keep no document number records it
    /// (개인정보 보호법 제24조의2 for resident registration numbers; 제24조 and
    /// 제16조 for passports and every other identifier): a Korean number cut
    /// to the seven digits that carry the birth date and century
    /// (`YYMMDD-G`), any other number dropped. Kind, birth date and where it
    /// came from stay: they are what shows a document was checked.
    pub fn keeping_birth_date_only(&self) -> Document {
        let number = match self.kind {
            DocumentKind::KrResidentRegistration => self.number.chars().take(KR_KEPT).collect(),
            _ => String::new(),
        };
        self.with_number(number)
    }

    /// The document as any venue keeps it: a Korean resident registration
    /// number is never kept whole, under any policy (no internet café has a
    /// legal basis for one, 개인정보 보호법 제24조의2); every other number as
    /// it is.
    pub fn keeping_no_resident_number(&self) -> Document {
        match self.kind {
            DocumentKind::KrResidentRegistration => self.keeping_birth_date_only(),
            _ => self.with_number(self.number.clone()),
        }
    }

    /// The same document with another number, made without copying the
    /// number it had.
    fn with_number(&self, number: String) -> Document {
        let check_digit_matches = if number == self.number { self.check_digit_matches } else { None };
        Document {
            kind: self.kind,
            number,
            birth_date: self.birth_date,
            sex: self.sex,
            birth_date_source: self.birth_date_source,
            converted_from_legacy: self.converted_from_legacy,
            check_digit_matches,
            permanent_residence: self.permanent_residence,
        }
    }
}

/// How many characters of a Korean number a venue may keep: `YYMMDD-G`.
pub const KR_KEPT: usize = 8;

/// As much of a typed number as a venue that keeps no numbers may repeat
/// (in an answer, an error, a log line): its first seven characters, eight
/// when the seventh is the hyphen of `YYMMDD-G`.
pub fn repeatable_part(typed: &str) -> String {
    let typed = typed.trim();
    let hyphenated = typed.chars().nth(6) == Some('-');
    typed.chars().take(if hyphenated { KR_KEPT } else { KR_KEPT - 1 }).collect()
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
        /// The region code (six digits; the province's two or four on a
        /// permanent-residence card).
        code: String,
    },
    /// A permanent-residence card's nationality is no country.
    #[error("nationality code {code} is not a country of ISO 3166-1")]
    Nationality {
        /// The code as found.
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
            IdError::Nationality { .. } => "nationality",
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
    /// Chinese identity card, residence permit or permanent-residence card.
    CnId,
    /// Chinese permanent-residence card only.
    CnPermanentResidence,
    /// Korean resident registration number.
    KrRrn,
}

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DocumentType::CnId => "cn_id",
            DocumentType::CnPermanentResidence => "cn_prc",
            DocumentType::KrRrn => "kr_rrn",
        })
    }
}

/// Validates `input` as a document of `doc_type`; surrounding white space is
/// ignored, as is a hyphen in a Korean number.
pub fn validate(doc_type: DocumentType, input: &str, today: Date) -> Result<Document, IdError> {
    match doc_type {
        DocumentType::CnId => validate_cn(input, today),
        DocumentType::CnPermanentResidence => validate_cn_permanent_residence(input, today),
        DocumentType::KrRrn => validate_kr(input, today),
    }
}

const CN_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CN_CHECK: &[u8; 11] = b"10X98765432";

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

/// The check digit of ICAO 9303 (weights 7, 3, 1; digits as themselves,
/// letters A = 10 to Z = 35; modulo 10) over ASCII digits and upper-case
/// letters, as the 2017 permanent-residence card's last digit is computed.
pub fn icao_check_digit(text: &str) -> Option<char> {
    let mut sum = 0u32;
    for (index, byte) in text.bytes().enumerate() {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            _ => return None,
        };
        sum += value * [7, 3, 1][index % 3];
    }
    char::from_digit(sum % 10, 10)
}

fn birth_date(year: &[u8], month: &[u8], day: &[u8], today: Date) -> Result<Date, IdError> {
    let text = || format!("{}-{}-{}", ascii(year), ascii(month), ascii(day));
    let (y, m, d) = (decimal(year), decimal(month), decimal(day));
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

/// The value of the first two of some ASCII digits.
fn two_digits(digits: &[u8]) -> u8 {
    (digits[0] - b'0') * 10 + (digits[1] - b'0')
}

/// The value of ASCII digits.
fn decimal(digits: &[u8]) -> i32 {
    digits.iter().fold(0i32, |n, d| n * 10 + i32::from(d - b'0'))
}

fn ascii(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn first_non_digit(chars: &[char], range: std::ops::Range<usize>) -> Option<(usize, char)> {
    range.into_iter().find(|&i| !chars[i].is_ascii_digit()).map(|i| (i + 1, chars[i]))
}

/// The 17 digits and the check character of an 18-character Chinese number,
/// checked for their characters (the check character's value aside).
fn cn_eighteen(chars: &[char]) -> Result<(Vec<u8>, char), IdError> {
    if let Some((position, found)) = first_non_digit(chars, 0..17) {
        return Err(IdError::Character { position, found });
    }
    let last = chars[17].to_ascii_uppercase();
    if !(last.is_ascii_digit() || last == 'X') {
        return Err(IdError::Character { position: 18, found: chars[17] });
    }
    Ok((chars[..17].iter().map(|&c| c as u8).collect(), last))
}

/// Checks the check character of an 18-character number whose fields read.
fn cn_checked(document: Document, digits: &[u8], last: char, entered: char) -> Result<Document, IdError> {
    let expected = cn_check_character(digits);
    if last != expected {
        return Err(IdError::CheckCharacter { expected, found: entered });
    }
    Ok(document)
}

/// Validates a Chinese identity card, residence permit or permanent-residence
/// card number: 18 characters, or 15 for a legacy identity card or a 2017
/// permanent-residence card.
pub fn validate_cn(input: &str, today: Date) -> Result<Document, IdError> {
    let chars: Vec<char> = input.trim().chars().collect();
    match chars.len() {
        0 => Err(IdError::Empty),
        18 if chars[0] == '9' => permanent_residence_2023(&chars, today),
        15 if chars[0].is_ascii_alphabetic() => permanent_residence_2017(&chars, today),
        18 => {
            let (digits, last) = cn_eighteen(&chars)?;
            let document = cn_fields(&digits, today, false)?;
            cn_checked(document, &digits, last, chars[17])
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

/// Validates a foreign permanent resident ID card's number: 18 characters
/// (2023 edition) or 15 (2017 edition).
pub fn validate_cn_permanent_residence(input: &str, today: Date) -> Result<Document, IdError> {
    let chars: Vec<char> = input.trim().chars().collect();
    match chars.len() {
        0 => Err(IdError::Empty),
        18 if chars[0] == '9' => permanent_residence_2023(&chars, today),
        18 => Err(IdError::Character { position: 1, found: chars[0] }),
        15 => permanent_residence_2017(&chars, today),
        found => Err(IdError::Length { expected: "18 (or 15 for a card of the 2017 edition)", found }),
    }
}

/// Reads region, date and sex from the first 17 digits and writes the
/// normalised number.
fn cn_fields(digits: &[u8], today: Date, legacy: bool) -> Result<Document, IdError> {
    let province = two_digits(digits);
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
        permanent_residence: None,
    })
}

/// `9`, province (2), nationality (3), birth date (8), sequence (3, the
/// last odd for men), check character.
fn permanent_residence_2023(chars: &[char], today: Date) -> Result<Document, IdError> {
    let (digits, last) = cn_eighteen(chars)?;
    let province_code = two_digits(&digits[1..3]);
    let province = mainland_province(province_code).ok_or_else(|| IdError::Region { code: ascii(&digits[1..3]) })?;
    let nationality = u16::try_from(decimal(&digits[3..6]))
        .ok()
        .and_then(countries::by_numeric)
        .ok_or_else(|| IdError::Nationality { code: ascii(&digits[3..6]) })?;
    let birth_date = birth_date(&digits[6..10], &digits[10..12], &digits[12..14], today)?;
    let sex = if (digits[16] - b'0') % 2 == 1 { Sex::Male } else { Sex::Female };
    let mut number = ascii(&digits);
    number.push(last);
    let document = Document {
        kind: DocumentKind::CnPermanentResidence,
        number,
        birth_date,
        sex,
        birth_date_source: BirthDateSource::Document,
        converted_from_legacy: false,
        check_digit_matches: None,
        permanent_residence: Some(PermanentResidence { edition: Edition::Edition2023, nationality, province }),
    };
    cn_checked(document, &digits, last, chars[17])
}

/// Nationality (3 letters), province and city (4 digits), birth date YYMMDD,
/// sequence (1), check digit (1).
fn permanent_residence_2017(chars: &[char], today: Date) -> Result<Document, IdError> {
    if let Some(index) = (0..3).find(|&i| !chars[i].is_ascii_alphabetic()) {
        return Err(IdError::Character { position: index + 1, found: chars[index] });
    }
    if let Some((position, found)) = first_non_digit(chars, 3..15) {
        return Err(IdError::Character { position, found });
    }
    let number: String = chars.iter().map(char::to_ascii_uppercase).collect();
    let bytes = number.as_bytes();
    let nationality = countries::by_alpha3(&number[..3]).ok_or_else(|| IdError::Nationality { code: number[..3].to_owned() })?;
    let province_code = two_digits(&bytes[3..5]);
    let province = mainland_province(province_code).ok_or_else(|| IdError::Region { code: number[3..7].to_owned() })?;
    // Two digits of year: the latest century that does not put the birth
    // date after today (a holder born in the 1920s reads as a child, who is
    // refused, never the other way round).
    let in_century = |century: &[u8]| {
        let mut year = century.to_vec();
        year.extend_from_slice(&bytes[7..9]);
        birth_date(&year, &bytes[9..11], &bytes[11..13], today)
    };
    let birth_date = match in_century(b"20") {
        Err(IdError::DateFuture { .. }) => in_century(b"19")?,
        this_century => this_century?,
    };
    let check_digit_matches = icao_check_digit(&number[..14]).map(|digit| digit == char::from(bytes[14]));
    Ok(Document {
        kind: DocumentKind::CnPermanentResidence,
        number,
        birth_date,
        sex: Sex::Unknown,
        birth_date_source: BirthDateSource::Document,
        converted_from_legacy: false,
        check_digit_matches,
        permanent_residence: Some(PermanentResidence { edition: Edition::Edition2017, nationality, province }),
    })
}

const KR_WEIGHTS: [u32; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];

/// Validates a Korean resident registration number, with or without the
/// hyphen after the sixth digit, whole or only its first seven digits.
pub fn validate_kr(input: &str, today: Date) -> Result<Document, IdError> {
    // The copies of a number made here are wiped when they go: a Korean
    // venue may keep none of it beyond YYMMDD-G.
    let chars: Zeroizing<Vec<char>> = Zeroizing::new(input.trim().chars().collect());
    let digits: Zeroizing<Vec<char>> = Zeroizing::new(match chars.len() {
        0 => return Err(IdError::Empty),
        8 | 14 if chars[6] == '-' => chars[..6].iter().chain(&chars[7..]).copied().collect(),
        8 | 14 => {
            return Err(IdError::Character { position: 7, found: chars[6] });
        }
        7 | 13 => chars.to_vec(),
        found => {
            return Err(IdError::Length { expected: "13 digits (14 with the hyphen), or the first 7 (YYMMDD-G)", found });
        }
    });
    let hyphenated = matches!(chars.len(), 8 | 14);
    if let Some((index, found)) = digits.iter().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        let position = if hyphenated && index >= 6 { index + 2 } else { index + 1 };
        return Err(IdError::Character { position, found: *found });
    }
    let digits: Zeroizing<Vec<u8>> = Zeroizing::new(digits.iter().map(|&c| c as u8 - b'0').collect());
    let g = digits[6];
    let century: &[u8] = match g {
        9 | 0 => b"18",
        1 | 2 | 5 | 6 => b"19",
        _ => b"20",
    };
    let ascii_digits: Zeroizing<Vec<u8>> = Zeroizing::new(digits.iter().map(|d| d + b'0').collect());
    let mut year = century.to_vec();
    year.extend_from_slice(&ascii_digits[0..2]);
    let birth_date = birth_date(&year, &ascii_digits[2..4], &ascii_digits[4..6], today)?;
    let sex = if g % 2 == 1 { Sex::Male } else { Sex::Female };
    let check_digit_matches = (digits.len() == 13).then(|| {
        let sum: u32 = digits[..12].iter().zip(KR_WEIGHTS).map(|(&d, w)| u32::from(d) * w).sum();
        ((11 - sum % 11) % 10) as u8 == digits[12]
    });
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
        check_digit_matches,
        permanent_residence: None,
    })
}

/// Records a document by its birth date alone, typed by staff: what a
/// venue that may keep no document number takes of any document other than
/// a Korean resident registration card.
pub fn unnumbered_document(birth_date: Date, today: Date) -> Result<Document, IdError> {
    let mut document = other_document("-", birth_date, today)?;
    document.number = String::new();
    Ok(document)
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
        permanent_residence: None,
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
            (cn("99010420080115123"), IdError::Region { code: "90".into() }),
            (cn("00010420080115123"), IdError::Region { code: "000104".into() }),
            // A 9 begins a permanent-residence card, whose province is the next two digits.
            (cn("91010420080115123"), IdError::Region { code: "10".into() }),
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
        for province in PROVINCES {
            assert!(validate_cn(&cn(&format!("{:02}010420080115123", province.code)), TODAY).is_ok(), "{province:?}");
        }
    }

    #[test]
    fn error_codes_are_distinct() {
        let errors = [
            IdError::Empty,
            IdError::Length { expected: "", found: 0 },
            IdError::Character { position: 1, found: 'a' },
            IdError::Region { code: String::new() },
            IdError::Nationality { code: String::new() },
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
        let expected = "13 digits (14 with the hyphen), or the first 7 (YYMMDD-G)";
        assert_eq!(validate_kr("900101-12345", TODAY), Err(IdError::Length { expected, found: 12 }));
        // Seven characters are read as seven digits: the hyphen without the digit after it.
        assert_eq!(validate_kr("900101-", TODAY), Err(IdError::Character { position: 7, found: '-' }));
        assert_eq!(validate_kr("900101", TODAY), Err(IdError::Length { expected, found: 6 }));
    }

    #[test]
    fn the_first_seven_digits_of_a_korean_number_are_a_document_too() {
        // 개인정보 보호법 제24조의2: a PC bang may take no more than YYMMDD-G.
        for (input, number, birth_date, sex) in [
            ("080315-3", "080315-3", date(2008, 3, 15), Sex::Male),
            ("0803153", "080315-3", date(2008, 3, 15), Sex::Male),
            (" 991231-2 ", "991231-2", date(1999, 12, 31), Sex::Female),
        ] {
            let document = validate_kr(input, TODAY).unwrap();
            assert_eq!((document.number.as_str(), document.birth_date, document.sex), (number, birth_date, sex), "{input}");
            assert_eq!(document.check_digit_matches, None, "{input}: no check digit to check");
        }
        assert_eq!(validate_kr("080315 3", TODAY), Err(IdError::Character { position: 7, found: ' ' }));
        assert_eq!(validate_kr("08031x-3", TODAY), Err(IdError::Character { position: 6, found: 'x' }));
        assert_eq!(validate_kr("081315-3", TODAY), Err(IdError::DateImpossible { text: "2008-13-15".into() }));
    }

    #[test]
    fn what_may_be_repeated_of_a_typed_number_is_at_most_its_first_seven_digits() {
        for (typed, repeated) in [
            ("080315-3123454", "080315-3"),
            ("0803153123454", "0803153"),
            (" 080315-3 ", "080315-3"),
            ("0803", "0803"),
            ("080315-31234x4", "080315-3"),
        ] {
            assert_eq!(repeatable_part(typed), repeated, "{typed:?}");
        }
    }

    #[test]
    fn keeping_the_birth_date_only_cuts_a_korean_number_to_seven_digits_and_drops_any_other() {
        let full = validate_kr(&kr("080315312345"), TODAY).unwrap();
        let kept = full.keeping_birth_date_only();
        assert_eq!(kept.number, "080315-3");
        assert_eq!((kept.kind, kept.birth_date, kept.sex, kept.check_digit_matches), (full.kind, full.birth_date, full.sex, None));
        // Cutting again changes nothing.
        assert_eq!(kept.keeping_birth_date_only(), kept);
        let passport = other_document("M1234567", date(1985, 6, 30), TODAY).unwrap().keeping_birth_date_only();
        assert_eq!((passport.number.as_str(), passport.birth_date), ("", date(1985, 6, 30)));
        let chinese = validate_cn(&cn("31010420080115123"), TODAY).unwrap().keeping_birth_date_only();
        assert_eq!(chinese.number, "");
    }

    #[test]
    fn permanent_residence_cards_of_2023_read_their_fields() {
        // Sample numbers of public implementations and the immigration
        // administration's own example (932682198501010017: Jiangsu, Saudi Arabia).
        for (number, province, nationality, birth_date, sex) in [
            ("932682198501010017", "江苏省", "SAU", date(1985, 1, 1), Sex::Male),
            ("911398199012310021", "北京市", "KAZ", date(1990, 12, 31), Sex::Female),
            ("931586198001010028", "上海市", "PAK", date(1980, 1, 1), Sex::Female),
        ] {
            for doc_type in [DocumentType::CnId, DocumentType::CnPermanentResidence] {
                let document = validate(doc_type, number, TODAY).unwrap_or_else(|error| panic!("{number}: {error}"));
                assert_eq!(document.kind, DocumentKind::CnPermanentResidence);
                let card = document.permanent_residence.unwrap();
                assert_eq!((card.edition, card.province.name_zh, card.nationality.alpha3), (Edition::Edition2023, province, nationality));
                assert_eq!((document.birth_date, document.sex, document.number.as_str()), (birth_date, sex, number));
            }
        }
        // A lower-case x is written upper-case, as on a resident card.
        let ending_in_x = (0..1000)
            .map(|sequence| cn(&format!("91141019901231{sequence:03}")))
            .find(|number| number.ends_with('X'))
            .expect("one sequence in eleven ends in X");
        let lower = ending_in_x.replace('X', "x");
        assert_eq!(validate_cn(&lower, TODAY).unwrap().number, ending_in_x);
        let cases = [
            (pr("9994101990123100"), IdError::Region { code: "99".into() }),
            (pr("9814101990123100"), IdError::Region { code: "81".into() }),
            (pr("9119991990123100"), IdError::Nationality { code: "999".into() }),
            (pr("9114101990023100"), IdError::DateImpossible { text: "1990-02-31".into() }),
            (pr("9114102030010100"), IdError::DateFuture { date: date(2030, 1, 1) }),
        ];
        for (number, expected) in cases {
            assert_eq!(validate_cn(&number, TODAY), Err(expected), "{number}");
        }
        let good = pr("9114101990123100");
        let wrong = format!("{}{}", &good[..17], if good.ends_with('0') { '1' } else { '0' });
        assert!(matches!(validate_cn(&wrong, TODAY), Err(IdError::CheckCharacter { .. })), "{wrong}");
        // Only a permanent-residence card is taken as one.
        assert_eq!(validate_cn_permanent_residence(&cn("31010420080115123"), TODAY), Err(IdError::Character { position: 1, found: '3' }));
    }

    #[test]
    fn permanent_residence_cards_of_2017_read_their_birth_date_and_report_their_check_digit() {
        // The sample of the immigration administration's adaptation notes.
        let document = validate_cn("KAZ110090123105", TODAY).unwrap();
        assert_eq!(document.kind, DocumentKind::CnPermanentResidence);
        assert_eq!(document.birth_date, date(1990, 12, 31));
        assert_eq!(document.check_digit_matches, Some(true));
        let card = document.permanent_residence.unwrap();
        assert_eq!((card.edition, card.nationality.alpha3, card.province.name_en), (Edition::Edition2017, "KAZ", "Beijing"));
        // Lower-case letters are written upper-case; a wrong check digit is reported.
        let document = validate_cn_permanent_residence("kaz110090123106", TODAY).unwrap();
        assert_eq!((document.number.as_str(), document.check_digit_matches), ("KAZ110090123106", Some(false)));
        // The century: the latest that does not put the birth date in the future.
        assert_eq!(validate_cn("USA310010031512", TODAY).unwrap().birth_date, date(2010, 3, 15));
        assert_eq!(validate_cn("USA310099031512", TODAY).unwrap().birth_date, date(1999, 3, 15));
        for (input, expected) in [
            ("ZZZ110090123105", IdError::Nationality { code: "ZZZ".into() }),
            ("KAZ990090123105", IdError::Region { code: "9900".into() }),
            ("KA1110090123105", IdError::Character { position: 3, found: '1' }),
            ("KAZ11009012310A", IdError::Character { position: 15, found: 'A' }),
            ("KAZ110090133105", IdError::DateImpossible { text: "2090-13-31".into() }),
        ] {
            assert_eq!(validate_cn(input, TODAY), Err(expected), "{input}");
        }
    }

    /// Completes a 2023 permanent-residence card's first 16 digits with a
    /// sequence digit and the check character.
    fn pr(first16: &str) -> String {
        cn(&format!("{first16}1"))
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
        let seeds = [
            cn("31010420080115123"),
            "110105491231002".to_owned(),
            kr("900101100000"),
            pr("9114101990123100"),
            "KAZ110090123105".to_owned(),
            "080315-3".to_owned(),
        ];
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
                        for doc_type in [DocumentType::CnId, DocumentType::CnPermanentResidence, DocumentType::KrRrn] {
                            let _ = validate(doc_type, &text, TODAY);
                        }
                    }
                }
            }
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn birth_dates() -> impl Strategy<Value = Date> {
            (1900i16..=2025, 1i8..=12, 1i8..=28).prop_map(|(y, m, d)| date(y, m, d))
        }

        fn mainland() -> impl Strategy<Value = u8> {
            proptest::sample::select(PROVINCES.iter().map(|p| p.code).filter(|&code| code < 70).collect::<Vec<_>>())
        }

        fn nationality() -> impl Strategy<Value = &'static Country> {
            proptest::sample::select(countries::COUNTRIES.iter().collect::<Vec<_>>())
        }

        /// A genuine 2023 permanent-residence card.
        fn card_2023() -> impl Strategy<Value = (String, u8, &'static Country, Date, u16)> {
            (mainland(), nationality(), birth_dates(), 0u16..1000).prop_map(|(province, country, birth, sequence)| {
                let first17 = format!("9{province:02}{:03}{}{sequence:03}", country.numeric, birth.strftime("%Y%m%d"));
                (cn(&first17), province, country, birth, sequence)
            })
        }

        proptest! {
            /// Every genuine 2023 card reads back its fields, under either document type.
            #[test]
            fn genuine_2023_cards_are_accepted_with_their_fields((number, province, country, birth, sequence) in card_2023()) {
                for doc_type in [DocumentType::CnId, DocumentType::CnPermanentResidence] {
                    let document = validate(doc_type, &number, TODAY).unwrap();
                    let card = document.permanent_residence.unwrap();
                    prop_assert_eq!(document.kind, DocumentKind::CnPermanentResidence);
                    prop_assert_eq!((card.province.code, card.nationality.numeric, card.edition), (province, country.numeric, Edition::Edition2023));
                    prop_assert_eq!(document.birth_date, birth);
                    prop_assert_eq!(document.sex, if sequence % 2 == 1 { Sex::Male } else { Sex::Female });
                    prop_assert_eq!(&document.number, &number);
                }
            }

            /// MOD 11-2 catches every single changed character and every
            /// swap of two neighbours: a broken card is refused, never read
            /// as another person.
            #[test]
            fn broken_2023_cards_are_refused((number, ..) in card_2023(), position in 0usize..18, replacement in 0u8..11) {
                let chars: Vec<char> = number.chars().collect();
                let new = if replacement == 10 { 'X' } else { char::from(b'0' + replacement) };
                prop_assume!(chars[position] != new);
                let mut changed = chars.clone();
                changed[position] = new;
                let changed: String = changed.into_iter().collect();
                prop_assert!(validate_cn(&changed, TODAY).is_err(), "{} accepted", changed);
                if position < 17 && chars[position] != chars[position + 1] {
                    let mut swapped = chars.clone();
                    swapped.swap(position, position + 1);
                    let swapped: String = swapped.into_iter().collect();
                    prop_assert!(validate_cn(&swapped, TODAY).is_err(), "{} accepted", swapped);
                }
            }

            /// A 2017 card's birth date and nationality are read whatever the
            /// century, and its check digit is reported.
            #[test]
            fn cards_of_2017_read_their_birth_date(country in nationality(), province in mainland(), city in 0u8..100, birth in birth_dates(), sequence in 0u8..10) {
                let first14 = format!("{}{province:02}{city:02}{}{sequence}", country.alpha3, birth.strftime("%y%m%d"));
                let check = icao_check_digit(&first14).unwrap();
                let document = validate_cn(&format!("{first14}{check}"), TODAY).unwrap();
                let read = document.birth_date;
                // Two digits of year: the same day in the 1900s or the 2000s, never in the future.
                prop_assert!(read <= TODAY);
                prop_assert_eq!((read.month(), read.day(), read.year() % 100), (birth.month(), birth.day(), birth.year() % 100));
                prop_assert_eq!(document.check_digit_matches, Some(true));
                prop_assert_eq!(document.permanent_residence.unwrap().nationality, country);
            }

            /// A Korean number, cut to what a venue may keep, keeps seven
            /// digits and the hyphen, reads back as the same birth date and
            /// sex, and keeps nothing of the six digits after them.
            #[test]
            fn a_korean_number_kept_holds_only_its_first_seven_digits(birth in (1900i16..=2025, 1i8..=12, 1i8..=28), rest in 0u32..100_000, check in 0u8..10) {
                let (y, m, d) = birth;
                let g = match (y / 100, rest % 2) { (18, 0) => 0, (18, _) => 9, (19, 0) => 2, (19, _) => 1, (_, 0) => 4, _ => 3 };
                let number = format!("{:02}{m:02}{d:02}-{g}{rest:05}{check}", y % 100);
                let document = validate_kr(&number, TODAY).unwrap();
                prop_assert_eq!(&document.number, &number);
                let kept = document.keeping_birth_date_only();
                prop_assert_eq!(&kept.number, &number[..8]);
                let again = validate_kr(&kept.number, TODAY).unwrap();
                prop_assert_eq!((again.birth_date, again.sex), (document.birth_date, document.sex));
                prop_assert_eq!(document.keeping_no_resident_number(), kept);
            }

            /// Nothing typed at the desk makes validation panic.
            #[test]
            fn no_input_panics(text in "\\PC{0,40}") {
                for doc_type in [DocumentType::CnId, DocumentType::CnPermanentResidence, DocumentType::KrRrn] {
                    let _ = validate(doc_type, &text, TODAY);
                }
            }
        }
    }
}
