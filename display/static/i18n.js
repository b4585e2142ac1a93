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
    conn: {
      connecting: "Đang kết nối…",
      live: "Trực tiếp",
      reconnecting: "Mất kết nối · đang thử lại",
      nodata: "Gián đoạn nguồn số liệu",
    },
    window: { month: "Tháng này", quarter: "Quý này", year: "Năm nay" },
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
    conn: {
      connecting: "Connecting…",
      live: "Live",
      reconnecting: "Connection lost · retrying",
      nodata: "Data source interrupted",
    },
    window: { month: "This month", quarter: "This quarter", year: "This year" },
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

// "month:2024-04" -> "Tháng này · 04/2024" / "This month · April 2024"
export function windowLabel(window, lang) {
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
  const head = t.window[kind] || kind;
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
