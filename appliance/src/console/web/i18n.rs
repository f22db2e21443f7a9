//! Dutch and English, chosen per person: each text of the pages is
//! written in English in its template (`{{ t.t("Sign in") }}`) and looked
//! up in [`DUTCH`] for a person who reads Dutch. A text without a Dutch
//! entry shows in English; a test keeps the table complete for every
//! template.

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::{Deserialize, Serialize};

/// A language the console speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Nl,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Nl => "nl",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        match code {
            "en" => Some(Self::En),
            "nl" => Some(Self::Nl),
            _ => None,
        }
    }

    /// The browser's first choice of the two (`Accept-Language`).
    pub fn from_headers(headers: &axum::http::HeaderMap) -> Self {
        let accepted = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        accepted
            .split(',')
            .map(|tag| {
                tag.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_lowercase()
            })
            .find_map(|tag| {
                if tag.starts_with("nl") {
                    Some(Self::Nl)
                } else if tag.starts_with("en") {
                    Some(Self::En)
                } else {
                    None
                }
            })
            .unwrap_or_default()
    }
}

tokio::task_local! {
    /// The language of the request being answered: the browser's, then
    /// the signed-in person's.
    pub(super) static LANG: std::cell::Cell<Lang>;
}

/// The texts of one language.
#[derive(Clone, Copy, Debug, Default)]
pub struct Texts(pub Lang);

impl Texts {
    /// `english` in this language (as it is when the table lacks it).
    pub fn t<'a>(&self, english: &'a str) -> &'a str {
        match self.0 {
            Lang::En => english,
            Lang::Nl => DUTCH
                .iter()
                .find(|(en, _)| *en == english)
                .map_or(english, |(_, nl)| nl),
        }
    }

    /// The language of the request being answered (English outside one).
    pub fn current() -> Self {
        Self(LANG.try_with(std::cell::Cell::get).unwrap_or_default())
    }

    /// `english` in this language, with each `{name}` replaced by its
    /// value.
    pub fn f(&self, english: &'static str, values: &[(&str, &dyn std::fmt::Display)]) -> String {
        let mut text = self.t(english).to_owned();
        for (name, value) in values {
            text = text.replace(&format!("{{{name}}}"), &value.to_string());
        }
        text
    }

    /// Why an action was not done, in this language: a vault procedure's
    /// refusal is said in the reader's language, anything else as the
    /// error chain reads.
    pub fn error(&self, error: &anyhow::Error) -> String {
        match error.downcast_ref::<archipel_vault::Error>() {
            Some(archipel_vault::Error::Rule(refusal)) if self.is_dutch() => dutch(refusal),
            Some(archipel_vault::Error::Rule(refusal)) => refusal.to_string(),
            _ => format!("{error:#}"),
        }
    }

    pub fn lang(&self) -> &'static str {
        self.0.code()
    }

    pub fn is_dutch(&self) -> bool {
        self.0 == Lang::Nl
    }
}

/// A vault procedure's refusal in Dutch (the vault says it in English).
fn dutch(refusal: &archipel_vault::Refusal) -> String {
    use archipel_vault::Refusal as R;
    match refusal {
        R::NotRecordsManager { actor } => format!("{actor} is geen informatiebeheerder."),
        R::NothingToExclude => "Noem ten minste één bericht om uit te zonderen.".to_owned(),
        R::ExclusionWithoutReason => "Een uitzonderingsverzoek heeft een reden nodig.".to_owned(),
        R::StateNotExcludable {
            event_id,
            event_type,
        } => format!(
            "{event_id} is een {event_type}-gebeurtenis: de toestand van een kamer kan niet worden uitgezonderd, alleen berichten."
        ),
        R::NotSenderOrDelegate {
            requester,
            event_id,
            sender,
        } => format!(
            "{requester} mag de uitzondering van {event_id} niet aanvragen: alleen de afzender ({sender}), de eigenaar van een geïmporteerde chat, of diens gemachtigde."
        ),
        R::AlreadyErased {
            event_id,
            reference,
        } => format!("{event_id} is al gewist door {reference}."),
        R::AlreadyDecided {
            reference,
            approved,
            by,
        } => format!(
            "Over {reference} is al beslist: {} door {by}.",
            if *approved {
                "goedgekeurd"
            } else {
                "afgewezen"
            }
        ),
        R::RequesterDecides { decider, reference } => format!(
            "{decider} heeft {reference} aangevraagd en kan er niet ook over beslissen: een andere informatiebeheerder moet dat doen (vier ogen)."
        ),
        R::SenderDecides { decider, event_id } => format!(
            "{decider} heeft {event_id} verstuurd en kan niet over de uitzondering ervan beslissen (vier ogen)."
        ),
        R::OwnerDecides { decider, event_id } => format!(
            "{decider} heeft {event_id} als eigen chat geïmporteerd en kan niet over de uitzondering ervan beslissen (vier ogen)."
        ),
        R::Held {
            hold,
            scope,
            event_id,
        } => format!("Bewaarplicht {hold} op {scope} verhindert het wissen van {event_id}."),
        R::HoldWithoutReason => "Een bewaarplicht heeft een reden nodig.".to_owned(),
        R::AlreadyReleased { reference } => format!("{reference} is al opgeheven."),
        R::NothingExpired => {
            "Geen enkel record is verlopen: er is niets te vernietigen.".to_owned()
        }
        R::AlreadyApproved { reference, by } => {
            format!("{reference} is al goedgekeurd door {by}.")
        }
        R::ProposerApproves { actor, reference } => format!(
            "{actor} heeft {reference} voorgesteld en kan die niet ook goedkeuren: een andere informatiebeheerder moet dat doen (vier ogen)."
        ),
        R::NotYetDue { reference } => format!(
            "{reference} noemt records die pas later verlopen; keur de lijst goed als die datum voorbij is."
        ),
        R::AlreadyConfirmed { reference, by } => {
            format!("{reference} is al bevestigd door {by}.")
        }
    }
}

/// Before sign-in: the browser's language.
impl<S: Sync> FromRequestParts<S> for Texts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Lang::from_headers(&parts.headers)))
    }
}

/// Every text of the pages, in English and Dutch.
pub static DUTCH: &[(&str, &str)] = &[
    // Around every page.
    ("Dashboard", "Overzicht"),
    ("Users", "Gebruikers"),
    ("Rooms", "Kamers"),
    ("Reports", "Meldingen"),
    ("Tokens", "Registratiecodes"),
    ("Backups", "Back-ups"),
    ("Log", "Logboek"),
    ("Exclusion requests", "Uitzonderingsverzoeken"),
    ("Legal holds", "Bewaarplichten"),
    ("Classification", "Classificatie"),
    ("Retention", "Bewaartermijnen"),
    ("Audit trail", "Audittrail"),
    ("Sign out", "Uitloggen"),
    ("Language", "Taal"),
    ("Back to the console", "Terug naar de console"),
    // Signing in.
    ("Sign in", "Inloggen"),
    ("User name", "Gebruikersnaam"),
    ("Password", "Wachtwoord"),
    ("Next", "Volgende"),
    (
        "Sign in with your chat account. You will be asked for a code from your authenticator app.",
        "Log in met uw chataccount. Daarna vraagt de console een code uit uw authenticator-app.",
    ),
    ("Code", "Code"),
    ("Code from your authenticator", "Code uit uw authenticator"),
    ("Signing in as", "Inloggen als"),
    ("Set up your authenticator", "Uw authenticator instellen"),
    (
        "has no authenticator yet. Scan this code with an authenticator app (FreeOTP, Google Authenticator, Microsoft Authenticator, a password manager), or type the key.",
        "heeft nog geen authenticator. Scan deze code met een authenticator-app (FreeOTP, Google Authenticator, Microsoft Authenticator, een wachtwoordmanager) of typ de sleutel over.",
    ),
    ("Key", "Sleutel"),
    (
        "Open in an authenticator app on this device",
        "Openen in een authenticator-app op dit apparaat",
    ),
    ("The code it shows now", "De code die hij nu toont"),
    ("Confirm and sign in", "Bevestigen en inloggen"),
    (
        "Create the operator's account",
        "Het account van de beheerder aanmaken",
    ),
    (
        "This account administers the node: its accounts, backups and health. It cannot read archived messages.",
        "Dit account beheert de node: de accounts, back-ups en gezondheid. Het kan geen gearchiveerde berichten lezen.",
    ),
    (
        "Password (at least 12 characters)",
        "Wachtwoord (minstens 12 tekens)",
    ),
    ("The same password again", "Hetzelfde wachtwoord nogmaals"),
    (
        "Create and set up the authenticator",
        "Aanmaken en de authenticator instellen",
    ),
    ("Confirm it is you", "Bevestig dat u het bent"),
    (
        "This action changes accounts or the archive. Enter a code from your authenticator; then do it again. For ten minutes no new code is needed.",
        "Deze handeling wijzigt accounts of het archief. Voer een code uit uw authenticator in en doe het daarna opnieuw. Tien minuten lang is geen nieuwe code nodig.",
    ),
    ("Confirm", "Bevestigen"),
    (
        "Wrong user name or password.",
        "Onjuiste gebruikersnaam of wachtwoord.",
    ),
    (
        "Wrong or already used code. Enter the code your authenticator shows now.",
        "Onjuiste of al gebruikte code. Voer de code in die uw authenticator nu toont.",
    ),
    ("Not allowed", "Niet toegestaan"),
    ("Not done", "Niet gedaan"),
    ("Not found", "Niet gevonden"),
    ("Something went wrong", "Er ging iets mis"),
    // The dashboard.
    ("Node", "Node"),
    ("Up", "Actief sinds"),
    ("active", "actief"),
    ("deactivated", "gedeactiveerd"),
    ("operator(s)", "beheerder(s)"),
    ("client(s) syncing", "app(s) verbonden"),
    ("Storage", "Opslag"),
    ("Homeserver", "Homeserver"),
    ("Vault", "Kluis"),
    ("records", "records"),
    ("Checkpoint signed at", "Checkpoint getekend bij"),
    ("No checkpoint signed yet", "Nog geen checkpoint getekend"),
    (
        "event(s) waiting to be archived",
        "gebeurtenis(sen) wachten op archivering",
    ),
    ("Archive up to date", "Archief bijgewerkt"),
    ("Certificate", "Certificaat"),
    (
        "Messages archived per day",
        "Gearchiveerde berichten per dag",
    ),
    ("30 days ago", "30 dagen geleden"),
    ("today", "vandaag"),
    (
        "message(s) in the last 30 days (UTC days; encrypted ones included).",
        "bericht(en) in de laatste 30 dagen (UTC-dagen; versleutelde meegeteld).",
    ),
    ("Checkpoint witnesses", "Getuigen van het checkpoint"),
    (
        "No peer has co-signed a checkpoint.",
        "Geen peer heeft een checkpoint medeondertekend.",
    ),
    ("Witness", "Getuige"),
    ("Co-signed size", "Medeondertekende omvang"),
    ("Verifies", "Klopt"),
    ("yes", "ja"),
    ("no", "nee"),
    ("Federation peers", "Federatiepartners"),
    (
        "This node federates with no one.",
        "Deze node federeert met niemand.",
    ),
    ("Peer", "Partner"),
    ("Events queued", "Gebeurtenissen in de wachtrij"),
    (
        "No scheduled backup has been written.",
        "Er is nog geen geplande back-up geschreven.",
    ),
    ("Target", "Doel"),
    ("Last success", "Laatst gelukt"),
    // Users.
    ("Search", "Zoeken"),
    ("User ID or name", "Gebruikers-ID of naam"),
    ("User", "Gebruiker"),
    ("Name", "Naam"),
    ("Roles", "Rollen"),
    ("Authenticator", "Authenticator"),
    ("State", "Status"),
    ("operator", "beheerder"),
    ("records manager", "informatiebeheerder"),
    ("auditor", "auditor"),
    ("enrolled", "ingesteld"),
    ("none", "geen"),
    (
        "More accounts match: search to narrow the list.",
        "Er zijn meer accounts: zoek om de lijst in te perken.",
    ),
    ("New user", "Nieuwe gebruiker"),
    ("user name", "gebruikersnaam"),
    (
        "Create with a one-time password",
        "Aanmaken met een eenmalig wachtwoord",
    ),
    ("Devices", "Apparaten"),
    ("No devices.", "Geen apparaten."),
    ("Device", "Apparaat"),
    ("Last seen", "Laatst gezien"),
    ("Actions", "Handelingen"),
    ("roles", "rollen"),
    ("authenticator", "authenticator"),
    (
        "Reset the password and end every session",
        "Wachtwoord opnieuw instellen en alle sessies beëindigen",
    ),
    ("Make operator", "Beheerder maken"),
    ("Stop being an operator", "Geen beheerder meer"),
    ("Make auditor", "Auditor maken"),
    ("Stop being an auditor", "Geen auditor meer"),
    (
        "Forget the authenticator (lost phone)",
        "Authenticator vergeten (telefoon kwijt)",
    ),
    (
        "Deactivating signs the account out everywhere and takes it out of every room. It cannot be undone. Its archived messages stay.",
        "Deactiveren logt het account overal uit en haalt het uit elke kamer. Dit is niet terug te draaien. De gearchiveerde berichten blijven.",
    ),
    (
        "Type the user ID to confirm",
        "Typ het gebruikers-ID ter bevestiging",
    ),
    ("Deactivate", "Deactiveren"),
    // Rooms.
    (
        "What each room is, not what is said in it: messages are for their members, and archived ones for records managers.",
        "Wat elke kamer is, niet wat er gezegd wordt: berichten zijn voor de leden, gearchiveerde voor informatiebeheerders.",
    ),
    ("Room ID or name", "Kamer-ID of naam"),
    ("Room", "Kamer"),
    ("Members", "Leden"),
    ("Encrypted", "Versleuteld"),
    ("Join rule", "Toegangsregel"),
    ("Created by", "Aangemaakt door"),
    (
        "More rooms match: search to narrow the list.",
        "Er zijn meer kamers: zoek om de lijst in te perken.",
    ),
    ("Room ID", "Kamer-ID"),
    ("Version", "Versie"),
    (
        "yes (the archive member keeps a readable copy)",
        "ja (het archieflid bewaart een leesbare kopie)",
    ),
    ("Membership", "Lidmaatschap"),
    // Reports, tokens, backups, log.
    ("Reports from users", "Meldingen van gebruikers"),
    (
        "What users reported with “Report” in their app, newest first.",
        "Wat gebruikers met “Melden” in hun app meldden, nieuwste eerst.",
    ),
    ("No reports.", "Geen meldingen."),
    ("When", "Wanneer"),
    ("By", "Door"),
    ("Event", "Gebeurtenis"),
    ("Reason", "Reden"),
    ("Registration tokens", "Registratiecodes"),
    ("No registration tokens.", "Geen registratiecodes."),
    ("Token", "Code"),
    ("Used", "Gebruikt"),
    ("Expires", "Verloopt"),
    ("Valid", "Geldig"),
    ("New token", "Nieuwe code"),
    ("Registrations", "Registraties"),
    ("unlimited", "onbeperkt"),
    ("Create", "Aanmaken"),
    ("Newest run", "Laatste ronde"),
    ("written", "geschreven"),
    ("failed", "mislukt"),
    ("not yet", "nog niet"),
    ("never", "nooit"),
    (
        "No backup targets are configured",
        "Er zijn geen back-updoelen ingesteld",
    ),
    ("Where", "Waar"),
    ("Backup", "Back-up"),
    ("Problem", "Probleem"),
    (
        "A check that decrypts a backup, and a restore, need the backup key and are on the node's command line:",
        "Een controle die een back-up ontsleutelt, en een herstel, hebben de back-upsleutel nodig en staan op de opdrachtregel van de node:",
    ),
    ("Configuration", "Configuratie"),
    (
        "The settings the node runs with, defaults included. It reads them from",
        "De instellingen waarmee de node draait, standaardwaarden inbegrepen. De node leest ze uit",
    ),
    (
        "On the appliance that file is made from the provisioning file at every boot: change provisioning, not this.",
        "Op de appliance wordt dat bestand bij elke start gemaakt uit het provisioningbestand: wijzig de provisioning, niet dit.",
    ),
    (
        "Hand room admin to a member",
        "Kamerbeheer aan een lid geven",
    ),
    (
        "When the room's admins are gone: a member of this server who may change the power levels gives it, and the change shows in the room as theirs.",
        "Als de beheerders van de kamer weg zijn: een lid van deze server dat de machtsniveaus mag wijzigen geeft het, en de wijziging staat in de kamer op diens naam.",
    ),
    ("Make admin", "Beheerder maken"),
    ("Not changed: {error}", "Niet gewijzigd: {error}"),
    ("Sign out and forget", "Afmelden en vergeten"),
    (
        "{id}'s device {device} is signed out and forgotten.",
        "Apparaat {device} van {id} is afgemeld en vergeten.",
    ),
    // Search.
    (
        "Every message of the archive, imported chats included: words are found by their Dutch stem (besluiten finds besluit); a phrase in double quotes, -word without. Each search is in the audit trail.",
        "Elk bericht van het archief, geïmporteerde chats inbegrepen: woorden worden gevonden op hun stam (besluiten vindt besluit); een zinsdeel tussen dubbele aanhalingstekens, -woord zonder. Elke zoekopdracht staat in de audittrail.",
    ),
    ("Words", "Woorden"),
    ("Message type", "Soort bericht"),
    ("Source", "Bron"),
    ("Found", "Gevonden"),
    ("No message found.", "Geen bericht gevonden."),
    ("Text", "Tekst"),
    ("Not searched: {error}", "Niet gezocht: {error}"),
    ("any type", "elk soort"),
    ("text", "tekst"),
    ("image", "afbeelding"),
    ("file", "bestand"),
    ("audio", "audio"),
    ("video", "video"),
    ("notice", "melding"),
    ("any source", "elke bron"),
    ("chat on this node", "chat op deze node"),
    ("WhatsApp import", "WhatsApp-import"),
    ("any classification", "elke classificatie"),
    ("business", "zakelijk"),
    ("private", "privé"),
    ("party-political", "partijpolitiek"),
    // Imports.
    ("Imports", "Importen"),
    (
        "A WhatsApp chat someone kept on their phone, brought into the archive: the app's “Export chat” (with media: the ZIP archive), from Android or iOS, in Dutch or English. Its messages are archived like a room's, with the file's fingerprint, who imported it and what the owner declared of it. A file with a line that cannot be read is refused whole; the same file again adds nothing.",
        "Een WhatsApp-chat die iemand op de telefoon bewaarde, in het archief gebracht: „Chat exporteren” van de app (met media: het ZIP-archief), van Android of iOS, in het Nederlands of Engels. De berichten worden gearchiveerd als die van een kamer, met de vingerafdruk van het bestand, wie het importeerde en wat de eigenaar erover verklaarde. Een bestand met een regel die niet te lezen is, wordt in zijn geheel geweigerd; hetzelfde bestand nog eens voegt niets toe.",
    ),
    ("Export (.zip or .txt)", "Export (.zip of .txt)"),
    (
        "Owner: whose phone it comes from (a user of this node)",
        "Eigenaar: van wiens telefoon het komt (een gebruiker van deze node)",
    ),
    (
        "The owner's name as the chat shows it (optional)",
        "De naam van de eigenaar zoals de chat die toont (optioneel)",
    ),
    (
        "What the owner declared of the export",
        "Wat de eigenaar over de export verklaarde",
    ),
    ("Time zone of the phone", "Tijdzone van de telefoon"),
    ("Import", "Importeren"),
    ("Imported chats", "Geïmporteerde chats"),
    ("No imported chats.", "Geen geïmporteerde chats."),
    ("Owner", "Eigenaar"),
    (
        "Export an imported chat by its room ID on the Exports page.",
        "Exporteer een geïmporteerde chat met zijn kamer-ID op de pagina Exports.",
    ),
    ("{field} is too long.", "{field} is te lang."),
    ("Choose the export file.", "Kies het exportbestand."),
    (
        "Nothing new: the vault holds all {known} message(s) of this export already.",
        "Niets nieuws: de kluis bevat alle {known} bericht(en) van deze export al.",
    ),
    (
        "Imported {added} record(s) into {room} ({known} already in the vault).",
        "{added} record(s) geïmporteerd in {room} ({known} al in de kluis).",
    ),
    ("Not imported: {error}", "Niet geïmporteerd: {error}"),
    // Exports.
    ("Exports", "Exports"),
    (
        "A room's or a person's conversations over a period, to read in a browser and to verify: a ZIP archive with the conversations as web pages, every record, the proofs and the vault's verifier key.",
        "De gesprekken van een kamer of een persoon over een periode, om in een browser te lezen en te controleren: een ZIP-archief met de gesprekken als webpagina's, elk record, de bewijzen en de verificatiesleutel van de kluis.",
    ),
    ("Room ID (empty: every room)", "Kamer-ID (leeg: elke kamer)"),
    ("Sender (empty: everyone)", "Afzender (leeg: iedereen)"),
    ("From (YYYY-MM-DD)", "Vanaf (JJJJ-MM-DD)"),
    (
        "Until (YYYY-MM-DD, not included)",
        "Tot (JJJJ-MM-DD, niet inbegrepen)",
    ),
    ("Export", "Exporteren"),
    (
        "Exports stay on the node for {hours} hours; making and downloading each is in the audit trail.",
        "Exports blijven {hours} uur op de node; het maken en downloaden van elk staat in de audittrail.",
    ),
    ("No exports.", "Geen exports."),
    ("Made", "Gemaakt"),
    ("Download", "Downloaden"),
    ("Download the export", "Download de export"),
    (
        "Exported {records} record(s) in {conversations} conversation(s).",
        "{records} record(s) in {conversations} gesprek(ken) geëxporteerd.",
    ),
    ("Not exported: {error}", "Niet geëxporteerd: {error}"),
    (
        "{day} is not a date (YYYY-MM-DD).",
        "{day} is geen datum (JJJJ-MM-DD).",
    ),
    ("No such export.", "Die export bestaat niet."),
    // Gaps and alarms.
    ("Gaps and alarms", "Hiaten en alarmen"),
    ("No alarms.", "Geen alarmen."),
    (
        "Where the archive is incomplete, or cannot vouch for a peer. Senders, rooms and times only: never content.",
        "Waar het archief onvolledig is, of niet voor een partner kan instaan. Alleen afzenders, kamers en tijden: nooit inhoud.",
    ),
    ("Encrypted messages", "Versleutelde berichten"),
    ("decrypted", "ontsleuteld"),
    ("without their room key", "zonder hun kamersleutel"),
    (
        "The archive member holds the room keys of encrypted rooms; a message whose key never reached it stays ciphertext in the vault. Oldest first:",
        "Het archieflid bewaart de kamersleutels van versleutelde kamers; een bericht waarvan de sleutel het nooit bereikte blijft versleuteld in de kluis. Oudste eerst:",
    ),
    ("Record", "Record"),
    ("Capture", "Vastlegging"),
    (
        "The archive member could not join {room} after {by} did ({at}): encrypted messages there are not decrypted.",
        "Het archieflid kon {room} niet binnenkomen nadat {by} dat deed ({at}): versleutelde berichten daar worden niet ontsleuteld.",
    ),
    (
        "The archive member was removed from {room} by {by} ({at}): encrypted messages there since are not decrypted.",
        "Het archieflid is uit {room} verwijderd door {by} ({at}): versleutelde berichten daar sindsdien worden niet ontsleuteld.",
    ),
    (
        "{peer} showed a log that does not extend the one this node co-signed ({at}): {reason}",
        "{peer} toonde een logboek dat niet voortbouwt op het logboek dat deze node medeondertekende ({at}): {reason}",
    ),
    (
        "The co-signature of {witness} over this node's checkpoint at {size} records does not verify.",
        "De medeondertekening van {witness} van het controlepunt van deze node bij {size} records klopt niet.",
    ),
    // Alarms (ops::status::Alarm).
    (
        "{count} event(s) are waiting to be archived",
        "{count} event(s) wachten om gearchiveerd te worden",
    ),
    (
        "the co-signature of {peer} does not verify",
        "de medeondertekening van {peer} klopt niet",
    ),
    (
        "{peer} showed a log that does not extend the one this node co-signed",
        "{peer} toonde een logboek dat niet voortbouwt op het logboek dat deze node medeondertekende",
    ),
    (
        "the archive member is out of {count} room(s): their encrypted messages are not decrypted",
        "het archieflid is uit {count} kamer(s): hun versleutelde berichten worden niet ontsleuteld",
    ),
    (
        "the certificate expires {at}",
        "het certificaat verloopt {at}",
    ),
    (
        "no backup succeeded in the last two days",
        "de laatste twee dagen is geen back-up gelukt",
    ),
    (
        "{count} events wait for {peer}",
        "{count} events wachten op {peer}",
    ),
    // Federation.
    ("Federation", "Federatie"),
    ("Federation listener", "Federatie-listener"),
    (
        "Only the peers below are let in, and only they are sent to.",
        "Alleen de partners hieronder worden toegelaten, en alleen naar hen wordt verzonden.",
    ),
    (
        "Federation is off: this node talks to no other node.",
        "Federatie staat uit: deze node praat met geen andere node.",
    ),
    ("No peers are allowed.", "Er zijn geen partners toegestaan."),
    ("Address", "Adres"),
    ("Pinned keys", "Vastgepinde sleutels"),
    ("Queued events", "Events in de wachtrij"),
    (
        "Co-signed our checkpoint",
        "Heeft ons controlepunt medeondertekend",
    ),
    ("We co-signed theirs", "Wij ondertekenden het hunne"),
    ("Alarm", "Alarm"),
    ("does not verify", "klopt niet"),
    ("found through .well-known", "gevonden via .well-known"),
    ("records,", "records,"),
    (
        "Peers are set in provisioning ([federation] peers); the appliance applies it at boot.",
        "Partners staan in de provisioning ([federation] peers); de appliance past die toe bij het opstarten.",
    ),
    ("Check the newest", "Controleer de nieuwste"),
    ("Last verified", "Laatst gecontroleerd"),
    (
        "{at}: verified, {records} records",
        "{at}: klopt, {records} records",
    ),
    (
        "{at}: {count} problem(s)",
        "{at}: {count} probleem/problemen",
    ),
    (
        "{target} does not verify: {error}",
        "{target} klopt niet: {error}",
    ),
    (
        "The console checks the backups of a recovery copy, whose passphrase the node holds. The others open only with the backup key, kept off the node; check them, and restore, on the command line:",
        "De console controleert de back-ups van een herstelkopie, waarvan de node de wachtzin heeft. De andere openen alleen met de back-upsleutel, die niet op de node staat; controleer en herstel die op de opdrachtregel:",
    ),
    ("No scheduled backups.", "Geen geplande back-ups."),
    (
        "Every {hours} hour(s) from {at} ({zone}).",
        "Elke {hours} uur vanaf {at} ({zone}).",
    ),
    ("none yet", "nog geen"),
    ("A backup is running, since", "Er loopt een back-up, sinds"),
    ("Back up now", "Nu back-uppen"),
    ("What the targets hold", "Wat de doelen bevatten"),
    (
        "The backup has started; this page shows its outcome once it is done.",
        "De back-up is gestart; deze pagina toont de uitkomst zodra hij klaar is.",
    ),
    ("Not started: {error}", "Niet gestart: {error}"),
    (
        "From each target's listing: no key is needed, nothing is decrypted.",
        "Uit de inhoudsopgave van elk doel: er is geen sleutel nodig, niets wordt ontsleuteld.",
    ),
    ("Complete backups", "Volledige back-ups"),
    ("Newest", "Nieuwste"),
    ("Size", "Grootte"),
    ("Unfinished", "Onvoltooid"),
    (
        "The newest lines of the journal of archipel.service.",
        "De nieuwste regels van het journaal van archipel.service.",
    ),
    // The audit trail.
    (
        "Every administrative action and every step of the vault's procedures, newest first, as the vault's tamper-evident log holds them",
        "Elke beheerhandeling en elke stap van de procedures van de kluis, nieuwste eerst, zoals het manipulatiebestendige logboek van de kluis ze bewaart",
    ),
    ("checks it", "controleert het"),
    ("Rights", "Rechten"),
    (
        "Everyone who holds a role in the console, for the periodic review of special rights. The audit trail shows who gave each.",
        "Iedereen met een rol in de console, voor de periodieke controle van bijzondere rechten. De audittrail toont wie elke rol gaf.",
    ),
    ("Time", "Tijd"),
    ("Who", "Wie"),
    ("Action", "Handeling"),
    ("Object", "Object"),
    ("From", "Vanaf"),
    ("Outcome", "Uitkomst"),
    // Exclusion requests.
    ("To decide", "Te beslissen"),
    (
        "No open requests from others.",
        "Geen openstaande verzoeken van anderen.",
    ),
    ("from", "van"),
    ("message(s)", "bericht(en)"),
    ("requested", "aangevraagd"),
    ("ground", "grond"),
    ("Sender", "Afzender"),
    ("Sent", "Verstuurd"),
    ("Message", "Bericht"),
    ("note (optional)", "toelichting (optioneel)"),
    (
        "Approve: erase from the archive",
        "Goedkeuren: uit het archief wissen",
    ),
    ("Reject: keep", "Afwijzen: bewaren"),
    ("My requests", "Mijn verzoeken"),
    (
        "You have made no exclusion requests.",
        "U hebt geen uitzonderingsverzoeken gedaan.",
    ),
    ("Reference", "Kenmerk"),
    ("Messages", "Berichten"),
    ("Requested", "Aangevraagd"),
    ("Status", "Status"),
    (
        "Ask for messages to be excluded",
        "Vragen om berichten uit te zonderen",
    ),
    (
        "Private or party-political messages are not business records. Name your messages by their event IDs (in Element: ⋯ › View source), one per line. A records manager other than you decides.",
        "Privé- en partijpolitieke berichten zijn geen zakelijke archiefstukken. Noem uw berichten bij hun event-ID (in Element: ⋯ › Bron bekijken), één per regel. Een andere informatiebeheerder dan u beslist.",
    ),
    ("Event IDs", "Event-ID's"),
    ("Woo ground (optional)", "Woo-grond (optioneel)"),
    ("Request exclusion", "Uitzondering aanvragen"),
    ("Decided", "Besloten"),
    ("Requester", "Aanvrager"),
    // Holds, classification, retention.
    (
        "While a hold covers a room or a person, none of their records is erased or destroyed: not by an exclusion, not by a destruction list.",
        "Zolang een bewaarplicht een kamer of persoon dekt, wordt geen van hun records gewist of vernietigd: niet door een uitzondering, niet door een vernietigingslijst.",
    ),
    ("No legal holds.", "Geen bewaarplichten."),
    ("Covers", "Geldt voor"),
    ("Placed", "Ingesteld"),
    ("Released", "Opgeheven"),
    ("Release", "Opheffen"),
    ("Place a hold", "Een bewaarplicht instellen"),
    ("a person (user ID)", "een persoon (gebruikers-ID)"),
    ("a room (room ID)", "een kamer (kamer-ID)"),
    ("User or room ID", "Gebruikers- of kamer-ID"),
    (
        "Reason (e.g. the Woo request or the inquiry)",
        "Reden (bijv. het Woo-verzoek of de enquête)",
    ),
    ("Place the hold", "Bewaarplicht instellen"),
    ("Classification and roles", "Classificatie en rollen"),
    (
        "A room's classification and its members' roles decide how long their records are kept: a capstone official's business records permanently, private and party-political rooms not as business records.",
        "De classificatie van een kamer en de rollen van de leden bepalen hoe lang hun records bewaard blijven: de zakelijke records van een capstone-functionaris permanent, privé- en partijpolitieke kamers niet als zakelijke records.",
    ),
    ("Classify a room", "Een kamer classificeren"),
    ("Classify", "Classificeren"),
    ("A person's role", "De rol van een persoon"),
    ("Role", "Rol"),
    ("Set the role", "Rol instellen"),
    ("Records managers", "Informatiebeheerders"),
    ("Kept permanently", "Permanent bewaard"),
    (
        "of which past the transfer term of",
        "waarvan voorbij de overbrengingstermijn van",
    ),
    ("years", "jaar"),
    ("To be destroyed later", "Later te vernietigen"),
    ("Expired", "Verlopen"),
    (
        "Expired, under a legal hold",
        "Verlopen, onder bewaarplicht",
    ),
    ("Erased", "Gewist"),
    ("Destruction lists", "Vernietigingslijsten"),
    ("No destruction lists.", "Geen vernietigingslijsten."),
    ("Records", "Records"),
    ("As of", "Per"),
    ("Proposed", "Voorgesteld"),
    ("Approved", "Goedgekeurd"),
    ("Approve: destroy", "Goedkeuren: vernietigen"),
    ("Bridges", "Bruggen"),
    (
        "No bridges are installed.",
        "Er zijn geen bruggen geïnstalleerd.",
    ),
    ("Bridge", "Brug"),
    ("Its own user", "Eigen gebruiker"),
    (
        "Events not yet looked at",
        "Nog niet bekeken gebeurtenissen",
    ),
    ("Last transaction taken", "Laatste afgenomen transactie"),
    ("Ping", "Ping"),
    (
        "none: it is sent nothing",
        "geen: er wordt niets heen gestuurd",
    ),
    (
        "transaction {txn} not taken yet; tried again with growing pauses",
        "transactie {txn} nog niet afgenomen; wordt opnieuw geprobeerd met steeds langere pauzes",
    ),
    ("{id} answered in {ms} ms.", "{id} antwoordde in {ms} ms."),
    (
        "{id} did not answer: {error}",
        "{id} antwoordde niet: {error}",
    ),
    (
        "Bridges are installed by their registration files (provisioning [[bridges]], or appservices under [homeserver] in the configuration); what they bring is archived like every message.",
        "Bruggen worden geïnstalleerd met hun registratiebestand (provisioning [[bridges]], of appservices onder [homeserver] in de configuratie); wat ze binnenbrengen wordt gearchiveerd zoals elk bericht.",
    ),
    (
        "Transferred to the archive service, not yet destroyed",
        "Overgebracht naar de archiefdienst, nog niet vernietigd",
    ),
    ("Statement of destruction", "Verklaring van vernietiging"),
    (
        "Transfers to the archive service",
        "Overbrengingen naar de archiefdienst",
    ),
    (
        "A transfer is made with `archipel vault transfer sip`. Once the archive service confirms receipt, record it here: its records then count as expired and may go on a destruction list.",
        "Een overbrenging maakt u met `archipel vault transfer sip`. Zodra de archiefdienst de ontvangst bevestigt, legt u dat hier vast: de records gelden dan als verlopen en kunnen op een vernietigingslijst.",
    ),
    ("No transfers.", "Geen overbrengingen."),
    ("Receipt", "Ontvangstbevestiging"),
    (
        "The archive service's receipt",
        "Ontvangstbevestiging van de archiefdienst",
    ),
    ("Record receipt", "Ontvangst vastleggen"),
    (
        "{reference} confirmed: the archive service holds its {count} record(s); they may now go on a destruction list.",
        "{reference} bevestigd: de archiefdienst heeft de {count} record(s); die kunnen nu op een vernietigingslijst.",
    ),
    (
        "Propose a destruction list",
        "Een vernietigingslijst voorstellen",
    ),
    (
        "Expired as of (empty: today; a later date waits for it)",
        "Verlopen per (leeg: vandaag; een latere datum wacht daarop)",
    ),
    ("Propose", "Voorstellen"),
    // What actions report.
    (
        "Created {id}. Its password, shown only now: {password} — hand it over in person; they choose their own at their first sign-in in a Matrix client.",
        "{id} is aangemaakt. Het wachtwoord, alleen nu getoond: {password} — geef het persoonlijk door; de gebruiker kiest een eigen wachtwoord bij de eerste keer inloggen in een Matrix-app.",
    ),
    ("Not created: {error}", "Niet aangemaakt: {error}"),
    ("Not done: {error}", "Niet gedaan: {error}"),
    ("Not requested: {error}", "Niet aangevraagd: {error}"),
    ("Not decided: {error}", "Niet besloten: {error}"),
    (
        "you cannot deactivate your own account",
        "u kunt uw eigen account niet deactiveren",
    ),
    (
        "type the user ID ({id}) to confirm",
        "typ het gebruikers-ID ({id}) ter bevestiging",
    ),
    (
        "{id} is deactivated: signed out everywhere, out of every room.",
        "{id} is gedeactiveerd: overal uitgelogd, uit elke kamer.",
    ),
    (
        "{id}'s new password, shown only now: {password} — every session of the account has ended.",
        "Het nieuwe wachtwoord van {id}, alleen nu getoond: {password} — elke sessie van het account is beëindigd.",
    ),
    (
        "you cannot take your own operator role",
        "u kunt uw eigen beheerdersrol niet intrekken",
    ),
    ("{id} is an operator.", "{id} is beheerder."),
    (
        "{id} is no longer an operator.",
        "{id} is geen beheerder meer.",
    ),
    ("{id} is an auditor.", "{id} is auditor."),
    (
        "{id} is no longer an auditor.",
        "{id} is geen auditor meer.",
    ),
    (
        "{id}'s authenticator is forgotten; they enrol a new one at their next sign-in.",
        "De authenticator van {id} is vergeten; bij de volgende keer inloggen wordt een nieuwe ingesteld.",
    ),
    (
        "The number of uses is a whole number above 0, or empty for unlimited.",
        "Het aantal keren is een geheel getal boven 0, of leeg voor onbeperkt.",
    ),
    (
        "New registration token, shown only now: {token}",
        "Nieuwe registratiecode, alleen nu getoond: {token}",
    ),
    (
        "This server does not know that room.",
        "Deze server kent die kamer niet.",
    ),
    (
        "Requested as {reference}. A records manager other than you decides on it.",
        "Aangevraagd als {reference}. Een andere informatiebeheerder dan u beslist erover.",
    ),
    (
        "{reference} approved: {count} message(s) erased from the archive, {purged} copy(ies) on the node purged.",
        "{reference} goedgekeurd: {count} bericht(en) uit het archief gewist, {purged} kopie(ën) op de node verwijderd.",
    ),
    ("{reference} rejected.", "{reference} afgewezen."),
    (
        "{reference} placed on {scope}.",
        "{reference} ingesteld voor {scope}.",
    ),
    ("{reference} released.", "{reference} opgeheven."),
    (
        "{room} is classified {class}.",
        "{room} is geclassificeerd als {class}.",
    ),
    ("{user}'s role is {role}.", "De rol van {user} is {role}."),
    (
        "{reference} proposes {count} expired record(s) for destruction; another records manager must approve it.",
        "{reference} stelt {count} verlopen record(s) voor ter vernietiging; een andere informatiebeheerder moet de lijst goedkeuren.",
    ),
    (
        "{reference} approved: {destroyed} record(s) destroyed ({purged} copies on the node purged), {held} held back by a legal hold, {kept} kept.",
        "{reference} goedgekeurd: {destroyed} record(s) vernietigd ({purged} kopieën op de node verwijderd), {held} tegengehouden door een bewaarplicht, {kept} bewaard.",
    ),
    (
        "This page is for {whom}. You are signed in as {user}.",
        "Deze pagina is voor {whom}. U bent ingelogd als {user}.",
    ),
    ("operators", "beheerders"),
    ("records managers", "informatiebeheerders"),
    ("auditors", "auditors"),
    (
        "This form was sent from another site. Open the console and try again.",
        "Dit formulier kwam van een andere site. Open de console en probeer het opnieuw.",
    ),
    (
        "This form is from an earlier session. Open the page again and retry.",
        "Dit formulier hoort bij een eerdere sessie. Open de pagina opnieuw en probeer het nog eens.",
    ),
    (
        "Too many failed attempts for this account. Try again in {minutes} minute(s).",
        "Te veel mislukte pogingen voor dit account. Probeer het over {minutes} minuut/minuten opnieuw.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts the templates look up: `t.t("...")`.
    fn template_texts() -> Vec<(String, String)> {
        let dir = archipel_test_vm::package_dir().join("templates/console");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(dir).expect("the templates") {
            let path = entry.expect("an entry").path();
            if path.extension().is_none_or(|e| e != "html") {
                continue;
            }
            let template = std::fs::read_to_string(&path).expect("a template");
            for piece in template.split("t.t(\"").skip(1) {
                let text = piece.split("\")").next().expect("a closing quote");
                texts.push((path.display().to_string(), text.to_owned()));
            }
        }
        texts
    }

    /// The texts the pages' code looks up: `.t("...")` and `.f("...", ...)`.
    fn code_texts() -> Vec<(String, String)> {
        let dir = archipel_test_vm::package_dir().join("src/console/web");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(dir).expect("the code") {
            let path = entry.expect("an entry").path();
            if path.file_name().is_some_and(|n| n == "i18n.rs") {
                continue;
            }
            let code = std::fs::read_to_string(&path).expect("a file");
            for call in [".t(", ".f("] {
                for piece in code.split(call).skip(1) {
                    let Some(literal) = piece.trim_start().strip_prefix('"') else {
                        continue;
                    };
                    let text = literal.split('"').next().expect("a closing quote");
                    texts.push((path.display().to_string(), text.to_owned()));
                }
            }
        }
        texts
    }

    #[test]
    fn every_text_of_the_templates_has_a_dutch_translation() {
        let mut texts = template_texts();
        let code = code_texts();
        assert!(code.len() > 25, "{} texts in the code", code.len());
        texts.extend(code);
        assert!(texts.len() > 150, "{} texts", texts.len());
        let missing: Vec<_> = texts
            .iter()
            .filter(|(_, text)| !DUTCH.iter().any(|(en, _)| en == text))
            .collect();
        assert!(missing.is_empty(), "no Dutch for {missing:#?}");
        let mut keys: Vec<&str> = DUTCH.iter().map(|(en, _)| *en).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "a text is in the table twice");
    }

    #[test]
    fn a_person_reads_their_language() {
        let nl = Texts(Lang::Nl);
        assert_eq!(nl.t("Sign in"), "Inloggen");
        assert_eq!(nl.t("a text nobody wrote"), "a text nobody wrote");
        assert_eq!(Texts(Lang::En).t("Sign in"), "Sign in");
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(Lang::from_headers(&headers), Lang::En);
        headers.insert(
            "accept-language",
            "de-DE,nl-NL;q=0.8,en;q=0.5".parse().expect("a header"),
        );
        assert_eq!(Lang::from_headers(&headers), Lang::Nl);
        headers.insert(
            "accept-language",
            "en-GB,nl;q=0.5".parse().expect("a header"),
        );
        assert_eq!(Lang::from_headers(&headers), Lang::En);
    }
}
