// Tile layout of the 22 district-level units of HCMC (the 2024 map), north at the top.
// Hand-made from the units' relative positions: a 7 x 6 grid with every cell covered, large
// units spanning several cells. Ids are those of scoring/catalogs/hcmc-2024.json; `vi`/`en` are
// the short map labels (the unit's full name from the data is the tile's tooltip). Nothing here
// is fetched from outside.
export const GRID = { cols: 7, rows: 6 };

export const DISTRICT_TILES = [
  { id: "district-cu-chi", col: 0, row: 0, vi: "Củ Chi", en: "Cu Chi" },
  { id: "district-hoc-mon", col: 1, row: 0, vi: "Hóc Môn", en: "Hoc Mon" },
  { id: "district-12", col: 2, row: 0, colSpan: 2, vi: "Quận 12", en: "District 12" },
  { id: "district-go-vap", col: 4, row: 0, vi: "Gò Vấp", en: "Go Vap" },
  { id: "district-binh-thanh", col: 5, row: 0, rowSpan: 2, vi: "Bình Thạnh", en: "Binh Thanh" },
  { id: "district-thu-duc", col: 6, row: 0, rowSpan: 3, vi: "TP Thủ Đức", en: "Thu Duc" },
  { id: "district-binh-chanh", col: 0, row: 1, rowSpan: 5, vi: "Bình Chánh", en: "Binh Chanh" },
  { id: "district-binh-tan", col: 1, row: 1, vi: "Bình Tân", en: "Binh Tan" },
  { id: "district-tan-phu", col: 2, row: 1, vi: "Tân Phú", en: "Tan Phu" },
  { id: "district-tan-binh", col: 3, row: 1, vi: "Tân Bình", en: "Tan Binh" },
  { id: "district-phu-nhuan", col: 4, row: 1, vi: "Phú Nhuận", en: "Phu Nhuan" },
  { id: "district-06", col: 1, row: 2, vi: "Quận 6", en: "District 6" },
  { id: "district-11", col: 2, row: 2, vi: "Quận 11", en: "District 11" },
  { id: "district-10", col: 3, row: 2, vi: "Quận 10", en: "District 10" },
  { id: "district-03", col: 4, row: 2, vi: "Quận 3", en: "District 3" },
  { id: "district-01", col: 5, row: 2, vi: "Quận 1", en: "District 1" },
  { id: "district-08", col: 1, row: 3, colSpan: 2, rowSpan: 3, vi: "Quận 8", en: "District 8" },
  { id: "district-05", col: 3, row: 3, colSpan: 2, vi: "Quận 5", en: "District 5" },
  { id: "district-04", col: 5, row: 3, vi: "Quận 4", en: "District 4" },
  { id: "district-can-gio", col: 6, row: 3, rowSpan: 3, vi: "Cần Giờ", en: "Can Gio" },
  { id: "district-07", col: 3, row: 4, colSpan: 3, vi: "Quận 7", en: "District 7" },
  { id: "district-nha-be", col: 3, row: 5, colSpan: 3, vi: "Nhà Bè", en: "Nha Be" },
];

// The peer group the map shows: the 22 districts.
export const MAP_GROUP = "district";
