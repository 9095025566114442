// The netbar front-desk console. Plain script, no libraries: everything it
// needs is served by the agent itself.
"use strict";

const TEXT = {
  en: {
    "lang.label": "Language",
    "login.title": "Front desk", "login.name": "User", "login.password": "Password", "login.submit": "Sign in",
    "login.bad": "Unknown user or wrong password.",
    "login.locked": "Too many wrong passwords. Try again in a few minutes, or ask a manager.",
    "logout": "Sign out", "zone": "Times in {zone}",
    "counts.customers": "Customers", "counts.sessions": "In session", "counts.online": "Online", "counts.sensors": "Sensors healthy",
    "uplink.none": "No regulator feed", "uplink.ok": "Regulator: connected", "uplink.down": "Regulator: NOT connected",
    "uplink.backlog": "waiting", "uplink.warning": "The regulator outbox holds {backlog} messages (warned from half of {max}). Check the internet connection to the regulator. Nothing is dropped: check-ins go on, and are refused only if the disk fills up.",
    "store.failing": "The registration log cannot be written: {error}. Check-ins are refused until it can; call the venue's IT support.",
    "checkin.title": "Check in", "checkin.type": "Document", "checkin.number": "Number", "checkin.name": "Name",
    "checkin.birth_date": "Birth date (from the document)", "checkin.guardian": "With a guardian", "checkin.submit": "Check in",
    "doc.cn_id": "Resident ID card", "doc.cn_prc": "Foreign permanent resident ID card",
    "doc.kr_rrn": "Resident registration number, first 7 digits", "doc.other": "Other document",
    "checkin.kr_placeholder": "YYMMDD-G",
    "checkin.card": "Nationality {nationality} · accepted in {province} · {edition} edition",
    "checkin.student": "Enrolled in a high school?", "checkin.student_yes": "Yes", "checkin.student_no": "No",
    "checkin.student_presumed_yes": "Unless the customer says otherwise, presumed enrolled by birth year.",
    "checkin.student_presumed_no": "Presumed no longer enrolled by birth year; ask if unsure.",
    "checkin.admitted": "Admitted", "checkin.ticket": "Ticket", "checkin.station": "Free station", "checkin.no_station": "No free station right now",
    "checkin.open_it": "Open it", "checkin.until": "Must leave by", "checkin.refused": "Refused",
    "checkout.title": "Check out", "checkout.ticket": "Ticket", "checkout.submit": "Check out", "checkout.done": "Checked out: {ticket}",
    "floor.title": "Floor", "state.free": "Free", "state.in_session": "In session", "state.locked": "Locked", "state.offline": "Offline", "state.alarm": "Alarm",
    "held.unregistered": "used without registration", "held.staff": "locked by staff", "held.policy": "time is up",
    "clock.off": "clock off by {n} s",
    "station.title": "Station", "station.ticket": "Ticket", "station.open": "Open for ticket", "station.lock": "Lock",
    "station.message": "Message to the customer", "station.send": "Send", "station.opened": "Opened.", "station.locked": "Locked.", "station.sent": "Sent.",
    "minutes": "{n} min",
    "occupancy.title": "Occupancy today", "occupancy.customers": "customers", "occupancy.sessions": "sessions", "occupancy.capacity": "capacity",
    "incidents.title": "Incidents", "incidents.none": "No open incidents.", "incidents.history": "Show resolved",
    "incident.acknowledge": "Acknowledge", "incident.resolve": "Resolve", "incident.note": "What was done",
    "incident.opened": "opened", "incident.acknowledged": "acknowledged by {by}", "incident.resolved": "resolved by {by}: {note}",
    "severity.critical": "CRITICAL", "severity.warning": "Warning", "severity.notice": "Notice",
    "kind.fire": "Smoke or fire", "kind.carbon_monoxide": "Carbon monoxide", "kind.exit_blocked": "Emergency exit blocked",
    "kind.overcrowded": "Overcrowded", "kind.unregistered_use": "Unregistered use", "kind.minor_present": "Minor present",
    "kind.sensor_fault": "Sensor or station fault", "kind.forged_sender": "Forged sender", "kind.records_tampered": "Registration log tampered with",
    "kind.lock_screen_tampered": "Lock screen tampered with", "kind.records_redacted": "Registration log redacted",
    "alarm.prefix": "ALARM",
    "records.title": "Registration records", "records.from": "From", "records.to": "To", "records.search": "Search", "records.csv": "Export CSV",
    "records.logged": "Every search and export is recorded in the log.", "records.none": "No records in this period.",
    "records.seq": "No.", "records.at": "Time", "records.kind": "Entry", "records.what": "Details",
    "reason.under_age": "Under the minimum age: minors may not be admitted.",
    "reason.youth_hours": "Outside the hours in which young people may be admitted without a guardian.",
    "reason.closed": "The venue is closed at this hour.",
    "reason.already_checked_in": "This document is checked in already. Check it out first.",
    "reason.unknown_ticket": "This ticket is not valid.",
    "error.invalid_document": "The document number is not valid: check it and type it again.",
    "error.birth_date_required": "Enter the birth date shown on the document.",
    "error.document_type": "This venue does not take that document.",
    "records.redaction": "entries {entries} cut to what policy {policy} keeps (by {by})",
    "error.not_recorded": "NOT recorded: the registration log cannot be written. Call the manager.",
    "error.network": "The agent does not answer. Check that it is running.",
  },
  zh: {
    "lang.label": "语言",
    "login.title": "前台", "login.name": "用户名", "login.password": "密码", "login.submit": "登录",
    "login.bad": "用户名或密码错误。",
    "login.locked": "密码错误次数过多，请几分钟后再试，或联系店长。",
    "logout": "退出", "zone": "时间均为 {zone} 时区",
    "counts.customers": "在场顾客", "counts.sessions": "上机中", "counts.online": "在线", "counts.sensors": "传感器正常",
    "uplink.none": "未配置监管上报", "uplink.ok": "监管平台：已连接", "uplink.down": "监管平台：未连接",
    "uplink.backlog": "条待发", "uplink.warning": "监管上报队列积压 {backlog} 条（达到上限 {max} 的一半即提示）。请检查到监管平台的网络连接。不会丢弃任何记录：登记照常进行，仅在磁盘写满时拒绝登记。",
    "store.failing": "登记记录无法写入：{error}。在恢复之前将拒绝登记，请联系网吧的技术支持。",
    "checkin.title": "登记上网", "checkin.type": "证件类型", "checkin.number": "证件号码", "checkin.name": "姓名",
    "checkin.birth_date": "出生日期（按证件填写）", "checkin.guardian": "有监护人陪同", "checkin.submit": "登记",
    "doc.cn_id": "居民身份证", "doc.cn_prc": "外国人永久居留身份证",
    "doc.kr_rrn": "韩国居民登录号（前7位）", "doc.other": "其他证件",
    "checkin.kr_placeholder": "YYMMDD-G",
    "checkin.card": "国籍 {nationality} · 受理地 {province} · {edition} 版",
    "checkin.student": "是否为高中在校生？", "checkin.student_yes": "是", "checkin.student_no": "否",
    "checkin.student_presumed_yes": "顾客未说明时，按出生年份推定为在校生。",
    "checkin.student_presumed_no": "按出生年份推定已毕业；不确定时请询问。",
    "checkin.admitted": "准许上网", "checkin.ticket": "上机码", "checkin.station": "空闲机位", "checkin.no_station": "暂无空闲机位",
    "checkin.open_it": "开机", "checkin.until": "须在此时间前离场", "checkin.refused": "拒绝登记",
    "checkout.title": "下机结账", "checkout.ticket": "上机码", "checkout.submit": "下机", "checkout.done": "已下机：{ticket}",
    "floor.title": "机位图", "state.free": "空闲", "state.in_session": "上机中", "state.locked": "已锁定", "state.offline": "离线", "state.alarm": "告警",
    "held.unregistered": "未登记使用", "held.staff": "店员锁定", "held.policy": "时间已到",
    "clock.off": "时钟偏差 {n} 秒",
    "station.title": "机位", "station.ticket": "上机码", "station.open": "凭码开机", "station.lock": "锁定",
    "station.message": "发送给顾客的消息", "station.send": "发送", "station.opened": "已开机。", "station.locked": "已锁定。", "station.sent": "已发送。",
    "minutes": "{n} 分钟",
    "occupancy.title": "今日在场人数", "occupancy.customers": "顾客", "occupancy.sessions": "上机", "occupancy.capacity": "核定人数",
    "incidents.title": "事件", "incidents.none": "没有未处理的事件。", "incidents.history": "显示已处理",
    "incident.acknowledge": "确认", "incident.resolve": "处理完毕", "incident.note": "处理情况",
    "incident.opened": "发生", "incident.acknowledged": "{by} 已确认", "incident.resolved": "{by} 已处理：{note}",
    "severity.critical": "紧急", "severity.warning": "警告", "severity.notice": "提示",
    "kind.fire": "烟雾或火情", "kind.carbon_monoxide": "一氧化碳", "kind.exit_blocked": "安全出口被锁",
    "kind.overcrowded": "超员", "kind.unregistered_use": "未登记上网", "kind.minor_present": "未成年人在场",
    "kind.sensor_fault": "传感器或机位故障", "kind.forged_sender": "伪造的发送方", "kind.records_tampered": "登记记录被篡改",
    "kind.lock_screen_tampered": "锁屏被破坏", "kind.records_redacted": "登记记录已删减",
    "alarm.prefix": "告警",
    "records.title": "上网登记记录", "records.from": "从", "records.to": "到", "records.search": "查询", "records.csv": "导出 CSV",
    "records.logged": "每次查询和导出都会记入日志。", "records.none": "此期间没有记录。",
    "records.seq": "序号", "records.at": "时间", "records.kind": "类型", "records.what": "内容",
    "reason.under_age": "未达到最低年龄：不得接纳未成年人。",
    "reason.youth_hours": "不在未成年人无监护人可上网的时段内。",
    "reason.closed": "此时段不营业。",
    "reason.already_checked_in": "该证件已登记，请先下机。",
    "reason.unknown_ticket": "上机码无效。",
    "error.invalid_document": "证件号码无效，请核对后重新输入。",
    "error.birth_date_required": "请输入证件上的出生日期。",
    "error.document_type": "本店不接受此类证件。",
    "records.redaction": "第 {entries} 条已按政策 {policy} 删减（{by}）",
    "error.not_recorded": "未能记录：登记日志无法写入。请联系店长。",
    "error.network": "服务无响应，请检查程序是否在运行。",
  },
  ko: {
    "lang.label": "언어",
    "login.title": "카운터", "login.name": "사용자", "login.password": "비밀번호", "login.submit": "로그인",
    "login.bad": "사용자가 없거나 비밀번호가 틀렸습니다.",
    "login.locked": "비밀번호를 여러 번 잘못 입력했습니다. 몇 분 뒤에 다시 시도하거나 관리자에게 문의하세요.",
    "logout": "로그아웃", "zone": "시간대: {zone}",
    "counts.customers": "손님", "counts.sessions": "이용 중", "counts.online": "접속", "counts.sensors": "정상 센서",
    "uplink.none": "감독기관 전송 없음", "uplink.ok": "감독기관: 연결됨", "uplink.down": "감독기관: 연결 안 됨",
    "uplink.backlog": "대기", "uplink.warning": "감독기관 전송 대기열에 메시지 {backlog}건이 있습니다(한도 {max}의 절반부터 알림). 감독기관과의 인터넷 연결을 확인하세요. 버려지는 것은 없습니다: 입장 등록은 계속되며, 디스크가 가득 찰 때만 거부됩니다.",
    "store.failing": "등록 기록을 저장할 수 없습니다: {error}. 저장될 때까지 입장 등록이 거부됩니다. 매장 IT 담당자에게 연락하세요.",
    "checkin.title": "입장 등록", "checkin.type": "신분증", "checkin.number": "번호", "checkin.name": "이름",
    "checkin.birth_date": "생년월일(신분증 기준)", "checkin.guardian": "보호자 동반", "checkin.submit": "등록",
    "doc.cn_id": "중국 주민신분증", "doc.cn_prc": "중국 외국인 영구거류 신분증",
    "doc.kr_rrn": "주민등록번호 앞 7자리", "doc.other": "기타 신분증",
    "checkin.kr_placeholder": "YYMMDD-G",
    "checkin.card": "국적 {nationality} · 접수지 {province} · {edition}년판",
    "checkin.student": "고등학교 재학 중입니까?", "checkin.student_yes": "예", "checkin.student_no": "아니요",
    "checkin.student_presumed_yes": "손님이 달리 말하지 않으면 출생 연도에 따라 재학 중으로 봅니다.",
    "checkin.student_presumed_no": "출생 연도로는 졸업한 것으로 봅니다. 확실하지 않으면 물어보세요.",
    "checkin.admitted": "입장 허용", "checkin.ticket": "이용권", "checkin.station": "빈 좌석", "checkin.no_station": "지금은 빈 좌석이 없습니다",
    "checkin.open_it": "좌석 열기", "checkin.until": "퇴장 시각", "checkin.refused": "입장 불가",
    "checkout.title": "퇴장", "checkout.ticket": "이용권", "checkout.submit": "퇴장 처리", "checkout.done": "퇴장 처리됨: {ticket}",
    "floor.title": "좌석 현황", "state.free": "빈 좌석", "state.in_session": "이용 중", "state.locked": "잠김", "state.offline": "꺼짐", "state.alarm": "경보",
    "held.unregistered": "등록 없이 사용", "held.staff": "직원이 잠금", "held.policy": "이용 시간 종료",
    "clock.off": "시계 {n}초 차이",
    "station.title": "좌석", "station.ticket": "이용권", "station.open": "이용권으로 열기", "station.lock": "잠그기",
    "station.message": "손님에게 보낼 메시지", "station.send": "보내기", "station.opened": "열었습니다.", "station.locked": "잠갔습니다.", "station.sent": "보냈습니다.",
    "minutes": "{n}분",
    "occupancy.title": "오늘의 이용 현황", "occupancy.customers": "손님", "occupancy.sessions": "이용", "occupancy.capacity": "수용 인원",
    "incidents.title": "사건", "incidents.none": "처리 중인 사건이 없습니다.", "incidents.history": "처리된 사건 보기",
    "incident.acknowledge": "확인", "incident.resolve": "처리 완료", "incident.note": "조치 내용",
    "incident.opened": "발생", "incident.acknowledged": "{by} 확인", "incident.resolved": "{by} 처리: {note}",
    "severity.critical": "긴급", "severity.warning": "경고", "severity.notice": "알림",
    "kind.fire": "연기 또는 화재", "kind.carbon_monoxide": "일산화탄소", "kind.exit_blocked": "비상구 막힘",
    "kind.overcrowded": "정원 초과", "kind.unregistered_use": "미등록 사용", "kind.minor_present": "청소년 있음",
    "kind.sensor_fault": "센서 또는 좌석 이상", "kind.forged_sender": "위조된 발신자", "kind.records_tampered": "등록 기록 변조",
    "kind.lock_screen_tampered": "잠금 화면 훼손", "kind.records_redacted": "등록 기록 삭제 처리",
    "alarm.prefix": "경보",
    "records.title": "등록 기록", "records.from": "시작", "records.to": "끝", "records.search": "조회", "records.csv": "CSV 내보내기",
    "records.logged": "조회와 내보내기는 모두 기록에 남습니다.", "records.none": "이 기간에는 기록이 없습니다.",
    "records.seq": "번호", "records.at": "시각", "records.kind": "종류", "records.what": "내용",
    "reason.under_age": "최저 연령 미만: 청소년은 입장할 수 없습니다.",
    "reason.youth_hours": "청소년이 보호자 없이 입장할 수 있는 시간(오전 9시~오후 10시)이 아닙니다.",
    "reason.closed": "지금은 영업 시간이 아닙니다.",
    "reason.already_checked_in": "이미 등록된 신분증입니다. 먼저 퇴장 처리하세요.",
    "reason.unknown_ticket": "유효하지 않은 이용권입니다.",
    "error.invalid_document": "신분증 번호가 올바르지 않습니다. 확인하고 다시 입력하세요.",
    "error.birth_date_required": "신분증에 적힌 생년월일을 입력하세요.",
    "error.document_type": "이 매장에서는 받지 않는 신분증입니다.",
    "records.redaction": "{entries}번 기록을 정책 {policy}에 따라 삭제 처리({by})",
    "error.not_recorded": "기록되지 않았습니다: 등록 기록을 저장할 수 없습니다. 관리자에게 연락하세요.",
    "error.network": "에이전트가 응답하지 않습니다. 실행 중인지 확인하세요.",
  },
};

// The cashier's own pick, else the venue's (its configuration or policy,
// written into the page), else the browser's.
const LANGUAGES = { zh: "zh-CN", en: "en", ko: "ko" };
const browserLanguage = () => Object.keys(LANGUAGES).find((code) => navigator.language.startsWith(code)) || "en";
let lang = [localStorage.getItem("netbar.lang"), document.documentElement.dataset.language].find((code) => code in LANGUAGES) || browserLanguage();
let csrf = "";
let me = null;
let floor = null;
let clockOffset = 0;
let selected = null;
let events = null;
let beeper = null;
let showHistory = false;
let records = null;
// What the desk should ask of the document typed, as the agent answered.
let questions = null;

const $ = (id) => document.getElementById(id);
const t = (key, values = {}) => (TEXT[lang][key] || TEXT.en[key] || key).replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
};

// Every time is shown in the venue's zone, which the agent names at sign-in,
// never in the browser's: the cashier PC's zone may differ, and the log and
// the law use the venue's. The header names the zone once.
let venueZone = "UTC";
let venueClock = null;

function useZone(zone) {
  const options = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  try {
    venueClock = new Intl.DateTimeFormat("en-US", { ...options, timeZone: zone });
    venueZone = zone;
  } catch (error) {
    // A zone this browser does not know: UTC, which the header then names.
    venueClock = new Intl.DateTimeFormat("en-US", { ...options, timeZone: "UTC" });
    venueZone = "UTC";
  }
}
useZone("UTC");

// An instant (ISO text or milliseconds) at the venue: its date
// (YYYY-MM-DD), time (HH:MM:SS) and clock (HH:MM).
function atVenue(instant) {
  const parts = {};
  for (const part of venueClock.formatToParts(typeof instant === "string" ? Date.parse(instant) : instant)) parts[part.type] = part.value;
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour}:${parts.minute}:${parts.second}`, clock: `${parts.hour}:${parts.minute}` };
}

// An instant as a <time> element: the venue's time of day, with its date
// when that is not the venue's today (or always, with `full`).
function timeView(iso, full = false) {
  const at = atVenue(iso);
  const today = atVenue(Date.now() + clockOffset).date;
  return el("time", { datetime: iso }, full || at.date !== today ? `${at.date} ${at.time}` : at.time);
}

function translatePage() {
  document.documentElement.lang = LANGUAGES[lang];
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll("[data-i18n-label]")) node.setAttribute("aria-label", t(node.dataset.i18nLabel));
  for (const node of document.querySelectorAll(".lang-switch")) node.value = lang;
  $("checkin-number").placeholder = $("checkin-type").value === "kr_rrn" ? t("checkin.kr_placeholder") : "";
  if (questions) showQuestions(questions);
  $("venue-zone").textContent = t("zone", { zone: venueZone });
  if (floor) render(floor);
  if (records) renderRecords(records);
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    return { status: 0, body: { code: "network", message: t("error.network") } };
  }
  let data = null;
  try { data = await response.json(); } catch (error) { data = null; }
  return { status: response.status, body: data || {} };
}

function errorText(body) {
  const key = "error." + body.code;
  return TEXT.en[key] ? t(key) : body.message || body.code || "?";
}

// --- signing in and out -------------------------------------------------

async function boot() {
  translatePage();
  const answer = await api("GET", "/api/v1/me");
  if (answer.status === 200) start(answer.body); else showLogin();
}

function showLogin() {
  if (events) { events.close(); events = null; }
  stopBeeping();
  $("app-view").hidden = true;
  $("login-view").hidden = false;
  $("login-name").focus();
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const answer = await api("POST", "/api/v1/login", { name: $("login-name").value.trim(), password: $("login-password").value });
  $("login-password").value = "";
  if (answer.status === 200) { start(answer.body); return; }
  $("login-error").textContent = answer.status === 429 ? t("login.locked") : answer.status === 401 ? t("login.bad") : errorText(answer.body);
}

function start(session) {
  me = session;
  csrf = session.csrf;
  useZone(session.zone || "UTC");
  $("venue-zone").textContent = t("zone", { zone: venueZone });
  document.body.classList.toggle("cashier", session.role !== "manager");
  useDesk(session.desk);
  $("who").textContent = `${session.user} (${session.role})`;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
  // The venue's today (its zone), not the browser's or UTC's: the records
  // are searched by the venue's days.
  const today = session.today || atVenue(Date.now()).date;
  $("records-from").value = $("records-from").value || today;
  $("records-to").value = $("records-to").value || today;
  updateExportLink();
  events = new EventSource("/api/v1/events");
  events.addEventListener("floor", (event) => render(JSON.parse(event.data)));
  events.onerror = async () => {
    const answer = await api("GET", "/api/v1/me");
    if (answer.status === 401) showLogin();
  };
  loadOccupancy();
  $("checkin-number").focus();
}

async function logout() {
  await api("POST", "/api/v1/logout");
  csrf = "";
  me = null;
  showLogin();
}

// --- the floor ------------------------------------------------------------

function minutesSince(iso) {
  return Math.max(0, Math.floor((Date.now() + clockOffset - Date.parse(iso)) / 60000));
}

function render(data) {
  floor = data;
  clockOffset = Date.parse(data.now) - Date.now();
  $("venue-name").textContent = data.venue;
  $("count-customers").textContent = data.customers;
  $("count-capacity").textContent = data.capacity;
  $("count-sessions").textContent = data.sessions;
  $("count-online").textContent = `${data.online}/${data.stations.length}`;
  $("count-sensors").textContent = `${data.sensors.healthy}/${data.sensors.enrolled}`;
  const uplink = data.uplink;
  $("uplink-state").textContent = !uplink.configured ? t("uplink.none")
    : (uplink.connected ? t("uplink.ok") : t("uplink.down")) + (uplink.backlog ? ` · ${uplink.backlog} ${t("uplink.backlog")}` : "");
  const store = data.store || { ok: true };
  $("store-failing").hidden = store.ok;
  if (!store.ok) $("store-failing").textContent = t("store.failing", { error: store.error });
  $("uplink-warning").hidden = !(uplink.configured && uplink.warning);
  if (uplink.configured && uplink.warning) $("uplink-warning").textContent = t("uplink.warning", { backlog: uplink.backlog, max: uplink.outbox_max });

  const tiles = data.stations.map((station) => {
    let what = t("state." + station.state);
    if (station.state === "in_session" && station.session) what += ` · ${t("minutes", { n: minutesSince(station.session.started) })}`;
    if (station.state === "locked" && station.held) what += ` · ${t("held." + station.held)}`;
    if (station.clock_skew_seconds) what += ` · ${t("clock.off", { n: station.clock_skew_seconds })}`;
    const tile = el("button", { type: "button", class: `tile ${station.state}${selected === station.id ? " selected" : ""}`,
      "aria-pressed": String(selected === station.id), "data-station": station.id, "data-state": station.state,
      onclick: () => select(station.id) }, el("span", { class: "id" }, station.id), el("span", { class: "what" }, what));
    if (station.session) tile.append(el("span", { class: "what" }, station.session.ticket));
    return tile;
  });
  $("floor").replaceChildren(...tiles);
  if (selected) showStation(selected);
  if (!showHistory) renderIncidents(data.incidents);
  alarm(data.incidents);
}

function select(id) {
  selected = selected === id ? null : id;
  $("station-result").textContent = "";
  $("station-result").className = "result";
  if (floor) render(floor);
  $("station-panel").hidden = !selected;
}

function showStation(id) {
  const station = floor.stations.find((s) => s.id === id);
  if (!station) return;
  $("station-id").textContent = id;
  let detail = t("state." + station.state);
  if (station.session) detail += ` · ${t("checkin.ticket")} ${station.session.ticket} · ${t("minutes", { n: minutesSince(station.session.started) })}`;
  if (station.alarm) detail += ` · ${station.alarm}`;
  $("station-detail").textContent = detail;
}

async function stationAction(path, body, done) {
  const answer = await api("POST", `/api/v1/stations/${encodeURIComponent(selected)}/${path}`, body);
  const box = $("station-result");
  const ok = answer.status === 200 || answer.status === 202;
  box.className = "result " + (ok ? "ok" : "refused");
  box.textContent = ok ? t(done) : errorText(answer.body);
  return ok;
}

// --- check in and out -------------------------------------------------------

function freeStation() {
  const free = floor && floor.stations.find((station) => station.state === "free");
  return free ? free.id : null;
}

async function checkIn(event) {
  event.preventDefault();
  const type = $("checkin-type").value;
  const body = typedDocument();
  const name = $("checkin-name").value.trim();
  if (name && !$("name-row").hidden) body.name = name;
  // What was not sent is not kept on screen either.
  if (!keepsNumbers) $("checkin-number").value = body.number || "";
  $("checkin-submit").disabled = true;
  const answer = await api("POST", "/api/v1/checkins", body);
  $("checkin-submit").disabled = false;
  const box = $("checkin-result");
  box.replaceChildren();
  if (answer.status === 201) {
    const result = answer.body.result;
    const station = freeStation();
    box.className = "result ok";
    box.append(el("div", {}, t("checkin.admitted")), el("div", { class: "ticket", id: "checkin-ticket" }, result.ticket));
    if (result.until) box.append(el("div", {}, `${t("checkin.until")}: `, timeView(result.until)));
    if (station) {
      box.append(el("div", {}, `${t("checkin.station")}: `, el("b", { id: "checkin-station" }, station), " ",
        el("button", { type: "button", onclick: async (e) => {
          selected = station;
          const ok = await stationAction("open", { ticket: result.ticket }, "station.opened");
          e.target.disabled = ok;
          $("station-panel").hidden = false;
        } }, t("checkin.open_it"))));
    } else {
      box.append(el("div", {}, t("checkin.no_station")));
    }
    $("checkin-form").reset();
    $("checkin-type").value = deskDocuments[0];
    documentTypeChanged();
  } else if (answer.status === 200) {
    box.className = "result refused";
    box.append(el("div", {}, el("b", {}, t("checkin.refused"))));
    for (const reason of answer.body.result.reasons) box.append(el("div", { class: "reason", "data-reason": reason }, t("reason." + reason)));
  } else {
    box.className = "result refused";
    box.append(el("div", {}, errorText(answer.body)));
  }
  $("checkin-number").focus();
}

// The documents this venue's policy takes, the usual one first, and
// whether it keeps document numbers (Korea's keeps none).
let deskDocuments = ["cn_id", "cn_prc", "kr_rrn", "other"];
let keepsNumbers = true;

function useDesk(desk) {
  if (!desk) return;
  deskDocuments = desk.documents;
  keepsNumbers = desk.keeps_numbers;
  for (const option of $("checkin-type").options) option.hidden = !deskDocuments.includes(option.value);
  if (!deskDocuments.includes($("checkin-type").value)) $("checkin-type").value = deskDocuments[0];
  // A venue that keeps no names (Korea's) does not ask for one.
  $("name-row").hidden = !desk.keeps_names;
  documentTypeChanged();
}

// What of a typed number leaves the browser: where the venue keeps no
// numbers, a resident registration number's first seven digits (YYMMDD-G,
// all the decision needs) and nothing of another document's.
function sentNumber(type) {
  const typed = $("checkin-number").value.trim();
  if (keepsNumbers) return typed;
  if (type === "kr_rrn") return typed.slice(0, typed.charAt(6) === "-" ? 8 : 7);
  return "";
}

function typedDocument() {
  const type = $("checkin-type").value;
  const body = { document_type: type };
  const number = sentNumber(type);
  if (number || type !== "other") body.number = number;
  if (type === "other" && $("checkin-birth-date").value) body.birth_date = $("checkin-birth-date").value;
  // An answer counts only where it was asked, for this document.
  body.guardian = !$("guardian-row").hidden && $("checkin-guardian").checked;
  if (!$("student-row").hidden) {
    if ($("checkin-student-yes").checked) body.student = true;
    if ($("checkin-student-no").checked) body.student = false;
  }
  return body;
}

function documentTypeChanged() {
  const type = $("checkin-type").value;
  $("birth-date-row").hidden = type !== "other";
  // Another document's number is not asked where no number is kept.
  $("number-row").hidden = type === "other" && !keepsNumbers;
  $("checkin-number").required = !$("number-row").hidden;
  $("checkin-number").placeholder = type === "kr_rrn" ? t("checkin.kr_placeholder") : "";
  documentChanged();
}

// Another document: the previous one's answers go, until the agent says
// what to ask of this one.
function documentChanged() {
  showQuestions(null);
  askQuestions();
}

// What to ask of the document typed: the agent says whether a guardian
// or school changes the decision now, and what a permanent-residence card
// says of its holder. Asked again as the number is typed; a number not yet
// valid asks nothing.
let asking = 0;
async function askQuestions() {
  const asked = ++asking;
  const body = typedDocument();
  const answer = body.number || body.birth_date ? await api("POST", "/api/v1/checkins/questions", body) : { status: 0 };
  if (asked !== asking) return;
  showQuestions(answer.status === 200 ? answer.body : null);
}

function showQuestions(answer) {
  questions = answer;
  $("guardian-row").hidden = !(answer && answer.guardian);
  if ($("guardian-row").hidden) $("checkin-guardian").checked = false;
  $("student-row").hidden = !(answer && answer.student);
  if ($("student-row").hidden) for (const id of ["checkin-student-yes", "checkin-student-no"]) $(id).checked = false;
  $("student-hint").textContent = answer && answer.student ? t(answer.youth === "presumed_student" ? "checkin.student_presumed_yes" : "checkin.student_presumed_no") : "";
  const card = answer && answer.permanent_residence;
  $("checkin-card").hidden = !card;
  if (card) {
    let nationality = card.nationality.name;
    try { nationality = new Intl.DisplayNames([LANGUAGES[lang]], { type: "region" }).of(card.nationality.alpha2) || nationality; } catch (error) { /* the English name */ }
    const province = lang === "zh" ? card.province.zh : card.province.en;
    $("checkin-card").textContent = t("checkin.card", { nationality: `${nationality} (${card.nationality.alpha3})`, province, edition: card.edition });
  }
}

async function checkOut(event) {
  event.preventDefault();
  const ticket = $("checkout-ticket").value.trim().toUpperCase();
  const answer = await api("DELETE", `/api/v1/checkins/${encodeURIComponent(ticket)}`);
  const box = $("checkout-result");
  box.className = "result " + (answer.status === 200 ? "ok" : "refused");
  box.textContent = answer.status === 200 ? t("checkout.done", { ticket }) : errorText(answer.body);
  if (answer.status === 200) $("checkout-ticket").value = "";
}

// --- incidents and the alarm -----------------------------------------------

function incidentView(incident) {
  const kind = t("kind." + incident.kind);
  const node = el("div", { class: `incident ${incident.severity}`, "data-incident": incident.id },
    el("div", {}, el("b", {}, `${t("severity." + incident.severity)} · ${kind}`), incident.station ? ` · ${incident.station}` : ""),
    el("div", {}, incident.detail),
    el("div", { class: "meta" }, `${t("incident.opened")} `, timeView(incident.opened)));
  if (incident.acknowledged) node.append(el("div", { class: "meta" }, t("incident.acknowledged", { by: incident.acknowledged[0] })));
  if (incident.resolved) node.append(el("div", { class: "meta" }, t("incident.resolved", { by: incident.resolved[0], note: incident.resolved[2] })));
  if (!incident.resolved) {
    const actions = el("div", { class: "actions" });
    if (!incident.acknowledged) actions.append(el("button", { type: "button", class: "acknowledge", onclick: () => acknowledge(incident.id) }, t("incident.acknowledge")));
    if (me && me.role === "manager") {
      const note = el("input", { placeholder: t("incident.note"), "aria-label": t("incident.note"), class: "note" });
      actions.append(note, el("button", { type: "button", class: "resolve", onclick: () => resolve(incident.id, note.value) }, t("incident.resolve")));
    }
    node.append(actions);
  }
  return node;
}

function renderIncidents(list) {
  const box = $("incidents");
  box.replaceChildren(...(list.length ? list.map(incidentView) : [el("p", { class: "hint" }, t("incidents.none"))]));
}

async function acknowledge(id) {
  await api("POST", `/api/v1/incidents/${encodeURIComponent(id)}/acknowledge`);
  if (showHistory) loadHistory();
}

async function resolve(id, note) {
  const answer = await api("POST", `/api/v1/incidents/${encodeURIComponent(id)}/resolve`, { note });
  if (answer.status !== 200) window.alert(errorText(answer.body));
  if (showHistory) loadHistory();
}

async function loadHistory() {
  const answer = await api("GET", "/api/v1/incidents");
  if (answer.status === 200) renderIncidents(answer.body.incidents);
}

function alarm(incidents) {
  const loud = incidents.filter((incident) => incident.severity === "critical" && !incident.acknowledged);
  $("alarm").hidden = loud.length === 0;
  if (loud.length) {
    $("alarm-text").textContent = `${t("alarm.prefix")}: ` + loud.map((i) => `${t("kind." + i.kind)}${i.station ? " · " + i.station : ""} — ${i.detail}`).join("; ");
    startBeeping();
  } else {
    stopBeeping();
  }
}

function startBeeping() {
  if (beeper) return;
  const beep = () => {
    try {
      const audio = new (window.AudioContext || window.webkitAudioContext)();
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.type = "square";
      tone.frequency.value = 880;
      gain.gain.value = 0.2;
      tone.connect(gain).connect(audio.destination);
      tone.start();
      tone.stop(audio.currentTime + 0.4);
      tone.onended = () => audio.close();
    } catch (error) { /* no sound device: the banner still flashes */ }
  };
  beep();
  beeper = setInterval(beep, 1500);
}

function stopBeeping() {
  if (beeper) { clearInterval(beeper); beeper = null; }
}

// --- occupancy and records ---------------------------------------------------

async function loadOccupancy() {
  const answer = await api("GET", "/api/v1/occupancy");
  if (answer.status !== 200) return;
  const points = answer.body.points.map(([at, customers, sessions]) => [Date.parse(at), customers, sessions]);
  const capacity = answer.body.capacity;
  const svg = $("occupancy");
  const [w, h, left, bottom] = [600, 160, 6, 6];
  const first = points.length ? points[0][0] : Date.now();
  const last = points.length ? points[points.length - 1][0] : first + 1;
  const span = Math.max(last - first, 60000);
  const top = Math.max(capacity, ...points.map((p) => Math.max(p[1], p[2])), 1);
  const x = (at) => left + (w - left - 6) * (at - first) / span;
  const y = (n) => h - bottom - (h - bottom - 8) * n / top;
  const line = (index) => points.map((p) => `${x(p[0]).toFixed(1)},${y(p[index]).toFixed(1)}`).join(" ");
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  // Lines only in the picture; its words are HTML below it, where they
  // are read and their contrast can be checked.
  svg.replaceChildren(
    make("line", { class: "capacity", x1: left, x2: w - 6, y1: y(capacity), y2: y(capacity) }),
    make("polyline", { class: "customers", points: line(1) }),
    make("polyline", { class: "sessions", points: line(2) }),
  );
  const clock = (at) => el("time", { datetime: new Date(at).toISOString() }, atVenue(at).clock);
  $("occupancy-axis").replaceChildren(
    clock(first),
    el("span", {}, `— ${t("occupancy.customers")}  - - ${t("occupancy.sessions")}  ··· ${t("occupancy.capacity")} ${capacity}`),
    clock(last),
  );
}

function updateExportLink() {
  const query = `from=${$("records-from").value}&to=${$("records-to").value}`;
  $("records-csv").href = `/api/v1/records?${query}&format=csv`;
}

async function searchRecords(event) {
  event.preventDefault();
  const answer = await api("GET", `/api/v1/records?from=${$("records-from").value}&to=${$("records-to").value}`);
  const box = $("records-result");
  if (answer.status !== 200) { records = null; box.replaceChildren(el("p", { class: "error" }, errorText(answer.body))); return; }
  renderRecords(answer.body.entries);
}

function renderRecords(entries) {
  records = entries;
  const rows = entries.map((entry) => {
    const body = entry.body || {};
    const what = entry.kind === "redaction"
      ? t("records.redaction", { entries: (body.entries || []).join(", "), policy: body.policy, by: body.by })
      : [body.outcome, body.document_kind, body.number, body.birth_date, body.name, body.ticket, body.station, body.by].filter(Boolean).join(" · ");
    return el("tr", {}, el("td", {}, String(entry.seq)), el("td", {}, timeView(entry.at, true)), el("td", {}, entry.kind), el("td", {}, what));
  });
  const head = el("thead", {}, el("tr", {}, ...["records.seq", "records.at", "records.kind", "records.what"].map((key) => el("th", { scope: "col" }, t(key)))));
  $("records-result").replaceChildren(rows.length ? el("table", { id: "records-table" }, head, el("tbody", {}, ...rows)) : el("p", { class: "hint" }, t("records.none")));
}

// --- wiring -------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const node of document.querySelectorAll(".lang-switch")) node.addEventListener("change", () => {
    lang = node.value in LANGUAGES ? node.value : "en";
    localStorage.setItem("netbar.lang", lang);
    translatePage();
    if (me) loadOccupancy();
  });
  $("checkin-type").addEventListener("change", documentTypeChanged);
  for (const id of ["checkin-number", "checkin-birth-date"]) $(id).addEventListener("input", documentChanged);
  $("checkin-guardian").addEventListener("change", askQuestions);
  $("checkin-form").addEventListener("submit", checkIn);
  $("checkout-form").addEventListener("submit", checkOut);
  $("open-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await stationAction("open", { ticket: $("open-ticket").value.trim() }, "station.opened")) $("open-ticket").value = "";
  });
  $("station-lock").addEventListener("click", () => stationAction("commands", { action: "lock" }, "station.locked"));
  $("message-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await stationAction("commands", { action: "notify", text: $("message-text").value }, "station.sent")) $("message-text").value = "";
  });
  $("alarm-ack").addEventListener("click", async () => {
    for (const incident of (floor ? floor.incidents : [])) {
      if (incident.severity === "critical" && !incident.acknowledged) await acknowledge(incident.id);
    }
  });
  $("incidents-history").addEventListener("change", (event) => {
    showHistory = event.target.checked;
    if (showHistory) loadHistory(); else if (floor) renderIncidents(floor.incidents);
  });
  $("records-form").addEventListener("submit", searchRecords);
  $("records-from").addEventListener("change", updateExportLink);
  $("records-to").addEventListener("change", updateExportLink);
  setInterval(() => { if (floor && !$("app-view").hidden) render(floor); }, 30000);
  setInterval(() => { if (!$("app-view").hidden) loadOccupancy(); }, 60000);
  boot();
});
