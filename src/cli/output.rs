//! Printing for the CLI: aligned tables for people, JSON for scripts.
//!
//! Both paths print the same structs. Writes return errors instead of panicking, so
//! `crawler-agent jobs list | head -1` ends quietly (see `main`).
//!
//! Long fields are cut only for a person: on a terminal a cell is clipped and a line
//! cut to the terminal's width; into a pipe or a file every field is printed whole
//! (line breaks inside a cell become spaces, so a row stays one line).

use serde::Serialize;
use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

/// Whether stdout is a terminal (asked once per process).
pub fn on_terminal() -> bool {
    static TTY: OnceLock<bool> = OnceLock::new();
    *TTY.get_or_init(|| io::stdout().is_terminal())
}

/// The terminal's width in columns, when stdout is a terminal (80 when it does not
/// say; at least 20).
fn terminal_width() -> Option<usize> {
    if !on_terminal() {
        return None;
    }
    let width = terminal_size::terminal_size().map_or(80, |(w, _)| usize::from(w.0));
    Some(if width == 0 { 80 } else { width.max(20) })
}

/// Prints a line to stderr (notes about the output, such as "… N more").
pub fn note(text: impl std::fmt::Display) -> io::Result<()> {
    writeln!(io::stderr().lock(), "{text}")
}

/// Prints `value` as pretty JSON followed by a newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)
}

/// A JSON array written one element at a time, so a long listing is never held in
/// memory whole.
pub struct JsonArray {
    out: io::StdoutLock<'static>,
    items: usize,
}

impl JsonArray {
    pub fn begin() -> io::Result<JsonArray> {
        let mut out = io::stdout().lock();
        write!(out, "[")?;
        Ok(JsonArray { out, items: 0 })
    }

    pub fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> io::Result<()> {
        let sep = if self.items == 0 { "\n" } else { ",\n" };
        write!(self.out, "{sep}")?;
        serde_json::to_writer_pretty(&mut self.out, value)?;
        self.items += 1;
        Ok(())
    }

    pub fn end(mut self) -> io::Result<()> {
        let close = if self.items == 0 { "]" } else { "\n]" };
        writeln!(self.out, "{close}")
    }
}

/// Prints a line to stdout.
pub fn line(text: impl std::fmt::Display) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{text}")
}

/// A table with a header row; columns are padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len() == 1
    }

    /// Prints the rows, and the header unless `header` is false (a later page of a
    /// listing printed page by page; each page is aligned on its own).
    pub fn print_page(&self, header: bool) -> io::Result<()> {
        self.print_rows(if header { 0 } else { 1 })
    }

    pub fn print(&self) -> io::Result<()> {
        self.print_rows(0)
    }

    fn print_rows(&self, skip: usize) -> io::Result<()> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let width = terminal_width();
        let mut out = io::stdout().lock();
        for row in self.rows.iter().skip(skip) {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    text.push_str(cell);
                } else {
                    let pad = widths[i] - cell.chars().count();
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            let text = text.trim_end();
            match width {
                Some(w) => writeln!(out, "{}", cut(text, w))?,
                None => writeln!(out, "{text}")?,
            }
        }
        Ok(())
    }
}

/// `text` with every control character but line feed and tab written as `\u{..}`:
/// stored text comes from the crawler, and an escape sequence in it must not drive
/// the operator's terminal. (JSON output carries the text as it is.)
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` as one table cell: on one line, printable, and on a terminal at most `max`
/// characters.
pub fn clip(text: &str, max: usize) -> String {
    let one_line = printable(&text.replace(['\n', '\r'], " "));
    if on_terminal() {
        cut(&one_line, max)
    } else {
        one_line
    }
}

/// `text` cut to `max` characters, the last one an ellipsis when anything was cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

pub fn or_dash(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::{cut, printable};

    #[test]
    fn printable_escapes_control_characters_but_keeps_lines_and_tabs() {
        assert_eq!(printable("a\x1b[2Jb\r\u{7f}"), "a\\u{1b}[2Jb\\u{d}\\u{7f}");
        assert_eq!(printable("x\n\ty é"), "x\n\ty é");
    }

    #[test]
    fn cut_keeps_short_text_and_marks_what_it_shortens() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("ééééé", 2), "é…");
        assert_eq!(cut("abc", 0), "…");
    }
}
