//! The package's lists: the productierapport, the redaction log and the
//! DiWoo metadata.

use rust_xlsxwriter::{Format, Workbook};

use super::{Document, Judgement, pdf::PlacedBox};
use crate::{Error, Organisation, Result, export::xml};

/// The productierapport's columns, as the Rijksoverheid Woo platform
/// (`minvws/nl-rdo-woo-web`) reads them: `ID` is also the PDF's name,
/// `Family ID` groups a conversation's days, `File type` `chat` shows as
/// "Chatbericht".
pub const COLUMNS: [&str; 12] = [
    "ID",
    "Matter",
    "Family ID",
    "Document",
    "File type",
    "Datum",
    "Beoordeling",
    "Beoordelingsgrond",
    "Toelichting",
    "Opgeschort",
    "Publieke link",
    "Gerelateerd ID",
];

/// `5.1.2e; 5.2`: the document's grounds, its own and its redactions'.
fn grounds(document: &Document) -> String {
    document
        .grounds
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn productierapport(documents: &[Document], matter: &str) -> Result<Vec<u8>> {
    let failed =
        |e: rust_xlsxwriter::XlsxError| Error::Io(format!("writing productierapport.xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("Productierapport").map_err(failed)?;
    let bold = Format::new().set_bold();
    for (col, name) in COLUMNS.iter().enumerate() {
        sheet
            .write_string_with_format(0, col as u16, *name, &bold)
            .map_err(failed)?;
    }
    for (row, document) in documents.iter().enumerate() {
        let row = row as u32 + 1;
        let planned = &document.planned;
        let cells = [
            document.id.to_string(),
            matter.trim().to_owned(),
            document.family.to_string(),
            document.title.clone(),
            "chat".to_owned(),
            document.date.to_string(),
            document.judgement.label().to_owned(),
            grounds(document),
            planned.explanation.trim().to_owned(),
            if planned.suspended { "yes" } else { "" }.to_owned(),
            if document.judgement == Judgement::AlreadyPublic {
                planned.link.trim().to_owned()
            } else {
                String::new()
            },
            String::new(),
        ];
        for (col, cell) in cells.iter().enumerate() {
            if !cell.is_empty() {
                sheet.write_string(row, col as u16, cell).map_err(failed)?;
            }
        }
    }
    sheet.autofit();
    book.save_to_buffer().map_err(failed)
}

/// One line per redaction box. The redacted text is not in it, only its
/// length.
pub(crate) fn redaction_log(boxes: &[(u64, PlacedBox)], reviewer: &str, now_ms: u64) -> String {
    let when = jiff::Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_string();
    let mut out = String::from("document,pagina,bericht,grond,tekens,beoordelaar,datum\n");
    for (id, placed) in boxes {
        let fields = [
            id.to_string(),
            placed.page.to_string(),
            placed.event_id.clone(),
            placed.grounds.clone(),
            placed.chars.to_string(),
            reviewer.to_owned(),
            when.clone(),
        ];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// TOOI: the Woo's information category "Woo-verzoeken en -besluiten", and
/// the document act "vaststelling".
const WOO_REQUESTS: &str = "https://identifier.overheid.nl/tooi/def/thes/kern/c_3baef532";
const ESTABLISHMENT: &str = "https://identifier.overheid.nl/tooi/def/thes/kern/c_641ecd76";

/// DiWoo 0.9.8 metadata of the published documents, as a sitemap.
pub(crate) fn diwoo(documents: &[Document], organisation: &Organisation, now_ms: u64) -> String {
    let now = jiff::Timestamp::from_millisecond(i64::try_from(now_ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .strftime("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string();
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" \
         xmlns:diwoo=\"https://standaarden.overheid.nl/diwoo/metadata/\">\n",
    );
    for document in documents.iter().filter(|d| d.judgement.published()) {
        out.push_str(&format!(
            "<url><loc>documenten/{id}.pdf</loc><diwoo:Document><diwoo:DiWoo>\
             <diwoo:creatiedatum>{date}</diwoo:creatiedatum>\
             <diwoo:publisher resource=\"{publisher_uri}\">{publisher}</diwoo:publisher>\
             <diwoo:format resource=\"http://publications.europa.eu/resource/authority/file-type/PDF\">pdf</diwoo:format>\
             <diwoo:titelcollectie><diwoo:officieleTitel>{title}</diwoo:officieleTitel></diwoo:titelcollectie>\
             <diwoo:classificatiecollectie><diwoo:informatiecategorieen>\
             <diwoo:informatiecategorie resource=\"{WOO_REQUESTS}\">Woo-verzoeken en -besluiten</diwoo:informatiecategorie>\
             </diwoo:informatiecategorieen></diwoo:classificatiecollectie>\
             <diwoo:documenthandelingen><diwoo:documenthandeling>\
             <diwoo:soortHandeling resource=\"{ESTABLISHMENT}\">vaststelling</diwoo:soortHandeling>\
             <diwoo:atTime>{now}</diwoo:atTime>\
             </diwoo:documenthandeling></diwoo:documenthandelingen>\
             </diwoo:DiWoo></diwoo:Document></url>\n",
            id = document.id,
            date = document.date,
            publisher_uri = xml(&organisation.identifier),
            publisher = xml(&organisation.name),
            title = xml(&document.title),
        ));
    }
    out.push_str("</urlset>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_xml_fields_are_escaped() {
        assert_eq!(csv_field("@a:b"), "@a:b");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
    }
}
