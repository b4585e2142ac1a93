// Every label of the page, in Vietnamese and English. Data (unit names) is never translated.
const TEXT = {
  vi: {
    title: "Chỉ số phục vụ người dân, doanh nghiệp · TP. Hồ Chí Minh",
    map: "Bản đồ quận, huyện",
    rank: "Hạng",
    unit: "Đơn vị",
    score: "Điểm",
    band: "Xếp loại",
    noScore: "Chưa có điểm",
    noData: "Chưa có số liệu cho bảng này",
    updated: "Cập nhật lúc",
    asOf: "Số liệu đến",
    never: "—",
    stale: "Mất kết nối: số liệu trên màn hình có thể đã cũ",
    redisDown: "Nguồn số liệu tạm gián đoạn: đang chờ khôi phục",
    catchup: "Đang cập nhật lại bảng từ nguồn số liệu: số liệu trên màn hình chưa phải mới nhất",
    conn: {
      connecting: "Đang kết nối…",
      live: "Trực tiếp",
      catchup: "Đang cập nhật lại",
      reconnecting: "Mất kết nối · đang thử lại",
      nodata: "Gián đoạn nguồn số liệu",
    },
    window: { month: "Tháng này", quarter: "Quý này", year: "Năm nay" },
    pastWindow: { month: "Tháng", quarter: "Quý", year: "Năm" },
    groups: {
      district: "Quận, huyện, TP Thủ Đức",
      department: "Sở, ban, ngành",
      ward: "Phường, xã, thị trấn",
    },
    bands: {
      excellent: "Xuất sắc",
      good: "Tốt",
      fair: "Khá",
      average: "Trung bình",
      weak: "Yếu",
    },
    peers: (n) => `${n} đơn vị có điểm`,
    page: (i, n) => `Trang ${i}/${n}`,
    up: (n) => `lên ${n} hạng`,
    down: (n) => `xuống ${n} hạng`,
    commitment: "Cam kết",
    commitStatus: { open: "Đang thực hiện", met: "Đã đạt", kept: "Đã hoàn thành", missed: "Không đạt" },
    target: "mục tiêu",
    deadline: "hạn",
    indicators: {
      announced_on_time: "TTHC được công bố đúng hạn",
      publicized_on_time: "TTHC được công khai đúng hạn",
      content_complete: "Nội dung công khai đầy đủ",
      dossier_synced: "Hồ sơ đồng bộ lên Cổng DVC quốc gia",
      on_time: "Hồ sơ giải quyết đúng hạn",
      online_submission: "Hồ sơ nộp trực tuyến",
      online_uptake: "TTHC trực tuyến có hồ sơ trực tuyến",
      full_online: "Hồ sơ trực tuyến toàn trình",
      paid_online: "Thanh toán phí trực tuyến",
      online_payment_procedures: "TTHC có thanh toán trực tuyến",
      e_result: "Kết quả giải quyết điện tử",
      digitized: "Hồ sơ được số hóa",
      data_reused: "Tái sử dụng dữ liệu số hóa",
      pds_linked: "Sử dụng kho dữ liệu cá nhân",
      population_db: "Khai thác CSDL quốc gia về dân cư",
      petitions_on_time: "Phản ánh, kiến nghị xử lý đúng hạn",
      petition_satisfaction: "Hài lòng về xử lý phản ánh, kiến nghị",
      dossier_satisfaction: "Hài lòng về giải quyết hồ sơ",
      total: "Tổng điểm",
    },
  },
  en: {
    title: "Service to citizens and businesses index · Ho Chi Minh City",
    map: "District map",
    rank: "Rank",
    unit: "Unit",
    score: "Score",
    band: "Band",
    noScore: "No score",
    noData: "No figures for this board yet",
    updated: "Updated at",
    asOf: "Figures as of",
    never: "—",
    stale: "Connection lost: the figures on screen may be out of date",
    redisDown: "Data source interrupted: waiting for it to come back",
    catchup: "Catching up with the data source: the figures on screen are not the latest yet",
    conn: {
      connecting: "Connecting…",
      live: "Live",
      catchup: "Catching up",
      reconnecting: "Connection lost · retrying",
      nodata: "Data source interrupted",
    },
    window: { month: "This month", quarter: "This quarter", year: "This year" },
    pastWindow: { month: "Month", quarter: "Quarter", year: "Year" },
    groups: {
      district: "Districts and Thu Duc City",
      department: "Departments and agencies",
      ward: "Wards and communes",
    },
    bands: {
      excellent: "Excellent",
      good: "Good",
      fair: "Fair",
      average: "Average",
      weak: "Weak",
    },
    peers: (n) => `${n} units scored`,
    page: (i, n) => `Page ${i}/${n}`,
    up: (n) => `up ${n}`,
    down: (n) => `down ${n}`,
    commitment: "Commitment",
    commitStatus: { open: "In progress", met: "Met", kept: "Kept", missed: "Missed" },
    target: "target",
    deadline: "by",
    indicators: {
      announced_on_time: "Procedures announced on time",
      publicized_on_time: "Procedures publicized on time",
      content_complete: "Published content complete",
      dossier_synced: "Dossiers synced to the national portal",
      on_time: "Dossiers processed on time",
      online_submission: "Dossiers submitted online",
      online_uptake: "Online procedures with online dossiers",
      full_online: "Full-online submissions",
      paid_online: "Fees paid online",
      online_payment_procedures: "Procedures with online payment",
      e_result: "Electronic results issued",
      digitized: "Dossiers digitized",
      data_reused: "Digitized data re-used",
      pds_linked: "Personal data store used",
      population_db: "Population database used",
      petitions_on_time: "Petitions resolved on time",
      petition_satisfaction: "Petition satisfaction",
      dossier_satisfaction: "Dossier satisfaction",
      total: "Total score",
    },
  },
};

export const BAND_ORDER = ["excellent", "good", "fair", "average", "weak"];

export function texts(lang) {
  return TEXT[lang] || TEXT.vi;
}

const MONTHS_EN = [
  "January", "February", "March", "April", "May", "June",
  "July", "August", "September", "October", "November", "December",
];

// "month:2024-04" -> "Tháng này · 04/2024" / "This month · April 2024"; not the current one
// (a board catching up shows history) -> "Tháng · 04/2024" / "Month · April 2024"
export function windowLabel(window, lang, current = true) {
  const t = texts(lang);
  const [kind, key] = String(window || "").split(":");
  if (!key) return "";
  let when = key;
  if (kind === "month") {
    const [y, m] = key.split("-");
    when = lang === "en" ? `${MONTHS_EN[Number(m) - 1] || m} ${y}` : `${m}/${y}`;
  } else if (kind === "quarter") {
    const [y, q] = key.split("-");
    when = lang === "en" ? `${q} ${y}` : `Quý ${String(q).replace("Q", "")}/${y}`;
  }
  const head = (current ? t.window : t.pastWindow)[kind] || kind;
  return `${head} · ${when}`;
}

export function groupLabel(group, lang) {
  const t = texts(lang);
  return t.groups[group] || group;
}

export function bandLabel(band, lang) {
  const t = texts(lang);
  if (!band) return t.noScore;
  return t.bands[band] || band;
}

// An indicator id from data: a known one gets its label, anything else is shown as it is (text).
export function indicatorLabel(indicator, lang) {
  const t = texts(lang);
  return Object.hasOwn(t.indicators, indicator) ? t.indicators[indicator] : String(indicator);
}

// A commitment's value or target: a ratio as a percentage, the total as a score.
export function formatTarget(value, indicator, lang) {
  if (typeof value !== "number") return "—";
  if (indicator === "total") return formatScore(value, lang);
  return new Intl.NumberFormat(lang === "en" ? "en-US" : "vi-VN", {
    style: "percent",
    maximumFractionDigits: 1,
  }).format(value);
}

// "2024-06-30" -> "30/06/2024"; an RFC 3339 deadline in the city's zone.
export function formatDeadline(text, lang) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(text || ""));
  if (m) return `${m[3]}/${m[2]}/${m[1]}`;
  return formatTime(text, lang, true);
}

export function formatScore(total, lang) {
  if (typeof total !== "number") return "—";
  return new Intl.NumberFormat(lang === "en" ? "en-US" : "vi-VN", {
    minimumFractionDigits: 2,
    maximumFractionDigits: 2,
  }).format(total);
}

// Times are shown in the city's zone, whatever the screen's own clock zone.
export function formatTime(value, lang, withDate) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return "—";
  const opts = { timeZone: "Asia/Ho_Chi_Minh", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (withDate) Object.assign(opts, { day: "2-digit", month: "2-digit", year: "numeric" });
  try {
    return new Intl.DateTimeFormat(lang === "en" ? "en-GB" : "vi-VN", opts).format(d);
  } catch (e) {
    return d.toISOString();
  }
}
