//! A Woo document as a PDF: A4 pages in the standard Courier font, whose
//! every character is 0.6 em wide, so a redacted passage's box sits exactly
//! where its text would have been. The redacted text is never written: the
//! box is a filled rectangle with the ground code on it.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};

use super::{Document, Marked};

const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;
const MARGIN: f32 = 56.0;
const FONT_SIZE: f32 = 9.0;
/// Courier's advance: 600 units of 1000.
const CHAR_WIDTH: f32 = FONT_SIZE * 0.6;
const LINE_HEIGHT: f32 = 12.0;
/// Characters on a line: (595 - 2 × 56) / 5.4.
const COLUMNS: usize = 89;
/// Lines of messages on a page, below the two heading lines.
const LINES: usize = 58;
const INDENT: usize = 7;

/// A redaction box as placed: the redaction log names its page.
#[derive(Clone, Debug)]
pub(crate) struct PlacedBox {
    pub page: usize,
    pub event_id: String,
    pub grounds: String,
    /// Characters redacted.
    pub chars: usize,
}

pub(crate) struct Rendered {
    pub bytes: Vec<u8>,
    pub pages: usize,
    pub boxes: Vec<PlacedBox>,
}

/// What a line holds, from its column on.
enum Piece {
    Text(String),
    Box { label: String, width: usize },
}

type Line = Vec<(usize, Piece)>;

/// What wrapping works with: words, the spaces between them, line breaks,
/// and boxes (which never break).
enum Token {
    Word(String),
    Space,
    Break,
    Box { label: String, chars: usize },
}

fn tokens(marked: &Marked) -> Vec<Token> {
    let mut out = Vec::new();
    for (text, grounds) in marked.runs() {
        match grounds {
            Some(label) => out.push(Token::Box {
                chars: text.chars().count(),
                label,
            }),
            None => {
                let mut word = String::new();
                for c in text.chars() {
                    if c == ' ' || c == '\n' {
                        if !word.is_empty() {
                            out.push(Token::Word(std::mem::take(&mut word)));
                        }
                        out.push(if c == ' ' { Token::Space } else { Token::Break });
                    } else {
                        word.push(c);
                    }
                }
                if !word.is_empty() {
                    out.push(Token::Word(word));
                }
            }
        }
    }
    out
}

/// Lays `marked` out from column `indent` on, wrapping at [`COLUMNS`];
/// each box is reported with its line (counted from the first).
fn wrap(
    marked: &Marked,
    indent: usize,
    lines: &mut Vec<Line>,
    boxes: &mut Vec<(usize, String, usize)>,
) {
    let width = COLUMNS - indent;
    let mut line: Line = Vec::new();
    let mut col = 0;
    let mut pending_space = false;
    let flush = |line: &mut Line, col: &mut usize, lines: &mut Vec<Line>| {
        lines.push(std::mem::take(line));
        *col = 0;
    };
    for token in tokens(marked) {
        match token {
            Token::Space => pending_space = col > 0,
            Token::Break => {
                flush(&mut line, &mut col, lines);
                pending_space = false;
            }
            Token::Word(word) => {
                let mut rest: Vec<char> = word.chars().collect();
                while !rest.is_empty() {
                    let mut space = usize::from(pending_space);
                    if col > 0 && col + space + rest.len() > width {
                        flush(&mut line, &mut col, lines);
                        space = 0;
                    }
                    pending_space = false;
                    let take = rest.len().min(width - col - space);
                    let part: String = rest.drain(..take).collect();
                    // A line's words make one run of text, as it reads.
                    match line.last_mut() {
                        Some((start, Piece::Text(run)))
                            if *start + run.chars().count() == indent + col =>
                        {
                            run.extend(std::iter::repeat_n(' ', space));
                            run.push_str(&part);
                        }
                        _ => line.push((indent + col + space, Piece::Text(part))),
                    }
                    col += space + take;
                    if !rest.is_empty() {
                        flush(&mut line, &mut col, lines);
                    }
                }
            }
            Token::Box { label, chars } => {
                let box_width = chars.max(label.chars().count() + 2).min(width);
                let space = usize::from(pending_space);
                if col > 0 && col + space + box_width > width {
                    flush(&mut line, &mut col, lines);
                } else {
                    col += space;
                }
                pending_space = false;
                boxes.push((lines.len(), label.clone(), chars));
                line.push((
                    indent + col,
                    Piece::Box {
                        label,
                        width: box_width,
                    },
                ));
                col += box_width;
            }
        }
    }
    lines.push(line);
}

/// Renders `document` of the request `matter`.
pub(crate) fn render(document: &Document, matter: &str) -> Rendered {
    // Lay out every message: its header, its text indented, a blank line.
    let mut lines: Vec<Line> = Vec::new();
    let mut boxes = Vec::new();
    for message in &document.messages {
        let mut placed = Vec::new();
        let start = lines.len();
        wrap(&message.header, 0, &mut lines, &mut placed);
        wrap(&message.body, INDENT, &mut lines, &mut placed);
        lines.push(Vec::new());
        for (line, grounds, chars) in placed {
            boxes.push((start + line, message.event_id.clone(), grounds, chars));
        }
    }
    let pages = lines.len().div_ceil(LINES).max(1);

    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let info = Ref::new(4);
    let page_ids: Vec<Ref> = (0..pages).map(|n| Ref::new(5 + 2 * n as i32)).collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(pages as i32);
    pdf.type1_font(font)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.document_info(info)
        .title(TextStr(&document.title))
        .subject(TextStr(&format!("Woo {matter}, document {}", document.id)))
        .producer(TextStr("Archipel"));
    let heading = format!("{matter} - document {}", document.id);
    for (n, page_id) in page_ids.iter().enumerate() {
        let content_id = Ref::new(page_id.get() + 1);
        let mut content = Content::new();
        let top = PAGE_HEIGHT - MARGIN;
        text(&mut content, MARGIN, top, &heading);
        let footer = format!("pagina {} van {pages}", n + 1);
        text(
            &mut content,
            PAGE_WIDTH - MARGIN - footer.chars().count() as f32 * CHAR_WIDTH,
            top,
            &footer,
        );
        text(
            &mut content,
            MARGIN,
            top - LINE_HEIGHT,
            &clip(&document.title, COLUMNS),
        );
        let first = n * LINES;
        for (row, line) in lines.iter().skip(first).take(LINES).enumerate() {
            let y = top - LINE_HEIGHT * (row as f32 + 3.0);
            for (col, piece) in line {
                let x = MARGIN + *col as f32 * CHAR_WIDTH;
                match piece {
                    Piece::Text(t) => text(&mut content, x, y, t),
                    Piece::Box { label, width } => {
                        let w = *width as f32 * CHAR_WIDTH;
                        content.set_fill_gray(0.0);
                        content.rect(x, y - 3.0, w, LINE_HEIGHT - 1.0);
                        content.fill_nonzero();
                        content.set_fill_gray(1.0);
                        let label_x = x + (w - label.chars().count() as f32 * CHAR_WIDTH) / 2.0;
                        text(&mut content, label_x, y, label);
                        content.set_fill_gray(0.0);
                    }
                }
            }
        }
        let stream = content.finish();
        pdf.stream(content_id, &stream);
        let mut page = pdf.page(*page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_WIDTH, PAGE_HEIGHT));
        page.parent(tree);
        page.contents(content_id);
        page.resources().fonts().pair(Name(b"F1"), font);
        page.finish();
    }
    Rendered {
        bytes: pdf.finish(),
        pages,
        boxes: boxes
            .into_iter()
            .map(|(line, event_id, grounds, chars)| PlacedBox {
                page: line / LINES + 1,
                event_id,
                grounds,
                chars,
            })
            .collect(),
    }
}

fn clip(text: &str, columns: usize) -> String {
    text.chars().take(columns).collect()
}

fn text(content: &mut Content, x: f32, y: f32, text: &str) {
    let bytes: Vec<u8> = text.chars().map(win_ansi).collect();
    content.begin_text();
    content.set_font(Name(b"F1"), FONT_SIZE);
    content.next_line(x, y);
    content.show(Str(&bytes));
    content.end_text();
}

/// A character in the standard fonts' WinAnsiEncoding; `?` for what it
/// cannot show.
fn win_ansi(c: char) -> u8 {
    match c {
        ' '..='~' => c as u8,
        '\u{A0}'..='\u{FF}' => c as u32 as u8,
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        _ => b'?',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laid_out(marked: &Marked, indent: usize) -> (Vec<String>, usize) {
        let mut lines = Vec::new();
        let mut boxes = Vec::new();
        wrap(marked, indent, &mut lines, &mut boxes);
        let shown = lines
            .iter()
            .map(|line| {
                let mut row = String::new();
                for (col, piece) in line {
                    while row.chars().count() < *col {
                        row.push(' ');
                    }
                    match piece {
                        Piece::Text(t) => row.push_str(t),
                        Piece::Box { width, .. } => row.push_str(&"#".repeat(*width)),
                    }
                }
                row
            })
            .collect();
        (shown, boxes.len())
    }

    #[test]
    fn long_text_wraps_at_words_and_boxes_take_the_passages_place() {
        let mut marked = Marked {
            text: format!("{} bel 0612345678 nu\nnieuwe regel", "woord ".repeat(20)),
            marks: Vec::new(),
        };
        marked.mark("0612345678", "5.1.2e");
        let (lines, boxes) = laid_out(&marked, INDENT);
        assert_eq!(boxes, 1);
        assert!(
            lines.iter().all(|l| l.chars().count() <= COLUMNS),
            "{lines:#?}"
        );
        assert!(lines.iter().all(|l| !l.contains("0612345678")));
        assert!(
            lines.iter().any(|l| l.contains("########## nu")),
            "{lines:#?}"
        );
        assert_eq!(lines.last().map(|l| l.trim()), Some("nieuwe regel"));
    }

    #[test]
    fn a_word_longer_than_a_line_is_cut() {
        let marked = Marked {
            text: "x".repeat(200),
            marks: Vec::new(),
        };
        let (lines, _) = laid_out(&marked, 0);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), COLUMNS);
    }

    #[test]
    fn characters_outside_win_ansi_become_question_marks() {
        assert_eq!(win_ansi('é'), 0xE9);
        assert_eq!(win_ansi('€'), 0x80);
        assert_eq!(win_ansi('😀'), b'?');
    }
}
