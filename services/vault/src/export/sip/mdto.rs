//! MDTO-XML 1.0.1 sidecars: one `informatieobject` or one `bestand` per
//! file, elements in the schema's fixed order, and the schema location
//! named so the version is known.

use jiff::civil::Date;

use crate::{Organisation, export::xml};

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<MDTO xmlns=\"https://www.nationaalarchief.nl/mdto\" \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
xsi:schemaLocation=\"https://www.nationaalarchief.nl/mdto https://www.nationaalarchief.nl/mdto/MDTO-XML1.0.1.xsd\">\n";

/// Where identifiers come from.
pub const SOURCE_LOG: &str = "Archipel-archieflog";
pub const SOURCE_MATRIX: &str = "Matrix event_id";
const EVENT_TYPES: &str = "Begrippenlijst EventTypeLijst MDTO";

/// A term of a list: label, code if any, and the list's name.
pub struct Term<'a> {
    pub label: &'a str,
    pub code: Option<&'a str>,
    pub list: &'a str,
}

fn term(tag: &str, term: &Term<'_>) -> String {
    let code = term
        .code
        .map(|c| format!("<begripCode>{}</begripCode>", xml(c)))
        .unwrap_or_default();
    format!(
        "<{tag}><begripLabel>{}</begripLabel>{code}<begripBegrippenlijst><verwijzingNaam>{}</verwijzingNaam></begripBegrippenlijst></{tag}>",
        xml(term.label),
        xml(term.list)
    )
}

/// A reference: a name, and an identifier with its source.
pub struct Reference {
    pub name: String,
    pub id: Option<(String, String)>,
}

fn reference(tag: &str, reference: &Reference) -> String {
    let id = reference
        .id
        .as_ref()
        .map(|(id, source)| {
            format!(
                "<verwijzingIdentificatie><identificatieKenmerk>{}</identificatieKenmerk><identificatieBron>{}</identificatieBron></verwijzingIdentificatie>",
                xml(id),
                xml(source)
            )
        })
        .unwrap_or_default();
    format!(
        "<{tag}><verwijzingNaam>{}</verwijzingNaam>{id}</{tag}>",
        xml(&reference.name)
    )
}

/// What is to become of an information object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appraisal {
    /// Blijvend te bewaren.
    Permanent,
    /// Tijdelijk te bewaren: destroyed `years` after `from`.
    Temporary { years: u32, from: Date },
}

impl Appraisal {
    fn xml(self) -> String {
        let list = "Begrippenlijst Waarderingen MDTO";
        match self {
            Self::Permanent => term(
                "waardering",
                &Term {
                    label: "Blijvend te bewaren",
                    code: Some("B"),
                    list,
                },
            ),
            Self::Temporary { years, from } => {
                let end = from
                    .checked_add(jiff::Span::new().years(i64::from(years)))
                    .unwrap_or(from);
                format!(
                    "{}<bewaartermijn>{}<termijnStartdatumLooptijd>{from}</termijnStartdatumLooptijd><termijnLooptijd>P{years}Y</termijnLooptijd><termijnEinddatum>{end}</termijnEinddatum></bewaartermijn>",
                    term(
                        "waardering",
                        &Term {
                            label: "Tijdelijk te bewaren",
                            code: Some("V"),
                            list,
                        }
                    ),
                    term(
                        "termijnTriggerStartLooptijd",
                        &Term {
                            label: "Creatie",
                            code: None,
                            list: EVENT_TYPES,
                        }
                    ),
                )
            }
        }
    }
}

/// An event in an object's life: its type, when, by whom, with what result.
pub struct Event {
    pub kind: &'static str,
    /// xsd:dateTime with its zone.
    pub time: String,
    pub actor: Option<String>,
    pub result: Option<String>,
}

/// An information object: the archive, a conversation, a message.
pub struct Object<'a> {
    /// (identifier, source), at least one.
    pub ids: Vec<(String, String)>,
    pub name: String,
    /// Archief, Dossier or Archiefstuk.
    pub level: &'static str,
    /// The days it covers.
    pub covers: Option<(Date, Date)>,
    pub events: Vec<Event>,
    pub appraisal: Appraisal,
    pub part_of: Option<Reference>,
    pub parts: Vec<Reference>,
    /// Its files, by name.
    pub representations: Vec<String>,
    /// (role, who): Afzender.
    pub involved: Vec<(&'static str, String)>,
    pub creator: &'a Organisation,
    /// A restriction on its use: the type's label, and why.
    pub restriction: (&'static str, Option<String>),
}

impl Object<'_> {
    pub fn xml(&self) -> String {
        let mut out = String::from(HEAD);
        out.push_str("<informatieobject>");
        for (id, source) in &self.ids {
            out.push_str(&format!(
                "<identificatie><identificatieKenmerk>{}</identificatieKenmerk><identificatieBron>{}</identificatieBron></identificatie>",
                xml(id),
                xml(source)
            ));
        }
        out.push_str(&format!("<naam>{}</naam>", xml(&self.name)));
        out.push_str(&term(
            "aggregatieniveau",
            &Term {
                label: self.level,
                code: None,
                list: "Begrippenlijst Aggregatieniveaus MDTO",
            },
        ));
        if let Some((from, until)) = self.covers {
            out.push_str(&format!(
                "<dekkingInTijd>{}<dekkingInTijdBegindatum>{from}</dekkingInTijdBegindatum><dekkingInTijdEinddatum>{until}</dekkingInTijdEinddatum></dekkingInTijd>",
                term(
                    "dekkingInTijdType",
                    &Term {
                        label: "Verzenddatum",
                        code: None,
                        list: "Begrippenlijst Archipel",
                    }
                )
            ));
        }
        out.push_str("<taal>nl</taal>");
        for event in &self.events {
            out.push_str(&format!(
                "<event>{}<eventTijd>{}</eventTijd>{}{}</event>",
                term(
                    "eventType",
                    &Term {
                        label: event.kind,
                        code: None,
                        list: EVENT_TYPES,
                    }
                ),
                xml(&event.time),
                event
                    .actor
                    .as_ref()
                    .map(|actor| reference(
                        "eventVerantwoordelijkeActor",
                        &Reference {
                            name: actor.clone(),
                            id: None
                        }
                    ))
                    .unwrap_or_default(),
                event
                    .result
                    .as_ref()
                    .map(|r| format!("<eventResultaat>{}</eventResultaat>", xml(r)))
                    .unwrap_or_default(),
            ));
        }
        out.push_str(&self.appraisal.xml());
        if let Some(parent) = &self.part_of {
            out.push_str(&reference("isOnderdeelVan", parent));
        }
        for part in &self.parts {
            out.push_str(&reference("bevatOnderdeel", part));
        }
        for file in &self.representations {
            out.push_str(&reference(
                "heeftRepresentatie",
                &Reference {
                    name: file.clone(),
                    id: None,
                },
            ));
        }
        out.push_str(&reference(
            "archiefvormer",
            &Reference {
                name: self.creator.name.clone(),
                id: Some((self.creator.identifier.clone(), "TOOI".to_owned())),
            },
        ));
        for (role, who) in &self.involved {
            out.push_str(&format!(
                "<betrokkene>{}{}</betrokkene>",
                term(
                    "betrokkeneTypeRelatie",
                    &Term {
                        label: role,
                        code: None,
                        list: "Begrippenlijst Archipel",
                    }
                ),
                reference(
                    "betrokkeneActor",
                    &Reference {
                        name: who.clone(),
                        id: None
                    }
                )
            ));
        }
        let (kind, why) = &self.restriction;
        out.push_str(&format!(
            "<beperkingGebruik>{}{}</beperkingGebruik>",
            term(
                "beperkingGebruikType",
                &Term {
                    label: kind,
                    code: None,
                    list: "BeperkingGebruikTypeLijst MDTO",
                }
            ),
            why.as_ref()
                .map(|w| format!(
                    "<beperkingGebruikNadereBeschrijving>{}</beperkingGebruikNadereBeschrijving>",
                    xml(w)
                ))
                .unwrap_or_default()
        ));
        out.push_str("</informatieobject>\n</MDTO>\n");
        out
    }
}

/// A file's format: PRONOM's identifier where Archipel knows it, else the
/// IANA media type.
pub fn format_of(name: &str, media_type: Option<&str>) -> (String, String, &'static str) {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("json") => (
            "JSON Data Interchange Format".into(),
            "fmt/817".into(),
            "PRONOM-register",
        ),
        Some("png") => (
            "Portable Network Graphics 1.2".into(),
            "fmt/13".into(),
            "PRONOM-register",
        ),
        Some("mp4") => (
            "MPEG-4 Media File".into(),
            "fmt/199".into(),
            "PRONOM-register",
        ),
        _ => {
            let media_type = media_type.unwrap_or("application/octet-stream");
            (
                media_type.to_owned(),
                media_type.to_owned(),
                "IANA Media types",
            )
        }
    }
}

/// A file: its size, format and SHA-256, and the object it represents.
pub struct File<'a> {
    pub name: &'a str,
    pub size: u64,
    pub media_type: Option<&'a str>,
    pub sha256_hex: &'a str,
    /// xsd:dateTime.
    pub checked_at: &'a str,
    pub represents: Reference,
}

impl File<'_> {
    pub fn xml(&self) -> String {
        let (label, code, list) = format_of(self.name, self.media_type);
        format!(
            "{HEAD}<bestand><identificatie><identificatieKenmerk>sha256:{sha}</identificatieKenmerk><identificatieBron>Archipel</identificatieBron></identificatie>\
             <naam>{name}</naam><omvang>{size}</omvang>{format}\
             <checksum>{algorithm}<checksumWaarde>{sha}</checksumWaarde><checksumDatum>{at}</checksumDatum></checksum>\
             {represents}</bestand>\n</MDTO>\n",
            sha = self.sha256_hex,
            name = xml(self.name),
            size = self.size,
            format = term(
                "bestandsformaat",
                &Term {
                    label: &label,
                    code: Some(&code),
                    list
                }
            ),
            algorithm = term(
                "checksumAlgoritme",
                &Term {
                    label: "SHA-256",
                    code: None,
                    list: "Begrippenlijst ChecksumAlgoritme MDTO"
                }
            ),
            at = self.checked_at,
            represents = reference("isRepresentatieVan", &self.represents),
        )
    }
}
