//! WhatsApp's "Export chat" text: `_chat.txt` from iOS, `WhatsApp Chat
//! with <name>.txt` from Android, in Dutch and English.
//!
//! Each message starts with a header (a date, a time, and the author's
//! name unless it is a system message); a line without one continues the
//! message before it. The apps write the header differently per platform
//! and language:
//!
//! | source      | header                                      |
//! |-------------|---------------------------------------------|
//! | Android, NL | `12-03-2024 14:05 - Jan de Vries: bericht`  |
//! | Android, EN | `12/03/2024, 14:05 - Jan: msg`, US `3/12/24, 2:05 PM - Jan: msg` |
//! | iOS, NL     | `[12-03-2024 14:05:33] Jan de Vries: bericht` (or with a comma) |
//! | iOS, EN     | `[12/03/2024, 14:05:33] Jan: msg`           |
//!
//! and insert invisible marks (U+200E, U+200F and others) and no-break
//! spaces (U+00A0, U+202F before AM/PM), which are removed before reading.
//! Whether the day or the month comes first is read from all the dates of
//! the file together. Times are the device's local time; the export does
//! not say which time zone.

use jiff::civil::{Date, DateTime, Time};

/// One message of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// The line (from 1) of its header.
    pub line: usize,
    /// The device's local time when it was sent.
    pub time: DateTime,
    /// Who sent it; none for a system message ("… heeft … toegevoegd").
    pub author: Option<String>,
    /// The text, its lines joined with `\n`, invisible marks removed.
    pub text: String,
    /// A file of the export the message attached.
    pub attachment: Option<String>,
    /// The message had media that the export left out.
    pub media_omitted: bool,
}

/// Why an export cannot be read: nothing of it should be imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line (from 1).
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Marks the apps insert that are not part of the text.
const INVISIBLE: &[char] = &[
    '\u{feff}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}',
    '\u{202c}', '\u{202d}', '\u{202e}', '\u{00ad}',
];

/// What the apps write instead of media left out of the export.
const MEDIA_OMITTED: &[&str] = &[
    "<Media weggelaten>",
    "<Media omitted>",
    "afbeelding weggelaten",
    "video weggelaten",
    "audio weggelaten",
    "sticker weggelaten",
    "document weggelaten",
    "GIF weggelaten",
    "image omitted",
    "video omitted",
    "audio omitted",
    "sticker omitted",
    "document omitted",
    "GIF omitted",
];

/// System messages that contain `: ` and so look like an author's.
const SYSTEM_WITH_COLON: &[&str] = &[
    "heeft het onderwerp gewijzigd",
    "heeft de groepsbeschrijving gewijzigd",
    "hebt het onderwerp gewijzigd",
    "changed the subject",
    "changed the group description",
    "changed this group's settings",
];

/// A line without its invisible marks, with ordinary spaces.
fn clean(line: &str) -> String {
    line.chars()
        .filter(|c| !INVISIBLE.contains(c))
        .map(|c| {
            if c == '\u{00a0}' || c == '\u{202f}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// A header's parts before the day and month are told apart.
struct Header<'a> {
    /// The date's three numbers in their order, and how many digits the
    /// first and last had.
    numbers: [u32; 3],
    first_digits: usize,
    last_digits: usize,
    hour: u32,
    minute: u32,
    second: u32,
    /// After the header: `Author: text`, or a system message.
    rest: &'a str,
}

/// Digits at the start of `text`, at most `max`: their value, how many,
/// and what follows.
fn number(text: &str, max: usize) -> Option<(u32, usize, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > max {
        return None;
    }
    Some((text[..digits].parse().ok()?, digits, &text[digits..]))
}

/// Reads a message header at the start of `line` (cleaned), if it has one.
fn header(line: &str) -> Option<Header<'_>> {
    let (bracketed, text) = match line.strip_prefix('[') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (a, first_digits, text) = number(text, 4)?;
    let separator = text
        .chars()
        .next()
        .filter(|c| matches!(c, '-' | '/' | '.'))?;
    let (b, _, text) = number(&text[1..], 2)?;
    let text = text.strip_prefix(separator)?;
    let (c, last_digits, text) = number(text, 4)?;
    let text = text.strip_prefix(',').unwrap_or(text);
    let text = text.strip_prefix(' ')?.trim_start();
    let (mut hour, _, text) = number(text, 2)?;
    let text = text.strip_prefix([':', '.'])?;
    let (minute, minute_digits, mut text) = number(text, 2)?;
    if minute_digits != 2 {
        return None;
    }
    let mut second = 0;
    if let Some(rest) = text.strip_prefix([':', '.'])
        && let Some((s, 2, rest)) = number(rest, 2)
    {
        second = s;
        text = rest;
    }
    // A 12-hour clock: "2:05 PM", "2:05 p.m.", "2:05 pm".
    let lower = text.to_ascii_lowercase();
    for (marker, afternoon) in [
        (" am", false),
        (" pm", true),
        (" a.m.", false),
        (" p.m.", true),
    ] {
        if lower.starts_with(marker) {
            if !(1..=12).contains(&hour) {
                return None;
            }
            hour = match (hour, afternoon) {
                (12, false) => 0,
                (12, true) => 12,
                (h, true) => h + 12,
                (h, false) => h,
            };
            text = &text[marker.len()..];
            break;
        }
    }
    let rest = if bracketed {
        text.strip_prefix(']')?.strip_prefix(' ')?
    } else {
        text.strip_prefix(" - ")?
    };
    Some(Header {
        numbers: [a, b, c],
        first_digits,
        last_digits,
        hour,
        minute,
        second,
        rest,
    })
}

/// The order of a file's dates, told from all of them together.
#[derive(Clone, Copy)]
enum Order {
    DayMonthYear,
    MonthDayYear,
    YearMonthDay,
}

fn order(headers: &[(usize, Header<'_>)]) -> Order {
    if headers.iter().any(|(_, h)| h.first_digits == 4) {
        Order::YearMonthDay
    } else if headers.iter().any(|(_, h)| h.numbers[0] > 12) {
        Order::DayMonthYear
    } else if headers.iter().any(|(_, h)| h.numbers[1] > 12) {
        Order::MonthDayYear
    } else {
        // Dutch and British exports put the day first.
        Order::DayMonthYear
    }
}

fn date(header: &Header<'_>, order: Order) -> Option<Date> {
    let [a, b, c] = header.numbers;
    let (year, month, day, year_digits) = match order {
        Order::DayMonthYear => (c, b, a, header.last_digits),
        Order::MonthDayYear => (c, a, b, header.last_digits),
        Order::YearMonthDay => (a, b, c, header.first_digits),
    };
    let year = match year_digits {
        2 => 2000 + year,
        4 => year,
        _ => return None,
    };
    Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()
}

/// `Author: text`, if the part before `: ` is an author of the file.
fn split_author<'a>(rest: &'a str, authors: &[&str]) -> Option<(&'a str, &'a str)> {
    let (name, text) = rest.split_once(": ")?;
    authors.contains(&name).then_some((name, text))
}

/// What may be an author: the part before the first `: `, unless it is a
/// system message that contains one.
fn author_candidate(rest: &str) -> Option<&str> {
    let (name, _) = rest.split_once(": ")?;
    if name.is_empty() || SYSTEM_WITH_COLON.iter().any(|phrase| name.contains(phrase)) {
        return None;
    }
    Some(name)
}

/// A file the message attaches: `<bijgevoegd: NAME>`, `<attached: NAME>`,
/// `NAME (bestand bijgevoegd)` or `NAME (file attached)`.
fn attachment(text: &str) -> Option<String> {
    let first = text.lines().next()?.trim();
    for prefix in ["<bijgevoegd: ", "<attached: "] {
        if let Some(name) = first.strip_prefix(prefix).and_then(|r| r.strip_suffix('>')) {
            return Some(name.trim().to_owned());
        }
    }
    for suffix in [" (bestand bijgevoegd)", " (file attached)"] {
        if let Some(name) = first.strip_suffix(suffix) {
            return Some(name.trim().to_owned());
        }
    }
    None
}

/// Reads an export's text. A file that does not start with a message, or
/// has a date that does not exist, is refused with the line.
pub fn parse(text: &str) -> Result<Vec<ChatMessage>, ParseError> {
    let lines: Vec<String> = text.lines().map(clean).collect();
    let headers: Vec<(usize, Header<'_>)> = lines
        .iter()
        .enumerate()
        .filter_map(|(n, line)| header(line).map(|h| (n, h)))
        .collect();
    let Some(&(first, _)) = headers.first() else {
        let line = lines.iter().position(|l| !l.trim().is_empty()).unwrap_or(0) + 1;
        return Err(ParseError {
            line,
            reason: "no WhatsApp message header (a date and a time) in the file".into(),
        });
    };
    if let Some(n) = lines[..first].iter().position(|l| !l.trim().is_empty()) {
        return Err(ParseError {
            line: n + 1,
            reason: "text before the first message: not a WhatsApp chat export".into(),
        });
    }
    let order = order(&headers);
    let authors: Vec<&str> = {
        let mut authors: Vec<&str> = headers
            .iter()
            .filter_map(|(_, h)| author_candidate(h.rest))
            .collect();
        authors.sort_unstable();
        authors.dedup();
        authors
    };
    let mut messages: Vec<ChatMessage> = Vec::with_capacity(headers.len());
    let mut next_header = headers.iter().peekable();
    for (n, line) in lines.iter().enumerate().skip(first) {
        let starts = next_header.peek().is_some_and(|(at, _)| *at == n);
        if !starts {
            let message = messages.last_mut().expect("a message before");
            message.text.push('\n');
            message.text.push_str(line);
            continue;
        }
        let (_, header) = next_header.next().expect("peeked");
        let day = date(header, order).ok_or_else(|| ParseError {
            line: n + 1,
            reason: "a date that does not exist".into(),
        })?;
        let time = Time::new(
            i8::try_from(header.hour).unwrap_or(i8::MAX),
            i8::try_from(header.minute).unwrap_or(i8::MAX),
            i8::try_from(header.second).unwrap_or(i8::MAX),
            0,
        )
        .map_err(|_| ParseError {
            line: n + 1,
            reason: "a time that does not exist".into(),
        })?;
        let (author, text) = match split_author(header.rest, &authors) {
            Some((name, text)) => (Some(name.to_owned()), text),
            None => (None, header.rest),
        };
        messages.push(ChatMessage {
            line: n + 1,
            time: day.to_datetime(time),
            author,
            text: text.to_owned(),
            attachment: None,
            media_omitted: false,
        });
    }
    for message in &mut messages {
        message.text = message.text.trim_end().to_owned();
        message.attachment = attachment(&message.text);
        message.media_omitted = MEDIA_OMITTED.contains(&message.text.trim());
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime {
        text.parse().expect("a date and time")
    }

    #[test]
    fn android_in_dutch() {
        let export = "12-03-2024 14:05 - Berichten en gesprekken worden end-to-end versleuteld. Niemand buiten deze chat kan ze lezen of beluisteren, zelfs WhatsApp niet.\n\
                      12-03-2024 14:05 - Jan de Vries: Goedemiddag\n\
                      13-03-2024 09:01 - Piet: Zie: de notitie\n\
                      en de bijlage\n\
                      13-03-2024 09:02 - Piet: IMG-20240313-WA0001.jpg (bestand bijgevoegd)\n\
                      13-03-2024 09:03 - Jan de Vries: <Media weggelaten>\n\
                      13-03-2024 09:04 - Jan de Vries heeft Piet toegevoegd\n";
        let messages = parse(export).expect("readable");
        assert_eq!(messages.len(), 6);
        assert_eq!(messages[0].author, None, "the encryption notice");
        assert_eq!(messages[1].author.as_deref(), Some("Jan de Vries"));
        assert_eq!(messages[1].time, at("2024-03-12T14:05:00"));
        assert_eq!(messages[2].text, "Zie: de notitie\nen de bijlage");
        assert_eq!(messages[2].line, 3);
        assert_eq!(
            messages[3].attachment.as_deref(),
            Some("IMG-20240313-WA0001.jpg")
        );
        assert!(messages[4].media_omitted);
        assert_eq!(messages[5].author, None);
        assert_eq!(messages[5].text, "Jan de Vries heeft Piet toegevoegd");
    }

    #[test]
    fn ios_in_dutch_with_and_without_a_comma_and_marks() {
        let export = "\u{feff}[12-03-2024 14:05:33] Jan de Vries: bericht\r\n\
                      [12-03-2024, 14:06:01] Piet: \u{200e}<bijgevoegd: 00000012-PHOTO-2024-03-12-14-05-33.jpg>\r\n\
                      \u{200e}[12-03-2024 14:07:00] Piet: afbeelding weggelaten\r\n";
        let messages = parse(export).expect("readable");
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].time, at("2024-03-12T14:05:33"));
        assert_eq!(messages[0].text, "bericht");
        assert_eq!(
            messages[1].attachment.as_deref(),
            Some("00000012-PHOTO-2024-03-12-14-05-33.jpg")
        );
        assert!(messages[2].media_omitted);
    }

    #[test]
    fn english_with_a_twelve_hour_clock_and_the_month_first() {
        let export = "3/12/24, 2:05\u{202f}PM - Jane: Hi: there\n\
                      3/13/24, 12:01\u{202f}AM - Jane: late\n\
                      3/13/24, 12:30\u{202f}PM - You changed the subject to \"Budget: 2025\"\n";
        let messages = parse(export).expect("readable");
        assert_eq!(messages[0].time, at("2024-03-12T14:05:00"));
        assert_eq!(messages[0].text, "Hi: there");
        assert_eq!(messages[1].time, at("2024-03-13T00:01:00"));
        assert_eq!(messages[2].author, None, "a system message with a colon");
    }

    #[test]
    fn british_english_puts_the_day_first() {
        let export = "[01/02/2024, 10:00:00] Ann: one\n[13/02/2024, 10:00:00] Ann: two\n";
        let messages = parse(export).expect("readable");
        assert_eq!(messages[0].time, at("2024-02-01T10:00:00"));
        assert_eq!(messages[1].time, at("2024-02-13T10:00:00"));
    }

    #[test]
    fn what_is_not_an_export_is_refused_with_its_line() {
        assert_eq!(
            parse("Dear diary\n12-03-2024 14:05 - Jan: hoi\n")
                .expect_err("text first")
                .line,
            1
        );
        assert_eq!(
            parse("\n\nno messages here\n").expect_err("no header").line,
            3
        );
        let refused = parse("12-03-2024 14:05 - Jan: hoi\n31-02-2024 14:06 - Jan: hoi\n")
            .expect_err("no 31 February");
        assert_eq!(refused.line, 2);
        assert!(refused.reason.contains("date"), "{refused}");
        assert_eq!(
            parse("12-03-2024 25:05 - Jan: hoi\n")
                .expect_err("no hour 25")
                .line,
            1
        );
    }

    /// One message as each of four apps writes it.
    fn render(format: usize, time: DateTime, author: &str, body: &str) -> String {
        let (y, mo, d) = (time.year(), time.month(), time.day());
        let (h, mi, s) = (time.hour(), time.minute(), time.second());
        match format {
            // Android, Dutch.
            0 => format!("{d:02}-{mo:02}-{y} {h:02}:{mi:02} - {author}: {body}"),
            // iOS, Dutch.
            1 => format!("[{d:02}-{mo:02}-{y} {h:02}:{mi:02}:{s:02}] {author}: {body}"),
            // Android, American English: the month first, a 12-hour clock.
            2 => {
                let (h12, half) = match h {
                    0 => (12, "AM"),
                    1..=11 => (h, "AM"),
                    12 => (12, "PM"),
                    _ => (h - 12, "PM"),
                };
                format!(
                    "{mo}/{d}/{:02}, {h12}:{mi:02}\u{202f}{half} - {author}: {body}",
                    y % 100
                )
            }
            // iOS, British English.
            _ => format!("[{d:02}/{mo:02}/{y}, {h:02}:{mi:02}:{s:02}] {author}: {body}"),
        }
    }

    #[test]
    fn messages_written_in_each_format_read_back() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(2026);
        let authors = ["Jan de Vries", "Piet", "Anne-Marie Öz"];
        let words = [
            "budget",
            "nota:",
            "Zie",
            "14:05",
            "- ok",
            "[1]",
            "één",
            "12-03-2024",
        ];
        for format in 0..4 {
            let mut export = String::new();
            let mut expected = Vec::new();
            // Fifty messages: some day above 12 tells the date order.
            for _ in 0..50 {
                let time = DateTime::new(
                    2024,
                    rng.gen_range(1..=12),
                    rng.gen_range(1..=28),
                    rng.gen_range(0..24),
                    rng.gen_range(0..60),
                    if format % 2 == 1 {
                        rng.gen_range(0..60)
                    } else {
                        0
                    },
                    0,
                )
                .expect("a time");
                let author = authors[rng.gen_range(0..authors.len())];
                let lines: Vec<String> = (0..rng.gen_range(1..=3))
                    .map(|_| {
                        (0..rng.gen_range(1..=5))
                            .map(|_| words[rng.gen_range(0..words.len())])
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                let body = lines.join("\n");
                export.push_str(&render(format, time, author, &body));
                export.push('\n');
                expected.push((time, author, body));
            }
            let messages = parse(&export).expect("readable");
            assert_eq!(messages.len(), expected.len(), "format {format}");
            for (message, (time, author, body)) in messages.iter().zip(&expected) {
                assert_eq!(message.time, *time, "format {format}");
                assert_eq!(message.author.as_deref(), Some(*author), "format {format}");
                assert_eq!(&message.text, body, "format {format}");
            }
        }
    }

    #[test]
    fn hostile_headers_do_not_panic() {
        for text in [
            "[",
            "1-",
            "99999-99-99 99:99 - x: y",
            "1-1-1 1:1 - x: y",
            "12-03-2024 14:05 -",
            "[12-03-2024 14:05:33]",
            "12.03.24, 14.05 - a: b",
            "\u{200e}\u{200f}",
        ] {
            let _ = parse(text);
        }
        assert_eq!(
            parse("12.03.24, 14.05 - a: b").expect("dotted")[0].time,
            at("2024-03-12T14:05:00")
        );
    }
}
