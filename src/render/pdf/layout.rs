//! Page layout: text measurement, wrapping and shortening, and a canvas that
//! flows blocks and tables over pages.
//!
//! printpdf 0.12 has no text-measuring helper, so widths are the sum of glyph
//! advances from the font's `hmtx` table (looked up once per font into a table
//! indexed by code point). Every operation here is linear in the length of its
//! input and the canvas only appends, so a 5,000-line statement costs five
//! times a 1,000-line one.

use printpdf::{
    Color, FontId, Line, LinePoint, Op, PaintMode, ParsedFont, PdfFontHandle, Point, Pt, Rect, Rgb,
    TextItem,
};
use sha2::{Digest, Sha256};

use super::template::Align;

/// Points per millimetre.
pub const PT_PER_MM: f32 = 72.0 / 25.4;

/// Code points below this get a precomputed advance; others are looked up.
const TABLE_SIZE: usize = 0x3000;

/// A parsed font with its PDF resource id and a fast advance table.
#[derive(Debug)]
pub struct Face {
    pub font: ParsedFont,
    pub id: FontId,
    units_per_em: f32,
    /// Advance in font units per code point (below [`TABLE_SIZE`]).
    advances: Vec<u16>,
    fallback: u16,
}

impl Face {
    /// `id` must be six upper-case letters: printpdf uses its first six
    /// characters as the subset tag (`ABCDEF+DejaVuSans`), and a fixed id keeps
    /// the output deterministic (printpdf's own ids come from a global counter).
    pub fn new(font: ParsedFont, id: &str) -> Face {
        let units_per_em = f32::from(font.font_metrics.units_per_em.max(1));
        let fallback = font
            .lookup_glyph_index('?' as u32)
            .map(|g| font.get_horizontal_advance(g))
            .unwrap_or(units_per_em as u16 / 2);
        let advances = (0..TABLE_SIZE as u32)
            .map(|cp| {
                font.lookup_glyph_index(cp)
                    .map(|g| font.get_horizontal_advance(g))
                    .unwrap_or(fallback)
            })
            .collect();
        Face {
            id: FontId(id.to_string()),
            font,
            units_per_em,
            advances,
            fallback,
        }
    }

    fn advance(&self, c: char) -> u16 {
        let cp = c as usize;
        if cp < TABLE_SIZE {
            self.advances[cp]
        } else {
            self.font
                .lookup_glyph_index(cp as u32)
                .map(|g| self.font.get_horizontal_advance(g))
                .unwrap_or(self.fallback)
        }
    }

    /// Width of `s` at `size` pt.
    pub fn width(&self, s: &str, size: f32) -> f32 {
        let units: u32 = s.chars().map(|c| u32::from(self.advance(c))).sum();
        units as f32 * size / self.units_per_em
    }

    /// `s` if it fits in `max` pt, else the longest prefix that fits followed by
    /// an ellipsis.
    pub fn shorten(&self, s: &str, size: f32, max: f32) -> String {
        if self.width(s, size) <= max {
            return s.to_string();
        }
        let ell = self.width("…", size);
        let mut w = 0.0;
        let mut end = 0;
        for (i, c) in s.char_indices() {
            let cw = f32::from(self.advance(c)) * size / self.units_per_em;
            if w + cw + ell > max {
                break;
            }
            w += cw;
            end = i + c.len_utf8();
        }
        format!("{}…", s[..end].trim_end())
    }

    /// Sets a numeric cell (an amount, rate, share, count or total) in `max`
    /// pt without ever dropping a character: at `size` where it fits, else at
    /// the largest size (in steps of 0.1 pt) down to `floor` at which it fits,
    /// else at `floor` broken over lines, after a separator (`,` `.` or a
    /// space) where one is on the line. Returns the size and the lines, whose
    /// concatenation is `s`.
    pub fn fit_numeric(&self, s: &str, size: f32, floor: f32, max: f32) -> (f32, Vec<String>) {
        let w = self.width(s, size);
        if w <= max {
            return (size, vec![s.to_string()]);
        }
        let floor = floor.min(size);
        // Widths scale with the size: start from the exact ratio.
        let mut fit = (size * max / w * 10.0).floor() / 10.0;
        while fit >= floor && self.width(s, fit) > max {
            fit -= 0.1;
        }
        if fit >= floor {
            return (fit, vec![s.to_string()]);
        }
        let mut lines = Vec::new();
        let mut cur = String::new();
        for c in s.chars() {
            let mut next = cur.clone();
            next.push(c);
            if !cur.is_empty() && self.width(&next, floor) > max {
                // Break after the last separator, if the line has one.
                let at = cur
                    .char_indices()
                    .rev()
                    .find(|&(_, c)| !c.is_alphanumeric())
                    .map(|(i, c)| i + c.len_utf8());
                match at {
                    Some(i) => {
                        lines.push(cur[..i].to_string());
                        cur = cur[i..].to_string();
                    }
                    None => lines.push(std::mem::take(&mut cur)),
                }
                // The carried-over tail may still leave no room for `c`.
                let mut next = cur.clone();
                next.push(c);
                if !cur.is_empty() && self.width(&next, floor) > max {
                    lines.push(std::mem::take(&mut cur));
                }
            }
            cur.push(c);
        }
        if !cur.is_empty() || lines.is_empty() {
            lines.push(cur);
        }
        (floor, lines)
    }

    /// Greedy word wrap into lines of at most `max` pt; a word longer than a
    /// line is broken between characters.
    pub fn wrap(&self, s: &str, size: f32, max: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let space = self.width(" ", size);
        let mut cur = String::new();
        let mut cur_w = 0.0;
        for word in s.split_whitespace() {
            let ww = self.width(word, size);
            if !cur.is_empty() && cur_w + space + ww <= max {
                cur.push(' ');
                cur.push_str(word);
                cur_w += space + ww;
                continue;
            }
            if !cur.is_empty() {
                lines.push(std::mem::take(&mut cur));
            }
            if ww <= max {
                cur.push_str(word);
                cur_w = ww;
                continue;
            }
            // Break an overlong word.
            cur_w = 0.0;
            for c in word.chars() {
                let cw = f32::from(self.advance(c)) * size / self.units_per_em;
                if cur_w + cw > max && !cur.is_empty() {
                    lines.push(std::mem::take(&mut cur));
                    cur_w = 0.0;
                }
                cur.push(c);
                cur_w += cw;
            }
        }
        if !cur.is_empty() || lines.is_empty() {
            lines.push(cur);
        }
        lines
    }
}

/// Fonts and page geometry a canvas needs.
pub struct Geometry<'a> {
    pub regular: &'a Face,
    pub bold: &'a Face,
    pub width: f32,
    pub height: f32,
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
    pub line_height: f32,
}

/// One column of a laid-out table.
pub struct Col {
    pub width: f32,
    pub align: Align,
    pub header: String,
    /// Amounts, rates, shares, counts: never shortened (see
    /// [`Canvas::table`]).
    pub numeric: bool,
}

/// How a table row is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    Normal,
    /// Bold on a light fill: subtotals and totals.
    Subtotal,
}

/// A row of a table: cells (text shortened with an ellipsis to fit its
/// column, numbers set whole: see [`Canvas::table`]),
/// or a caption across the whole width that starts a group (a customer) and
/// is followed by the column header.
pub enum Row {
    Cells(Vec<String>, RowKind),
    Caption(String),
}

pub fn rgb(c: [f32; 3]) -> Color {
    Color::Rgb(Rgb {
        r: c[0],
        g: c[1],
        b: c[2],
        icc_profile: None,
    })
}

const BLACK: [f32; 3] = [0.0, 0.0, 0.0];

/// Table colours.
pub struct TableStyle {
    pub size: f32,
    pub header_fill: [f32; 3],
    pub subtotal_fill: [f32; 3],
    pub rule: [f32; 3],
    pub caption_color: [f32; 3],
}

/// A flow of blocks over pages. `y` is the baseline cursor in pt from the
/// bottom of the page; blocks move it down and start a new page when they do
/// not fit. Page numbers are added by [`Canvas::finish`], once the page count
/// is known.
pub struct Canvas<'a> {
    pub g: Geometry<'a>,
    pages: Vec<Vec<Op>>,
    ops: Vec<Op>,
    pub y: f32,
    fill: [f32; 3],
    /// Hash of everything drawn: the document ID is derived from it.
    hash: Sha256,
}

impl<'a> Canvas<'a> {
    pub fn new(g: Geometry<'a>) -> Canvas<'a> {
        let y = g.height - g.top;
        Canvas {
            g,
            pages: Vec::new(),
            ops: Vec::new(),
            y,
            fill: BLACK,
            hash: Sha256::new(),
        }
    }

    pub fn text_width(&self) -> f32 {
        self.g.width - self.g.left - self.g.right
    }

    fn face(&self, bold: bool) -> &'a Face {
        if bold {
            self.g.bold
        } else {
            self.g.regular
        }
    }

    pub fn face_of(&self, bold: bool) -> &'a Face {
        self.face(bold)
    }

    /// Height of a line of text at `size`.
    pub fn lh(&self, size: f32) -> f32 {
        size * self.g.line_height
    }

    pub fn new_page(&mut self) {
        let ops = std::mem::take(&mut self.ops);
        self.pages.push(ops);
        self.y = self.g.height - self.g.top;
        self.fill = BLACK;
    }

    /// Starts a new page unless `h` pt still fit above the bottom margin.
    pub fn ensure(&mut self, h: f32) -> bool {
        if self.y - h < self.g.bottom && self.y < self.g.height - self.g.top {
            self.new_page();
            true
        } else {
            false
        }
    }

    fn set_fill(&mut self, c: [f32; 3]) {
        if self.fill != c {
            self.ops.push(Op::SetFillColor { col: rgb(c) });
            self.fill = c;
        }
    }

    /// Draws `s` with its baseline at (`x`, `y`).
    pub fn text_at(&mut self, x: f32, y: f32, s: &str, bold: bool, size: f32, color: [f32; 3]) {
        if s.is_empty() {
            return;
        }
        self.hash.update(s.as_bytes());
        self.hash.update(x.to_le_bytes());
        self.hash.update(y.to_le_bytes());
        self.set_fill(color);
        let face = self.face(bold);
        self.ops.extend([
            Op::StartTextSection,
            Op::SetFont {
                font: PdfFontHandle::External(face.id.clone()),
                size: Pt(size),
            },
            Op::SetTextCursor {
                pos: Point { x: Pt(x), y: Pt(y) },
            },
            Op::ShowText {
                items: vec![TextItem::Text(s.to_string())],
            },
            Op::EndTextSection,
        ]);
    }

    /// Draws `s` so that it ends at `right`.
    pub fn text_right(
        &mut self,
        right: f32,
        y: f32,
        s: &str,
        bold: bool,
        size: f32,
        color: [f32; 3],
    ) {
        let w = self.face(bold).width(s, size);
        self.text_at(right - w, y, s, bold, size, color);
    }

    pub fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, color: [f32; 3]) {
        self.set_fill(color);
        self.ops.push(Op::DrawRectangle {
            rectangle: Rect {
                x: Pt(x),
                y: Pt(y),
                width: Pt(w),
                height: Pt(h),
                mode: Some(PaintMode::Fill),
                winding_order: None,
            },
        });
    }

    pub fn hline(&mut self, x0: f32, x1: f32, y: f32, thickness: f32, color: [f32; 3]) {
        self.ops.push(Op::SetOutlineColor { col: rgb(color) });
        self.ops.push(Op::SetOutlineThickness { pt: Pt(thickness) });
        self.ops.push(Op::DrawLine {
            line: Line {
                points: vec![
                    LinePoint {
                        p: Point {
                            x: Pt(x0),
                            y: Pt(y),
                        },
                        bezier: false,
                    },
                    LinePoint {
                        p: Point {
                            x: Pt(x1),
                            y: Pt(y),
                        },
                        bezier: false,
                    },
                ],
                is_closed: false,
            },
        });
    }

    /// A wrapped paragraph across the text width.
    pub fn paragraph(&mut self, s: &str, bold: bool, size: f32, color: [f32; 3]) {
        let lh = self.lh(size);
        let width = self.text_width();
        for line in self.face(bold).wrap(s, size, width) {
            self.ensure(lh);
            self.y -= lh;
            let x = self.g.left;
            self.text_at(x, self.y + lh * 0.25, &line, bold, size, color);
        }
    }

    pub fn space(&mut self, h: f32) {
        self.y -= h;
    }

    /// A heading kept together with at least `keep` pt of what follows.
    pub fn heading(&mut self, s: &str, size: f32, color: [f32; 3], keep: f32) {
        let lh = self.lh(size);
        self.ensure(lh + keep + 4.0);
        self.space(4.0);
        self.paragraph(s, true, size, color);
        self.space(2.0);
    }

    /// Label/value pairs in two columns: labels bold, values wrapped.
    pub fn key_values(&mut self, pairs: &[(String, String)], size: f32, label_width: f32) {
        let lh = self.lh(size);
        let vw = self.text_width() - label_width;
        for (k, v) in pairs {
            let lines = self.g.regular.wrap(v, size, vw);
            self.ensure(lh);
            self.y -= lh;
            let (x, y) = (self.g.left, self.y + lh * 0.25);
            self.text_at(
                x,
                y,
                &self.g.bold.shorten(k, size, label_width - 4.0),
                true,
                size,
                BLACK,
            );
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    self.ensure(lh);
                    self.y -= lh;
                }
                let y = self.y + lh * 0.25;
                self.text_at(self.g.left + label_width, y, l, false, size, BLACK);
            }
        }
    }

    fn table_header(&mut self, cols: &[Col], st: &TableStyle) {
        let rh = self.lh(st.size) + 3.0;
        self.y -= rh;
        let (x0, w) = (self.g.left, self.text_width());
        self.rect(x0, self.y, w, rh, st.header_fill);
        let base = self.y + (rh - st.size) / 2.0 + st.size * 0.2;
        let mut x = x0;
        for c in cols {
            let s = self.g.bold.shorten(&c.header, st.size, c.width - 4.0);
            match c.align {
                Align::Left => self.text_at(x + 2.0, base, &s, true, st.size, BLACK),
                Align::Right => self.text_right(x + c.width - 2.0, base, &s, true, st.size, BLACK),
            }
            x += c.width;
        }
        self.hline(x0, x0 + w, self.y, 0.6, st.rule);
    }

    fn caption(&mut self, s: &str, st: &TableStyle) {
        let size = st.size + 1.0;
        self.space(3.0);
        self.paragraph(s, true, size, st.caption_color);
        self.space(1.0);
    }

    /// Draws a table. The column header is drawn at the start, after every
    /// caption, and again on every new page (preceded by the current caption
    /// and `continued`), so no page shows numbers without their headings.
    /// Cells never overlap the next column. Text is shortened with an
    /// ellipsis; a numeric cell ([`Col::numeric`]) never is: one that does not
    /// fit is set smaller, down to [`numeric_floor`]; where even that does not
    /// fit, the table's numeric columns are widened at the expense of its text
    /// columns, and as a last resort the number is broken over lines.
    pub fn table<I: IntoIterator<Item = Row>>(
        &mut self,
        cols: &[Col],
        rows: I,
        st: &TableStyle,
        continued: &str,
    ) {
        self.table_under(cols, rows, st, continued, None);
    }

    /// [`Canvas::table`] for a table that continues the group of `caption`
    /// (drawn before, with another table): its own column header comes first,
    /// and on a new page the caption is repeated with `continued`.
    pub fn table_under<I: IntoIterator<Item = Row>>(
        &mut self,
        cols: &[Col],
        rows: I,
        st: &TableStyle,
        continued: &str,
        caption: Option<&str>,
    ) {
        let rows: Vec<Row> = rows.into_iter().collect();
        let widened = widen_numeric(cols, &rows, st.size, self.g.regular, self.g.bold);
        let cols = widened.as_deref().unwrap_or(cols);
        let floor = numeric_floor(st.size);
        let rh1 = self.lh(st.size) + 2.0;
        let caption_h = self.lh(st.size + 1.0) * 2.0 + 4.0;
        let header_h = self.lh(st.size) + 3.0;
        let mut caption: Option<String> = caption.map(str::to_string);
        let mut header_pending = true;
        for row in rows {
            match row {
                Row::Caption(s) => {
                    // Keep the caption with the header and one row.
                    self.ensure(caption_h + header_h + rh1);
                    self.caption(&s, st);
                    caption = Some(s);
                    header_pending = true;
                }
                Row::Cells(cells, kind) => {
                    let bold = kind == RowKind::Subtotal;
                    let face = self.face(bold);
                    // Each cell's size and lines.
                    let set: Vec<(f32, Vec<String>)> = cols
                        .iter()
                        .zip(&cells)
                        .enumerate()
                        .map(|(i, (c, s))| {
                            if c.numeric {
                                return face.fit_numeric(s, st.size, floor, c.width - 4.0);
                            }
                            // A left-aligned label may run into the empty
                            // cells after it (subtotal labels), never into text.
                            let mut w = c.width;
                            if c.align == Align::Left {
                                for (c2, s2) in cols.iter().zip(&cells).skip(i + 1) {
                                    if !s2.is_empty() {
                                        break;
                                    }
                                    w += c2.width;
                                }
                            }
                            (st.size, vec![face.shorten(s, st.size, w - 4.0)])
                        })
                        .collect();
                    let extra = set
                        .iter()
                        .map(|(size, lines)| (lines.len() - 1) as f32 * self.lh(*size))
                        .fold(0.0, f32::max);
                    let rh = rh1 + extra;
                    let need = if header_pending { header_h + rh } else { rh };
                    if self.ensure(need) {
                        if let Some(c) = &caption {
                            let text = format!("{c} {continued}");
                            self.caption(&text, st);
                        }
                        header_pending = true;
                    }
                    if header_pending {
                        self.table_header(cols, st);
                        header_pending = false;
                    }
                    self.y -= rh;
                    if bold {
                        let w = self.text_width();
                        self.rect(self.g.left, self.y, w, rh, st.subtotal_fill);
                    }
                    // The first line sits where a one-line row has it.
                    let base = self.y + extra + (rh1 - st.size) / 2.0 + st.size * 0.2;
                    let mut x = self.g.left;
                    for (c, (size, lines)) in cols.iter().zip(&set) {
                        let mut y = base;
                        for s in lines {
                            match c.align {
                                Align::Left => self.text_at(x + 2.0, y, s, bold, *size, BLACK),
                                Align::Right => {
                                    self.text_right(x + c.width - 2.0, y, s, bold, *size, BLACK)
                                }
                            }
                            y -= self.lh(*size);
                        }
                        x += c.width;
                    }
                    let x0 = self.g.left;
                    let x1 = x0 + self.text_width();
                    self.hline(x0, x1, self.y, 0.2, st.rule);
                }
            }
        }
    }

    /// Closes the last page and adds the footer (`left` text and the page
    /// label built by `page_label(page, pages)`) to every page. Returns the
    /// pages' operations and the content hash.
    pub fn finish(
        mut self,
        left: &str,
        page_label: impl Fn(usize, usize) -> String,
        size: f32,
        color: [f32; 3],
    ) -> (Vec<Vec<Op>>, [u8; 32]) {
        self.new_page();
        let pages = std::mem::take(&mut self.pages);
        let n = pages.len();
        let y = self.g.bottom - self.lh(size) - 2.0;
        let x0 = self.g.left;
        let x1 = self.g.width - self.g.right;
        let mut out = Vec::with_capacity(n);
        for (i, ops) in pages.into_iter().enumerate() {
            self.ops = ops;
            self.fill = [-1.0; 3];
            self.hline(x0, x1, y + self.lh(size), 0.3, color);
            let label = page_label(i + 1, n);
            let lw = self.g.regular.width(&label, size);
            let left_max = (x1 - x0) - lw - 12.0;
            let l = self.g.regular.shorten(left, size, left_max);
            self.text_at(x0, y, &l, false, size, color);
            self.text_right(x1, y, &label, false, size, color);
            out.push(std::mem::take(&mut self.ops));
        }
        (out, self.hash.finalize().into())
    }
}

/// The smallest size a numeric cell of a table at `size` pt is set in
/// before its columns are widened: three quarters of the table's size, but
/// not below 4 pt (nor above `size`).
pub fn numeric_floor(size: f32) -> f32 {
    (size * 0.75).max(4.0).min(size)
}

/// The narrowest a text column gets when it gives width to numeric columns:
/// this share of its template width.
const TEXT_KEEP: f32 = 0.4;

/// Widths for `cols` such that every numeric cell of `rows` fits at
/// [`numeric_floor`], taken from the text columns (each keeps at least
/// [`TEXT_KEEP`] of its width); `None` when every cell fits already (the
/// template's widths stand). Numeric columns that still lack room after the
/// text columns gave what they can get it in proportion to their need.
fn widen_numeric(
    cols: &[Col],
    rows: &[Row],
    size: f32,
    regular: &Face,
    bold: &Face,
) -> Option<Vec<Col>> {
    let floor = numeric_floor(size);
    let mut need = vec![0.0f32; cols.len()];
    for row in rows {
        let Row::Cells(cells, kind) = row else {
            continue;
        };
        let face = if *kind == RowKind::Subtotal {
            bold
        } else {
            regular
        };
        for ((c, s), n) in cols.iter().zip(cells).zip(need.iter_mut()) {
            if c.numeric && !s.is_empty() {
                *n = n.max(face.width(s, floor) + 4.0);
            }
        }
    }
    let lack: Vec<f32> = cols
        .iter()
        .zip(&need)
        .map(|(c, n)| {
            if c.numeric {
                (n - c.width).max(0.0)
            } else {
                0.0
            }
        })
        .collect();
    let lacking: f32 = lack.iter().sum();
    if lacking <= 0.0 {
        return None;
    }
    let spare: Vec<f32> = cols
        .iter()
        .map(|c| {
            if c.numeric {
                0.0
            } else {
                c.width * (1.0 - TEXT_KEEP)
            }
        })
        .collect();
    let available: f32 = spare.iter().sum();
    let moved = lacking.min(available);
    if moved <= 0.0 {
        return None;
    }
    Some(
        cols.iter()
            .zip(spare.iter().zip(&lack))
            .map(|(c, (sp, la))| Col {
                width: c.width - moved * sp / available + moved * la / lacking,
                align: c.align,
                header: c.header.clone(),
                numeric: c.numeric,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> Face {
        let t = super::super::template::load(None, "en").unwrap();
        let f = ParsedFont::from_bytes(&t.regular_font, 0, &mut Vec::new()).unwrap();
        Face::new(f, "PLTEST")
    }

    #[test]
    fn measuring_wrapping_and_shortening() {
        let f = face();
        let w = f.width("Müller & Söhne GmbH", 10.0);
        assert!(w > 50.0 && w < 150.0, "{w}");
        assert!(f.width("WWW", 10.0) > f.width("iii", 10.0));
        let s = f.shorten("A very long customer name that does not fit", 10.0, 60.0);
        assert!(s.ends_with('…'), "{s}");
        assert!(f.width(&s, 10.0) <= 60.0);
        assert_eq!(f.shorten("short", 10.0, 60.0), "short");
        let lines = f.wrap(
            "one two three four five six seven eight nine ten",
            10.0,
            60.0,
        );
        assert!(lines.len() > 2);
        assert!(lines.iter().all(|l| f.width(l, 10.0) <= 60.0));
        let lines = f.wrap(&"x".repeat(200), 10.0, 60.0);
        assert!(lines.len() > 3 && lines.iter().all(|l| f.width(l, 10.0) <= 60.0));
        assert_eq!(f.wrap("", 10.0, 60.0), vec![String::new()]);
    }

    fn faces() -> (Face, Face, super::super::template::Loaded) {
        let t = super::super::template::load(None, "en").unwrap();
        let r = ParsedFont::from_bytes(&t.regular_font, 0, &mut Vec::new()).unwrap();
        let b = ParsedFont::from_bytes(&t.bold_font, 0, &mut Vec::new()).unwrap();
        (Face::new(r, "PLREGU"), Face::new(b, "PLBOLD"), t)
    }

    /// Every amount a statement can hold: each magnitude from 0 to the
    /// largest decimal, at the currency's decimals, both signs.
    fn amounts(dp: u32) -> Vec<rust_decimal::Decimal> {
        use rust_decimal::Decimal;
        let mut out = vec![Decimal::ZERO, Decimal::MAX, Decimal::MIN];
        let mut m: i128 = 1;
        for _ in 0..29 {
            for v in [m, m * 25 / 10 + 1, m * 10 - 1] {
                if let Ok(d) = Decimal::try_from_i128_with_scale(v, dp) {
                    out.push(d);
                    out.push(-d);
                }
            }
            m *= 10;
        }
        // The largest mantissa at the currency's decimals.
        out.push(Decimal::from_i128_with_scale(
            79_228_162_514_264_337_593_543_950_335,
            dp,
        ));
        out
    }

    #[test]
    fn a_numeric_cell_is_never_shortened() {
        let f = face();
        for s in [
            "€1,250,000,000.00",
            "1.000.000.000,00 IDR",
            "-79,228,162,514,264,337,593,543,950,335.000",
        ] {
            for max in [20.0, 40.0, 66.0, 120.0, 400.0] {
                let (size, lines) = f.fit_numeric(s, 7.0, 5.25, max);
                assert_eq!(lines.concat(), s, "{max}");
                assert!((5.25..=7.0).contains(&size), "{size}");
                assert!(!lines.concat().contains('…'));
                for l in &lines {
                    assert!(f.width(l, size) <= max + 0.01, "{l} {size} {max}");
                }
            }
        }
        // What fits stays as it was.
        assert_eq!(
            f.fit_numeric("€22.54", 7.0, 5.25, 60.0),
            (7.0, vec!["€22.54".into()])
        );
        // Broken after a group separator, not inside a group.
        let (_, lines) = f.fit_numeric(
            "IDR 79,228,162,514,264,337,593,543,950,335.00",
            7.0,
            5.25,
            60.0,
        );
        assert!(lines.len() > 1);
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| l.ends_with([',', ' ', '.'])),
            "{lines:?}"
        );
    }

    /// Draws tables of every magnitude and currency kind in both locales, at
    /// the template's table size and a large one, and checks what was drawn:
    /// each amount exactly (its lines in order), no ellipsis in a number, and
    /// every text within the printable width.
    #[test]
    fn tables_draw_every_amount_whole_within_the_page() {
        use super::super::format::Formatter;
        use crate::money::Currency;
        let (regular, bold, t) = faces();
        let p = &t.spec.page;
        let (left, right) = (p.margin_left_mm * PT_PER_MM, p.margin_right_mm * PT_PER_MM);
        let page_w = p.width_mm * PT_PER_MM;
        for locale in ["en", "de"] {
            let fmt = Formatter::new(
                super::super::template::load(None, locale)
                    .unwrap()
                    .locale
                    .format,
            );
            for size in [t.spec.style.table_size, 14.0, 4.0] {
                for code in ["EUR", "JPY", "KWD", "IDR", "VND", "USD"] {
                    let c = Currency::parse(code).unwrap();
                    let mut cv = Canvas::new(Geometry {
                        regular: &regular,
                        bold: &bold,
                        width: page_w,
                        height: p.height_mm * PT_PER_MM,
                        left,
                        right,
                        top: p.margin_top_mm * PT_PER_MM,
                        bottom: p.margin_bottom_mm * PT_PER_MM,
                        line_height: t.spec.style.line_height,
                    });
                    let width = cv.text_width();
                    // The default line table's proportions.
                    let spec = [
                        (3.1, false),
                        (3.0, false),
                        (1.4, false),
                        (1.6, false),
                        (2.1, true),
                        (1.0, true),
                        (1.0, true),
                        (2.0, true),
                    ];
                    let total: f32 = spec.iter().map(|s| s.0).sum();
                    let cols: Vec<Col> = spec
                        .iter()
                        .map(|&(w, numeric)| Col {
                            width: w / total * width,
                            align: if numeric { Align::Right } else { Align::Left },
                            header: "Header".into(),
                            numeric,
                        })
                        .collect();
                    let values: Vec<String> = amounts(c.minor_units())
                        .into_iter()
                        .map(|d| fmt.amount(d, c))
                        .collect();
                    let rows = values.iter().flat_map(|v| {
                        let normal = vec![
                            "subscription".into(),
                            "A program with a long name".into(),
                            "October".into(),
                            "DPOR".into(),
                            v.clone(),
                            "4%".into(),
                            "100%".into(),
                            v.clone(),
                        ];
                        let total = vec![
                            "Total of a program with a long name".into(),
                            String::new(),
                            String::new(),
                            String::new(),
                            v.clone(),
                            String::new(),
                            String::new(),
                            v.clone(),
                        ];
                        [
                            Row::Cells(normal, RowKind::Normal),
                            Row::Cells(total, RowKind::Subtotal),
                        ]
                    });
                    let st = TableStyle {
                        size,
                        header_fill: BLACK,
                        subtotal_fill: BLACK,
                        rule: BLACK,
                        caption_color: BLACK,
                    };
                    cv.table(&cols, rows, &st, "(continued)");
                    let (pages, _) = cv.finish("", |_, _| String::new(), 7.0, BLACK);
                    // The texts drawn, in order, with their font, size and x.
                    let mut drawn: Vec<String> = Vec::new();
                    let (mut font, mut pt, mut x) = (String::new(), 0.0, 0.0);
                    for op in pages.iter().flatten() {
                        match op {
                            Op::SetFont {
                                font: PdfFontHandle::External(id),
                                size,
                            } => {
                                font = id.0.clone();
                                pt = size.0;
                            }
                            Op::SetTextCursor { pos } => x = pos.x.0,
                            Op::ShowText { items } => {
                                for item in items {
                                    if let TextItem::Text(s) = item {
                                        let face = if font == "PLBOLD" { &bold } else { &regular };
                                        let w = face.width(s, pt);
                                        assert!(
                                            x >= left - 0.01 && x + w <= page_w - right + 0.01,
                                            "{locale} {code} {size}: {s:?} at {x}+{w}"
                                        );
                                        drawn.push(s.clone());
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    let all = drawn.concat();
                    let mut at = 0;
                    for v in &values {
                        // Each value twice per row, two rows per value.
                        for _ in 0..4 {
                            let found = all[at..].find(v.as_str()).unwrap_or_else(|| {
                                panic!("{locale} {code} {size}: {v} not drawn whole")
                            });
                            at += found + v.len();
                        }
                    }
                    // Only text (no digits in it here) is shortened.
                    for s in &drawn {
                        assert!(
                            !(s.contains('…') && s.chars().any(|c| c.is_ascii_digit())),
                            "{locale} {code} {size}: a number shortened: {s}"
                        );
                    }
                }
            }
        }
    }
}
