//! What the lock screen says, in 中文, English and 한국어: the agent's reason
//! codes and facts put into words a customer understands.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use netbar_protocol::local::{Language, LoginAnswer};

/// A fixed phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phrase {
    Prompt,
    Start,
    Checking,
    Queued,
    Connecting,
    InSession,
    Logout,
    FromDesk,
    Reminder,
    Ok,
    Evacuate,
    EvacuateBody,
    NearestExit,
    LoggingOut,
}

/// `phrase` in `language`.
pub(crate) fn phrase(language: Language, phrase: Phrase) -> &'static str {
    use Language::*;
    use Phrase::*;
    match (phrase, language) {
        (Prompt, Zh) => "请输入前台给您的上机码",
        (Prompt, En) => "Type the ticket the front desk gave you",
        (Prompt, Ko) => "카운터에서 받은 이용권 번호를 입력하세요",
        (Start, Zh) => "上机",
        (Start, En) => "Start",
        (Start, Ko) => "시작",
        (Checking, Zh) => "正在核对…",
        (Checking, En) => "Checking…",
        (Checking, Ko) => "확인 중…",
        (Queued, Zh) => "暂时联系不上前台，上机码已排队；请稍候或到前台咨询。",
        (Queued, En) => "The front desk cannot be reached right now; your ticket is queued. Please wait or ask at the desk.",
        (Queued, Ko) => "지금은 카운터에 연결할 수 없어 이용권을 대기열에 넣었습니다. 잠시 기다리거나 카운터에 문의하세요.",
        (Connecting, Zh) => "正在连接本机服务…",
        (Connecting, En) => "Connecting to this station's service…",
        (Connecting, Ko) => "이 좌석의 서비스에 연결 중…",
        (InSession, Zh) => "上机中",
        (InSession, En) => "In session",
        (InSession, Ko) => "이용 중",
        (Logout, Zh) => "下机",
        (Logout, En) => "Log out",
        (Logout, Ko) => "로그아웃",
        (FromDesk, Zh) => "前台消息",
        (FromDesk, En) => "Message from the front desk",
        (FromDesk, Ko) => "카운터 메시지",
        (Reminder, Zh) => "⚠ 提醒",
        (Reminder, En) => "⚠ Reminder",
        (Reminder, Ko) => "⚠ 알림",
        (Ok, Zh) => "知道了",
        (Ok, En) => "OK",
        (Ok, Ko) => "확인",
        (Evacuate, Zh) => "紧急疏散",
        (Evacuate, En) => "EVACUATE NOW",
        (Evacuate, Ko) => "긴급 대피",
        (EvacuateBody, Zh) => "火警或燃气警报：请立即离开，不要乘坐电梯，听从工作人员指挥。",
        (EvacuateBody, En) => "Fire or gas alarm: leave the building now. Do not use the lifts. Follow the staff.",
        (EvacuateBody, Ko) => "화재 또는 가스 경보: 지금 즉시 대피하세요. 엘리베이터를 이용하지 말고 직원의 안내를 따르세요.",
        (NearestExit, Zh) => "请沿安全出口标志从最近的出口离开。",
        (NearestExit, En) => "Follow the exit signs to the nearest exit.",
        (NearestExit, Ko) => "비상구 표시를 따라 가장 가까운 출구로 나가세요.",
        (LoggingOut, Zh) => "正在下机…",
        (LoggingOut, En) => "Logging out…",
        (LoggingOut, Ko) => "로그아웃 중…",
    }
}

/// "Station st-1" in `language`.
pub(crate) fn station(language: Language, id: &str) -> String {
    match language {
        Language::Zh => format!("机位 {id}"),
        Language::En => format!("Station {id}"),
        Language::Ko => format!("좌석 {id}"),
    }
}

/// A time of day in this station's zone: "22:00", or "12-01 09:00" when
/// it is not today.
pub(crate) fn clock(at: Timestamp, now: Timestamp, zone: &TimeZone) -> String {
    let at = at.to_zoned(zone.clone());
    if at.date() == now.to_zoned(zone.clone()).date() { at.strftime("%H:%M").to_string() } else { at.strftime("%m-%d %H:%M").to_string() }
}

/// Hours and minutes from `now` until `until`: "1:05"; "0:00" when past.
pub(crate) fn left(until: Timestamp, now: Timestamp) -> String {
    let minutes = ((until.as_second() - now.as_second()).max(0) + 59) / 60;
    format!("{}:{:02}", minutes / 60, minutes % 60)
}

/// The time left in the session's strip.
pub(crate) fn time_left(language: Language, until: Timestamp, now: Timestamp) -> String {
    let left = left(until, now);
    match language {
        Language::Zh => format!("剩余 {left}"),
        Language::En => format!("{left} left"),
        Language::Ko => format!("남은 시간 {left}"),
    }
}

/// The warning before a session ends.
pub(crate) fn ending(language: Language, ends: Timestamp, now: Timestamp, zone: &TimeZone) -> String {
    let at = clock(ends, now, zone);
    let minutes = ((ends.as_second() - now.as_second()).max(0) + 59) / 60;
    match language {
        Language::Zh => format!("您的上机将于 {at} 结束（还有 {minutes} 分钟），请及时保存。"),
        Language::En => format!("Your session ends at {at} (in {minutes} min). Please save your work."),
        Language::Ko => format!("이용이 {at}에 종료됩니다({minutes}분 남음). 작업을 저장해 주세요."),
    }
}

/// A refused ticket, in words: each reason the lock screen knows, else the
/// agent's own message.
pub(crate) fn refusal(language: Language, answer: &LoginAnswer, now: Timestamp, zone: &TimeZone) -> String {
    let LoginAnswer::Refused { reasons, message, station, allowed_from } = answer else { return String::new() };
    let from = allowed_from.map(|at| clock(at, now, zone));
    let said: Option<Vec<String>> =
        reasons.iter().map(|code| reason(language, code, station.as_ref().map(|id| id.as_str()), from.as_deref())).collect();
    match said {
        Some(said) if !said.is_empty() => said.join(" "),
        _ => message.clone(),
    }
}

fn reason(language: Language, code: &str, station: Option<&str>, from: Option<&str>) -> Option<String> {
    use Language::*;
    Some(match (code, language, station, from) {
        ("unknown_ticket", Zh, ..) => "上机码无效，请到前台咨询。".into(),
        ("unknown_ticket", En, ..) => "This ticket is not valid. Please ask at the front desk.".into(),
        ("unknown_ticket", Ko, ..) => "유효하지 않은 이용권입니다. 카운터에 문의하세요.".into(),
        ("ticket_in_use", Zh, Some(at), _) => format!("此上机码正在 {at} 号机使用中。"),
        ("ticket_in_use", En, Some(at), _) => format!("This ticket is in use at station {at}."),
        ("ticket_in_use", Ko, Some(at), _) => format!("이 이용권은 {at}번 좌석에서 사용 중입니다."),
        ("ticket_in_use", Zh, None, _) => "此上机码正在另一台机器上使用。".into(),
        ("ticket_in_use", En, None, _) => "This ticket is in use at another station.".into(),
        ("ticket_in_use", Ko, None, _) => "이 이용권은 다른 좌석에서 사용 중입니다.".into(),
        ("under_age", Zh, ..) => "未成年人不得在本场所上网。".into(),
        ("under_age", En, ..) => "Minors may not play at this venue.".into(),
        ("under_age", Ko, ..) => "청소년은 이용할 수 없습니다.".into(),
        ("youth_hours", Zh, _, Some(from)) => format!("未成年人此时段不得上网，{from} 起可以。"),
        ("youth_hours", En, _, Some(from)) => format!("Minors may not play at this hour; you may play from {from}."),
        ("youth_hours", Ko, _, Some(from)) => format!("청소년은 지금 이용할 수 없습니다. {from}부터 이용할 수 있습니다."),
        ("youth_hours", Zh, _, None) => "未成年人此时段不得上网。".into(),
        ("youth_hours", En, _, None) => "Minors may not play at this hour.".into(),
        ("youth_hours", Ko, _, None) => "청소년은 지금 이용할 수 없습니다.".into(),
        ("closed", Zh, _, Some(from)) => format!("现在不在营业时间，{from} 开始营业。"),
        ("closed", En, _, Some(from)) => format!("The venue is closed now; it opens at {from}."),
        ("closed", Ko, _, Some(from)) => format!("지금은 영업 시간이 아닙니다. {from}에 엽니다."),
        ("closed", Zh, _, None) => "现在不在营业时间。".into(),
        ("closed", En, _, None) => "The venue is closed now.".into(),
        ("closed", Ko, _, None) => "지금은 영업 시간이 아닙니다.".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn refused(reasons: &[&str], station: Option<&str>, allowed_from: Option<&str>) -> LoginAnswer {
        LoginAnswer::Refused {
            reasons: reasons.iter().map(|code| (*code).to_owned()).collect(),
            message: "the agent's own words".into(),
            station: station.map(|id| id.parse().unwrap()),
            allowed_from: allowed_from.map(at),
        }
    }

    #[test]
    fn refusals_are_worded_with_their_facts() {
        let zone = TimeZone::get("Asia/Shanghai").unwrap();
        let now = at("2026-11-30T14:30:00Z"); // 22:30 in Shanghai
        let in_use = refused(&["ticket_in_use"], Some("st-12"), None);
        assert_eq!(refusal(Language::En, &in_use, now, &zone), "This ticket is in use at station st-12.");
        assert_eq!(refusal(Language::Zh, &in_use, now, &zone), "此上机码正在 st-12 号机使用中。");
        let youth = refused(&["youth_hours"], None, Some("2026-12-01T00:00:00Z")); // 08:00 tomorrow there
        assert_eq!(refusal(Language::En, &youth, now, &zone), "Minors may not play at this hour; you may play from 12-01 08:00.");
        let closed = refused(&["closed"], None, Some("2026-11-30T15:00:00Z"));
        assert_eq!(refusal(Language::Ko, &closed, now, &zone), "지금은 영업 시간이 아닙니다. 23:00에 엽니다.");
        let both = refused(&["under_age", "closed"], None, None);
        assert_eq!(refusal(Language::En, &both, now, &zone), "Minors may not play at this venue. The venue is closed now.");
        // A reason this lock screen does not know: the agent's words.
        assert_eq!(refusal(Language::Zh, &refused(&["banned"], None, None), now, &zone), "the agent's own words");
        assert_eq!(refusal(Language::Zh, &refused(&[], None, None), now, &zone), "the agent's own words");
    }

    #[test]
    fn time_left_and_the_warning() {
        let zone = TimeZone::get("Asia/Seoul").unwrap();
        let now = at("2026-11-30T12:50:00Z");
        assert_eq!(time_left(Language::En, at("2026-11-30T14:05:00Z"), now), "1:15 left");
        assert_eq!(time_left(Language::Zh, at("2026-11-30T12:50:01Z"), now), "剩余 0:01");
        assert_eq!(left(at("2026-11-30T12:00:00Z"), now), "0:00");
        assert_eq!(
            ending(Language::En, at("2026-11-30T13:00:00Z"), now, &zone),
            "Your session ends at 22:00 (in 10 min). Please save your work."
        );
        assert!(ending(Language::Ko, at("2026-11-30T13:00:00Z"), now, &zone).starts_with("이용이 22:00에"));
    }

    #[test]
    fn every_phrase_in_every_language() {
        let phrases = [
            Phrase::Prompt,
            Phrase::Start,
            Phrase::Checking,
            Phrase::Queued,
            Phrase::Connecting,
            Phrase::InSession,
            Phrase::Logout,
            Phrase::FromDesk,
            Phrase::Reminder,
            Phrase::Ok,
            Phrase::Evacuate,
            Phrase::EvacuateBody,
            Phrase::NearestExit,
            Phrase::LoggingOut,
        ];
        for language in Language::ALL {
            for one in phrases {
                assert!(!phrase(language, one).is_empty());
            }
        }
        assert_ne!(phrase(Language::Zh, Phrase::Evacuate), phrase(Language::En, Phrase::Evacuate));
    }
}
