"""How a CSV export of another tool maps onto LeadFlow's leads: the presets for the tools
teams leave (HubSpot, Salesforce / Account Engagement, Mautic), what each column may map
to, the values those tools write (size ranges, lifecycle stages) read as ours, and how an
uploaded file's encoding and delimiter are found.

Written once, used by ``manage.py import_leads`` (``--preset``, ``--map``) and by the
import pages (``leadflow.leads.imports``): both turn a header and a list of targets into a
``CsvLayout`` (``leadflow.leads.importexport.csv_layout_mapped``).

A column's *target* is one of:

- a lead field (``IMPORT_COLUMNS``: ``email``, ``external_id``, ``name``, ``company``…);
- ``first_name`` / ``last_name``: joined, with a space, into ``name`` (a ``name`` column,
  when the row has one, wins);
- ``stage``: the tool's lifecycle stage, read through ``STAGE_ALIASES``;
- ``trait`` (a trait named after the column), or ``trait:NAME``;
- ``ignore``.
"""

import codecs
import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass

from leadflow.leads.models import LEAD_IDENTITY_FIELDS, Stage
from leadflow.leads.validation import PROFILE_TEXT_FIELDS

# Columns a CSV row may set on a lead; any other column is a trait.
IMPORT_COLUMNS = (*LEAD_IDENTITY_FIELDS, *PROFILE_TEXT_FIELDS, "company_size")
TRAIT_PREFIX = "trait:"
FIRST_NAME, LAST_NAME, STAGE, TRAIT, IGNORE = "first_name", "last_name", "stage", "trait", "ignore"
# Targets a header may give to one column only (a trait's name is checked the same way).
SINGLE_TARGETS = frozenset({*IMPORT_COLUMNS, FIRST_NAME, LAST_NAME, STAGE})

TARGET_LABELS: dict[str, str] = {
    "email": "E-mail",
    "external_id": "External id",
    "name": "Name (full)",
    FIRST_NAME: "First name (joined with the last name into Name)",
    LAST_NAME: "Last name (joined with the first name into Name)",
    "company": "Company",
    "job_title": "Job title",
    "industry": "Industry",
    "country": "Country",
    "company_size": "Company size (employees; ranges read as their lower bound)",
    "utm_source": "UTM source",
    "utm_medium": "UTM medium",
    "utm_campaign": "UTM campaign",
    STAGE: "Lifecycle stage (mapped to ours, with a stage change 'imported')",
    TRAIT: "Trait (named after the column)",
    IGNORE: "Ignore",
}
TARGETS = tuple(TARGET_LABELS)

NATIVE = "leadflow"


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    # Normalised header (``header_key``) -> target; columns not listed are traits.
    columns: dict[str, str]


def header_key(name: str) -> str:
    """A header as presets list it: lower case, blanks collapsed, a byte-order mark dropped."""
    return " ".join(name.replace("\ufeff", "").split()).lower()


def _columns(*pairs: tuple[Sequence[str], str]) -> dict[str, str]:
    return {header_key(name): target for names, target in pairs for name in names}


# The column names of each tool's contacts export (the labels of the default export, and
# for Salesforce the API names a Data Loader or report export writes).
PRESETS: dict[str, Preset] = {
    preset.key: preset
    for preset in (
        Preset(
            "hubspot",
            "HubSpot contacts export",
            _columns(
                (["Email", "Email Address"], "email"),
                (["First Name"], FIRST_NAME),
                (["Last Name"], LAST_NAME),
                (["Company Name", "Company"], "company"),
                (["Job Title"], "job_title"),
                (["Industry"], "industry"),
                (["Country/Region", "Country"], "country"),
                (["Number of Employees"], "company_size"),
                (["Lifecycle Stage"], STAGE),
                (["Record ID", "Contact ID"], "trait:hubspot_id"),
                (["HubSpot Score"], "trait:hubspot_score"),
                (["Lead Status"], "trait:hubspot_lead_status"),
                (["Contact owner"], "trait:hubspot_owner"),
            ),
        ),
        Preset(
            "salesforce",
            "Salesforce / Account Engagement (Pardot) export",
            _columns(
                (["Email"], "email"),
                (["First Name", "FirstName"], FIRST_NAME),
                (["Last Name", "LastName"], LAST_NAME),
                (["Title", "Job Title"], "job_title"),
                (["Company", "Company / Account", "Account Name", "AccountName", "Account: Account Name"], "company"),
                (["Industry"], "industry"),
                (["Country", "Mailing Country", "MailingCountry"], "country"),
                (["Employees", "No. of Employees", "NumberOfEmployees", "Number of Employees"], "company_size"),
                (["Lead Status", "Status", "Lifecycle Stage"], STAGE),
                (["Lead ID", "Contact ID", "Id", "CRM Lead FID", "CRM Contact FID"], "trait:salesforce_id"),
                (["Prospect Id", "Prospect ID"], "trait:pardot_id"),
                (["Lead Source", "LeadSource"], "trait:lead_source"),
                (["Score"], "trait:pardot_score"),
                (["Grade"], "trait:pardot_grade"),
                (["Salutation"], "trait:salutation"),
            ),
        ),
        Preset(
            "mautic",
            "Mautic contacts export",
            _columns(
                (["email"], "email"),
                (["firstname"], FIRST_NAME),
                (["lastname"], LAST_NAME),
                (["company"], "company"),
                (["position"], "job_title"),
                (["country"], "country"),
                (["companyindustry"], "industry"),
                (["companynumber_of_employees", "number_of_employees"], "company_size"),
                (["stage"], STAGE),
                (["id"], "trait:mautic_id"),
                (["points"], "trait:mautic_points"),
                (["title"], "trait:salutation"),  # Mautic's "title" is Mr / Ms, not a job title
            ),
        ),
    )
}


class CsvImportError(Exception):
    """The file or its mapping cannot be imported as a whole; the message says what to fix,
    ``column`` (an index) which column to change, when it is one."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column


def native_target(name: str) -> str:
    """What LeadFlow's own columns mean: a field by its name, ``trait:NAME``, our export's
    computed columns ignored, anything else a trait."""
    from leadflow.leads.importexport import COMPUTED_COLUMNS  # the export's columns live there

    stripped = name.strip()
    lowered = stripped.lower()
    if not stripped:
        return IGNORE
    if lowered.startswith(TRAIT_PREFIX):
        return TRAIT_PREFIX + stripped[len(TRAIT_PREFIX) :].strip()
    if lowered in IMPORT_COLUMNS:
        return lowered
    if lowered in COMPUTED_COLUMNS:
        return IGNORE
    return TRAIT


def preset_targets(preset: str, header: Sequence[str]) -> list[str]:
    """Each column's target under ``preset`` (a key of ``PRESETS`` or ``NATIVE``). A target
    two columns would share goes to the first; the next one becomes a trait."""
    if preset == NATIVE:
        return [native_target(name) for name in header]
    columns = PRESETS[preset].columns
    used: set[str] = set()
    targets = []
    for name in header:
        target = columns.get(header_key(name))
        if target is None:
            target = TRAIT if name.strip() else IGNORE
        elif target in used:
            target = TRAIT
        used.add(target)
        targets.append(target)
    return targets


def preset_detect(header: Sequence[str]) -> str:
    """The preset whose columns the header has most of; LeadFlow's own columns unless a
    tool's preset knows more of them (ties go to LeadFlow, then in ``PRESETS`` order)."""
    keys = [header_key(name) for name in header]
    best, best_score = NATIVE, sum(1 for key in keys if key in IMPORT_COLUMNS)
    for preset in PRESETS.values():
        score = sum(1 for key in keys if key in preset.columns)
        if score > best_score:
            best, best_score = preset.key, score
    return best


def targets_override(header: Sequence[str], targets: list[str], overrides: Sequence[str]) -> list[str]:
    """Apply ``--map COLUMN=TARGET`` overrides (the column by its header, case-insensitive)."""
    keys = [header_key(name) for name in header]
    result = list(targets)
    for override in overrides:
        column, sep, target = override.rpartition("=")
        if not sep or not column.strip():
            raise CsvImportError(f"--map {override!r}: write COLUMN=FIELD, e.g. --map 'Company Name=company'.")
        target = target.strip()
        target_check(target)
        try:
            index = keys.index(header_key(column))
        except ValueError:
            raise CsvImportError(
                f"--map {override!r}: the header has no column {column.strip()!r} "
                f"(it has: {', '.join(h for h in header if h.strip())})."
            ) from None
        result[index] = target
    return result


def target_check(target: str) -> None:
    if target.lower().startswith(TRAIT_PREFIX):
        if not target[len(TRAIT_PREFIX) :].strip():
            raise CsvImportError(f"{target!r}: write the trait's name after 'trait:'.")
        return
    if target not in TARGETS:
        raise CsvImportError(f"{target!r} is not a target: choose one of {', '.join(TARGETS)} or trait:NAME.")


# --- Values ---------------------------------------------------------------------------------

# HubSpot's bands ("1-5", "25-50", "1000+"), LinkedIn's ("51-200", "10,001+"), spelled out
# ("500 to 1000", "10000 or more").
_SIZE_RANGE = re.compile(r"^(\d+)\s*(?:-|–|—|to)\s*(\d+)$")
_SIZE_OPEN = re.compile(r"^(\d+)\s*(?:\+|or more|and more|and above)$")
_THOUSANDS = re.compile(r"(?<=\d)[,.'\u00a0\u202f ](?=\d{3}(?!\d))")
SIZE_ERROR = "{value!r} is not a whole number of employees: write e.g. 250, or a range such as 51-200."


def company_size_parse(value: str) -> int | None:
    """A number of employees as these tools write it, or None when it is none.

    A range reads as its **lower bound** ("51-200" → 51, "1000+" → 1000): the one number
    true of every company in the band, so a fit rule ``company_size gte 50`` matches all of
    "51-200" and ``gte 100`` matches none of it. A midpoint (125) would pass ``gte 100``
    for a 60-person company, and an open band ("10,001+") has no midpoint."""
    text = _THOUSANDS.sub("", value.strip().lower()).removesuffix("employees").strip()
    if text.isdigit():
        return int(text)
    if match := _SIZE_RANGE.match(text):
        low, high = int(match[1]), int(match[2])
        return low if low <= high else None
    if match := _SIZE_OPEN.match(text):
        return int(match[1])
    return None


def _stage_key(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", value.lower())


# The lifecycle stages and lead statuses of these tools, as ours (keys compared without
# case, blanks or punctuation). HubSpot: Subscriber … Evangelist (and its internal names);
# Salesforce lead statuses; Account Engagement's lifecycle; Mautic's stages are the team's
# own names, so the common ones are here. "Other" and unknown values leave the stage alone.
STAGE_ALIASES: dict[str, str] = {
    _stage_key(alias): stage
    for stage, aliases in {
        Stage.NEW: ["new", "subscriber", "lead", "visitor", "prospect", "open", "Open - Not Contacted"],
        Stage.MQL: ["mql", "Marketing Qualified Lead", "marketingqualifiedlead", "marketing qualified"],
        Stage.SQL: ["sql", "Sales Qualified Lead", "salesqualifiedlead", "sales qualified", "Working - Contacted"],
        Stage.ACCEPTED: ["accepted", "opportunity", "customer", "evangelist", "won", "Closed - Converted"],
        Stage.RECYCLED: ["recycled", "nurture", "nurturing"],
        Stage.DISQUALIFIED: ["disqualified", "unqualified", "Closed - Not Converted"],
    }.items()
    for alias in aliases
}


def stage_parse(value: str) -> str | None:
    """Our stage for a tool's lifecycle stage or lead status, or None (left alone)."""
    return STAGE_ALIASES.get(_stage_key(value))


# --- The file ---------------------------------------------------------------------------------

# Tried in order: a byte-order mark says UTF-8 (or UTF-16, Excel's "Unicode text"); else
# UTF-8 if it decodes; else Windows' Excel "CSV" (cp1252, a superset of Latin-1's printable
# characters: € and curly quotes); Latin-1 decodes anything.
ENCODINGS = ("utf-8-sig", "utf-8", "cp1252", "latin-1")
DELIMITERS = ",;\t|"


def csv_decode(data: bytes) -> tuple[str, str]:
    """(text, encoding) of an uploaded CSV file."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
        return data.decode("utf-16", errors="replace"), "utf-16"
    for encoding in ENCODINGS[1:]:
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


def csv_delimiter(text: str) -> str:
    """The delimiter of a CSV text, sniffed from its first lines: the candidate that splits
    the header into the most columns with the rows agreeing on their number; a comma when
    none does (Excel writes semicolons where the decimal mark is a comma, and tabs).
    ``csv.Sniffer`` guesses from character frequencies and is fooled by a comma in a cell."""
    lines = text[:65536].splitlines()[:20]
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        try:
            rows = [row for row in csv.reader(lines, delimiter=delimiter) if row]
        except csv.Error:
            continue
        if not rows:
            continue
        width = len(rows[0])
        agreeing = sum(1 for row in rows[1:] if len(row) == width)
        if width > best_width and agreeing >= (len(rows) - 1) / 2:
            best, best_width = delimiter, width
    return best
