//! The one table widget every list view draws through (Pipelines, Reviews, Executions,
//! Events, and the views to come): columns with a title and a width, cells of text and a
//! theme style, a selection marker, an optional mark column, and the scrolling window.
//!
//! Every cell is cut to its column's width by [`fit`] and ends with `…` when cut
//! (ratatui's own table cuts silently). The cells a view builds for a row are the same
//! cells the `/` filter matches ([`TableRow::matches`]), together with the row's hidden
//! searchable text (a cause, a full error, an ARN): what the operator reads is what the
//! filter finds.

use std::ops::Range;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::Block;

use super::app::Filter;

/// What a cut cell ends with.
pub const ELLIPSIS: char = '…';

/// The terminal columns `s` takes (wide characters count two).
pub fn width(s: &str) -> usize {
    Span::raw(s).width()
}

fn char_width(c: char) -> usize {
    let mut b = [0u8; 4];
    width(c.encode_utf8(&mut b))
}

/// `text` on one line, cut to `max` terminal columns; when cut, it ends with `…`.
/// Line breaks and tabs read as spaces (a cell is one line).
pub fn fit(text: &str, max: usize) -> String {
    let one_line = text.contains(['\n', '\r', '\t']);
    let text: std::borrow::Cow<'_, str> = if one_line { text.replace(['\n', '\r', '\t'], " ").into() } else { text.into() };
    if width(&text) <= max {
        return text.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_width(c);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push(ELLIPSIS);
    out
}

/// `text` fitted to `max` columns and padded with spaces to exactly `max` (right-aligned
/// when `right`).
pub fn fit_pad(text: &str, max: usize, right: bool) -> String {
    let s = fit(text, max);
    let pad = max.saturating_sub(width(&s));
    if right { format!("{}{s}", " ".repeat(pad)) } else { format!("{s}{}", " ".repeat(pad)) }
}

/// Styled spans cut to `max` terminal columns, the last one ending with `…` when cut.
pub fn fit_spans(spans: Vec<Span<'static>>, max: usize) -> Vec<Span<'static>> {
    let total: usize = spans.iter().map(|s| width(&s.content)).sum();
    if total <= max {
        return spans;
    }
    let mut out = vec![];
    let mut used = 0;
    for s in spans {
        let w = width(&s.content);
        if used + w < max {
            used += w;
            out.push(s);
            continue;
        }
        // This span reaches the edge and more follows: cut it to what is left, ending with
        // the ellipsis (even when it would just fit by itself).
        out.push(Span::styled(fit(&format!("{}{ELLIPSIS}", s.content), max - used), s.style));
        break;
    }
    out
}

/// One cell: its whole text (cut only when drawn) and its style.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cell {
    pub text: String,
    pub style: Style,
}

impl Cell {
    pub fn new(text: impl Into<String>, style: Style) -> Cell {
        Cell { text: text.into(), style }
    }
}

/// A column: its title, how wide it would like to be, how narrow it may get, which columns
/// give up width first when the terminal is narrow (`cut`: higher first; 0 never), and
/// whether it takes the width left over (`grow`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Column {
    pub title: &'static str,
    pub width: u16,
    pub min: u16,
    pub cut: u8,
    pub grow: bool,
}

impl Column {
    /// A column of a fixed width that is never cut.
    pub const fn new(title: &'static str, width: u16) -> Column {
        Column { title, width, min: width, cut: 0, grow: false }
    }

    /// It may shrink to `min` columns; columns with a higher `rank` shrink first.
    pub const fn cut(mut self, min: u16, rank: u8) -> Column {
        self.min = min;
        self.cut = rank;
        self
    }

    /// It takes the width left over.
    pub const fn grow(mut self) -> Column {
        self.grow = true;
        self
    }
}

/// The width of each column in `avail` terminal columns, one space between columns: each
/// column at its width, the `cut` ones shrunk (highest rank first, to their minimum) until
/// the row fits, what is left over to the growing column, and when even the minimums do
/// not fit, the rightmost columns narrowed or left out.
pub fn widths(columns: &[Column], avail: u16) -> Vec<usize> {
    let avail = (avail as usize).saturating_sub(columns.len().saturating_sub(1));
    let mut w: Vec<usize> = columns.iter().map(|c| c.width as usize).collect();
    let mut total: usize = w.iter().sum();
    let mut order: Vec<usize> = (0..columns.len()).filter(|i| columns[*i].cut > 0).collect();
    order.sort_by_key(|i| std::cmp::Reverse(columns[*i].cut));
    for i in order {
        if total <= avail {
            break;
        }
        let take = w[i].saturating_sub(columns[i].min as usize).min(total - avail);
        w[i] -= take;
        total -= take;
    }
    if total < avail
        && let Some(g) = columns.iter().position(|c| c.grow)
    {
        w[g] += avail - total;
    }
    // Still too wide at every minimum: the rightmost columns give way (a cell one column
    // wide still shows `…`), so nothing is ever cut by the border without one.
    for i in (0..w.len()).rev() {
        if total <= avail {
            break;
        }
        let take = w[i].min(total - avail);
        w[i] -= take;
        total -= take;
    }
    w
}

/// A table's layout: its columns, and whether it has a mark column (bulk actions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spec {
    pub columns: &'static [Column],
    pub marks: bool,
}

/// One row: the cells shown, and text the filter also searches but the table does not show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableRow {
    pub cells: Vec<Cell>,
    /// Searchable, not shown (already masked where it is free text about a patient).
    pub hidden: Vec<String>,
    /// Marked for a bulk action.
    pub marked: bool,
}

impl TableRow {
    pub fn new(cells: Vec<Cell>) -> TableRow {
        TableRow { cells, hidden: vec![], marked: false }
    }

    pub fn hidden(mut self, text: impl Into<String>) -> TableRow {
        let t = text.into();
        if !t.is_empty() {
            self.hidden.push(t);
        }
        self
    }

    /// The hidden searchable text, computed only when the row is `for_search` (drawing a row
    /// needs none of it).
    pub fn search_also(mut self, for_search: bool, texts: impl FnOnce() -> Vec<String>) -> TableRow {
        if for_search {
            self.hidden.extend(texts().into_iter().filter(|t| !t.is_empty()));
        }
        self
    }

    pub fn marked(mut self, marked: bool) -> TableRow {
        self.marked = marked;
        self
    }

    /// Whether any shown cell (whole, uncut) or hidden text matches the filter's pattern.
    pub fn matches(&self, f: &Filter) -> bool {
        self.cells.iter().map(|c| c.text.as_str()).chain(self.hidden.iter().map(String::as_str)).any(|t| f.regex.is_match(t))
    }

    /// Whether the filter keeps this row (`!` inverts).
    pub fn kept_by(&self, f: &Filter) -> bool {
        self.matches(f) != f.invert
    }
}

/// The rows (by index) a table of `rows` rows shows in `area` (borders and header taken off)
/// with `selected` in view.
pub fn window(rows: usize, selected: usize, area: Rect) -> Range<usize> {
    let h = area.height.saturating_sub(3) as usize;
    let first = if h == 0 || selected < h { 0 } else { (selected + 1).saturating_sub(h).min(rows.saturating_sub(h)) };
    first..rows.min(first + h)
}

/// The table as drawn: `rows` are the rows of `window(...)`, the first being row `first`.
pub struct DataTable<'a> {
    pub columns: &'a [Column],
    pub rows: Vec<TableRow>,
    pub first: usize,
    pub selected: Option<usize>,
    /// Draw a mark column (`•`) beside the selection marker.
    pub marks: bool,
    pub block: Block<'a>,
    pub header_style: Style,
    pub selected_style: Style,
}

impl DataTable<'_> {
    pub fn render(self, f: &mut Frame, area: Rect) {
        let inner = self.block.inner(area);
        f.render_widget(self.block, area);
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        let lead = if self.marks { 2 } else { 1 };
        let widths = widths(self.columns, inner.width.saturating_sub(lead + 1));
        // Straight into the buffer, each cell at its column: no padding to lay out again.
        let buf = f.buffer_mut();
        let right = inner.right();
        let put = |buf: &mut ratatui::buffer::Buffer, y: u16, cells: &mut dyn Iterator<Item = (&str, Style)>| {
            let mut x = inner.x.saturating_add(lead + 1);
            for ((text, style), w) in cells.zip(&widths) {
                if *w == 0 {
                    continue;
                }
                if x >= right {
                    break;
                }
                let w = (*w).min(usize::from(right - x));
                buf.set_stringn(x, y, fit(text, w), w, style);
                x = x.saturating_add(u16::try_from(w).unwrap_or(u16::MAX)).saturating_add(1);
            }
        };
        buf.set_style(Rect { height: 1, ..inner }, self.header_style);
        put(buf, inner.y, &mut self.columns.iter().map(|c| (c.title, self.header_style)));
        for (i, row) in self.rows.into_iter().enumerate() {
            let Some(y) = u16::try_from(i + 1).ok().map(|d| inner.y.saturating_add(d)).filter(|y| *y < inner.bottom()) else { break };
            let selected = self.selected == Some(self.first + i);
            let line = Rect { y, height: 1, ..inner };
            if selected {
                buf.set_style(line, self.selected_style);
            }
            let mut lead_text = String::from(if selected { "▶" } else { " " });
            if self.marks {
                lead_text.push(if row.marked { '•' } else { ' ' });
            }
            buf.set_stringn(inner.x, y, lead_text, usize::from(lead), Style::default());
            put(buf, y, &mut row.cells.iter().map(|c| (c.text.as_str(), c.style)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_fits_is_left_alone() {
        assert_eq!(fit("Archive", 7), "Archive");
        assert_eq!(fit("", 0), "");
        assert_eq!(fit("abc", 10), "abc");
    }

    #[test]
    fn cut_text_ends_with_an_ellipsis_within_the_width() {
        assert_eq!(fit("Archive.Unavailable", 10), "Archive.U…");
        assert_eq!(width(&fit("Archive.Unavailable", 10)), 10);
        assert_eq!(fit("abc", 1), "…");
        assert_eq!(fit("abc", 0), "");
        assert_eq!(fit("line one\nline two", 12), "line one li…");
    }

    #[test]
    fn styled_lines_are_cut_with_an_ellipsis_too() {
        let spans = vec![Span::raw(" exceptions "), Span::raw("publish failed 2"), Span::raw(" · "), Span::raw("aborted 1")];
        let cut = fit_spans(spans.clone(), 24);
        let text: String = cut.iter().map(|s| s.content.to_string()).collect();
        assert_eq!(text, " exceptions publish fai…");
        assert_eq!(fit_spans(spans.clone(), 80).len(), 4, "what fits is left alone");
        let text: String = fit_spans(spans, 12).iter().map(|s| s.content.to_string()).collect();
        assert_eq!(text, " exceptions…");
    }

    #[test]
    fn wide_characters_count_two_columns() {
        // Each CJK character takes two columns: 5 columns hold two of them and the ellipsis.
        assert_eq!(fit("放射線科医", 5), "放射…");
        assert_eq!(width(&fit("放射線科医", 5)), 5);
        // Never half a wide character: 4 columns hold one and the ellipsis (3), not more.
        assert_eq!(fit("放射線科医", 4), "放…");
        assert_eq!(fit("放射線科医", 10), "放射線科医");
        assert_eq!(fit("aé放b", 4), "aé…");
        assert_eq!(fit_pad("放射線科医", 6, false), "放射… ");
        assert_eq!(fit_pad("ok", 4, true), "  ok");
    }

    #[test]
    fn the_filter_matches_every_cell_uncut_and_the_hidden_text() {
        let row = TableRow::new(vec![Cell::new("ACC-1", Style::default()), Cell::new("Archive.Unavailable", Style::default())])
            .hidden("Reschedule or cancel the order");
        let f = |t: &str| Filter::parse(t).expect("filter");
        assert!(row.kept_by(&f("Archive")));
        assert!(row.kept_by(&f("unavailable$")), "the whole cell, not what fits");
        assert!(row.kept_by(&f("reschedule")), "hidden text is searched");
        assert!(!row.kept_by(&f("!reschedule")));
        assert!(row.kept_by(&f("!nothing-like-this")));
        assert!(!row.kept_by(&f("ACC-1 Archive")), "one cell at a time");
    }

    #[test]
    fn narrow_tables_cut_the_columns_that_matter_least_first() {
        let cols = [
            Column::new("STATUS", 9),
            Column::new("MACHINE", 18).cut(6, 2),
            Column::new("NAME", 22).cut(12, 1),
            Column::new("ERROR", 20).cut(6, 3).grow(),
        ];
        // Wide: everything at its width, the rest to the growing column.
        assert_eq!(widths(&cols, 120), vec![9, 18, 22, 68]);
        // 60 wide (57 after the gaps): the growing column gives up first, then the machine.
        assert_eq!(widths(&cols, 60), vec![9, 18, 22, 8]);
        assert_eq!(widths(&cols, 50), vec![9, 10, 22, 6]);
        // Very narrow: the name is cut last.
        assert_eq!(widths(&cols, 36), vec![9, 6, 12, 6]);
        // Narrower than every minimum: the rightmost columns give way, never past the edge.
        assert_eq!(widths(&cols, 20), vec![9, 6, 2, 0]);
    }

    #[test]
    fn the_window_keeps_the_selection_in_view() {
        let area = Rect { x: 0, y: 0, width: 80, height: 13 };
        assert_eq!(window(100, 0, area), 0..10);
        assert_eq!(window(100, 9, area), 0..10);
        assert_eq!(window(100, 10, area), 1..11);
        assert_eq!(window(100, 99, area), 90..100);
        assert_eq!(window(3, 2, area), 0..3);
        assert_eq!(window(3, 2, Rect { height: 2, ..area }), 0..0);
    }
}
