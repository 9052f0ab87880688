"""Written text as a reader says it, before it is chunked and spoken: TorToiSe reads "1999",
"$5.50", "12 March 2021" or "Henry VIII" badly or not at all, and a render check can only
compare what Whisper heard with the text if both are spelled out the same way.

`speakable()` rewrites numbers, dates, times, currencies, percentages, units, ordinals,
common abbreviations and Roman numerals as words and leaves everything else (case,
punctuation, which TorToiSe reads for prosody) as it was. Number words come from
num2words (cardinals, ordinals, years and other languages); inflect is not needed, since
the few nouns pluralised here (units, currencies) are a closed table.

English is read in British style ("one hundred and five", "kilometres") and in the order it
is written: "12 March 2021" and ISO "2021-03-12" become "the twelfth of March, twenty
twenty-one", "March 12, 2021" becomes "March twelfth, twenty twenty-one". Rules that need
context are kept simple (README, "How numbers are read"); a pronunciation lexicon entry
(daemon.book.lexicon) fixes any word they get wrong. Other languages: only whole numbers are
spelled out, by num2words in that language when it knows it; all else passes unchanged.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

from num2words import CONVERTER_CLASSES, num2words

MONTHS = [datetime.date(2000, month, 1).strftime("%B") for month in range(1, 13)]
MONTH_ABBREVIATIONS = {"Sept": "September"} | {
    month[:3]: month for month in MONTHS if month != "May"
}
MONTH = r"(?P<month>{})".format(
    "|".join([*MONTHS, *(rf"{short}\.?" for short in MONTH_ABBREVIATIONS)])
)

# A number as written: "7", "1,234", "3.5"; never part of a longer run of digits.
NUMBER = r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\d,]\d|\.\d)"
INTEGER = r"(?<![\d.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?![\d,]\d|\.\d)"
ENDS_SENTENCE = re.compile(r"\s*(?:$|\n|[A-Z\"“\u2018(])")
DIGITS_READ_ONE_BY_ONE = 16  # longer runs are codes or phone numbers, not amounts
OTHER_LANGUAGE_DIGITS = 9


def cardinal(number: str) -> str:
    """ "1,234" → "one thousand two hundred and thirty-four", "3.05" → "three point zero
    five"; a leading zero or a very long run is read digit by digit, as people read codes."""
    whole, _, fraction = number.replace(",", "").partition(".")
    if (len(whole) > 1 and whole.startswith("0")) or len(whole) >= DIGITS_READ_ONE_BY_ONE:
        spoken = digit_by_digit(whole)
    else:
        spoken = num2words(int(whole)).replace(",", "")  # no pauses inside a number
    return f"{spoken} point {digit_by_digit(fraction)}" if fraction else spoken


DIGIT_WORDS = tuple(num2words(digit) for digit in range(10))


def digit_by_digit(digits: str) -> str:
    return " ".join(DIGIT_WORDS[int(digit)] for digit in digits)


def ordinal(number: str) -> str:
    return num2words(int(number.replace(",", "")), to="ordinal").replace(",", "")


def year(number: str) -> str:
    """1999 → "nineteen ninety-nine", 2005 → "two thousand and five"."""
    return num2words(int(number), to="year")


def is_year(number: str) -> bool:
    return len(number) == 4 and number.isdigit() and 1100 <= int(number) <= 2099


def capitalised_like(replacement: str, written: str) -> str:
    """ "e.g." → "for example", "E.g." → "For example"."""
    return replacement[0].upper() + replacement[1:] if written[:1].isupper() else replacement


def keep_full_stop(text: str, end: int) -> str:
    """The full stop of an abbreviation that also ends its sentence ("…, etc. Then") stays."""
    return "." if ENDS_SENTENCE.match(text, end) else ""


@dataclass(frozen=True)
class Rule:
    """One kind of written form: a pattern and how a match is said."""

    pattern: re.Pattern[str]
    say: Callable[[re.Match[str]], str]

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.say, text)


# Abbreviations --------------------------------------------------------------------------

PLAIN_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miz",
    "prof": "professor",
    "mt": "mount",
    "jr": "junior",
    "sr": "senior",
    "e.g": "for example",
    "i.e": "that is",
    "etc": "et cetera",
    "vs": "versus",
    "approx": "approximately",
}


NAME_FOLLOWS = re.compile(r"\s+[A-Z]")
DETERMINERS = {"the", "a", "an", "this", "that", "our", "my", "his", "her", "their", "your"}
SENTENCE_MAY_END_WITH = {"jr", "sr", "etc", "approx", "drive", "street"}


def say_abbreviation(match: re.Match[str]) -> str:
    """Titles ("Mr", "Dr") may go without their full stop before a name (British style).
    "Dr." is Doctor before a name ("Dr. Watson"), Drive after one ("Mulholland Dr."); "St."
    is Street after a name or number ("Baker St."), Saint before a name ("St. Paul"), and
    both are Doctor and Street otherwise. A capitalised "The" or "A" is not a name."""
    written, before = match["word"], match["before"] or ""
    key, name_follows = written.lower(), bool(NAME_FOLLOWS.match(match.string, match.end()))
    after_a_name = bool(before) and before.split()[0].lower() not in DETERMINERS
    if key == "dr":
        word = "drive" if after_a_name and not name_follows else "doctor"
    elif key == "st":
        word = "saint" if name_follows and not after_a_name else "street"
    else:
        word = PLAIN_ABBREVIATIONS[key]
    stop = ""
    if match["dot"] and {key, word} & SENTENCE_MAY_END_WITH:
        stop = keep_full_stop(match.string, match.end())
    return f"{before}{capitalised_like(word, written)}{stop}"


ABBREVIATIONS = Rule(
    re.compile(
        r"(?P<before>(?<![\w.])(?:[A-Z][\w'\u2019-]*|\d\w*)\s+)?"
        r"(?<![\w.])(?P<word>(?:Mrs|Mr|Ms|Prof|Dr|Mt|Jr|Sr|St|MRS|MR|DR|ST)(?=\.|\s+[A-Z])"
        r"|(?i:e\.g|i\.e|etc|approx)(?=\.)|(?i:vs)(?=[.\s]))(?P<dot>\.)?"
    ),
    say_abbreviation,
)
NUMBER_SIGN = Rule(
    re.compile(r"(?<![\w.])(?P<word>No|no|NO)\.\s?(?=\d)"),
    lambda match: capitalised_like("number ", match["word"]),
)


# Dates and times ------------------------------------------------------------------------


def month_name(written: str) -> str:
    written = written.rstrip(".")
    return MONTH_ABBREVIATIONS.get(written, written)


def valid_day(day: str) -> bool:
    return 1 <= int(day) <= 31


def day_month(match: re.Match[str]) -> str:
    """ "12 March 2021" → "the twelfth of March, twenty twenty-one"."""
    if not valid_day(match["day"]):
        return match[0]
    spoken = f"the {ordinal(match['day'])} of {month_name(match['month'])}"
    return f"{spoken}, {year(match['year'])}" if match["year"] else spoken


def month_day(match: re.Match[str]) -> str:
    """ "March 12, 2021" → "March twelfth, twenty twenty-one"."""
    if not valid_day(match["day"]):
        return match[0]
    spoken = f"{month_name(match['month'])} {ordinal(match['day'])}"
    return f"{spoken}, {year(match['year'])}" if match["year"] else spoken


def iso_date(match: re.Match[str]) -> str:
    """ "2021-03-12" is read as "12 March 2021"."""
    month, day = int(match["month"]), match["day"]
    if not 1 <= month <= 12 or not valid_day(day):
        return match[0]
    return f"the {ordinal(day)} of {MONTHS[month - 1]}, {year(match['year'])}"


SUFFIX = r"(?:st|nd|rd|th)?"
YEAR = r"(?P<year>\d{4})(?!\d)"
DATES = (
    Rule(re.compile(r"(?<![\w-])(?P<year>\d{4})-(?P<month>\d\d)-(?P<day>\d\d)(?![\w-])"), iso_date),
    Rule(
        re.compile(rf"(?<![\w.,])(?P<day>\d{{1,2}}){SUFFIX}\s+{MONTH}(?:,?\s+{YEAR})?(?!\w)"),
        day_month,
    ),
    Rule(
        re.compile(rf"(?<!\w){MONTH}\s+(?P<day>\d{{1,2}}){SUFFIX}(?![\w.,]\d)(?:,?\s+{YEAR})?"),
        month_day,
    ),
)


def say_time(match: re.Match[str]) -> str:
    """ "7:30" → "seven thirty", "7:05 pm" → "seven oh five P M", "7:00" → "seven o'clock"."""
    hour, minutes, half = int(match["hour"]), match["minutes"], match["half"]
    spoken = num2words(hour)
    if minutes and minutes != "00":
        spoken += f" oh {num2words(int(minutes))}" if minutes[0] == "0" else f" {cardinal(minutes)}"
    elif not half:
        spoken += " o'clock"
    if half:
        stop = keep_full_stop(match.string, match.end()) if match[0].endswith(".") else ""
        spoken += f" {half.upper()} M{stop}"
    return spoken


MERIDIEM = r"(?:\s?(?P<half>[AaPp])\.?[Mm](?:\.|(?!\w)))"
TIMES = (
    Rule(
        re.compile(
            rf"(?<![\d:.,])(?P<hour>[01]?\d|2[0-3]):(?P<minutes>[0-5]\d)(?![\d:]){MERIDIEM}?"
        ),
        say_time,
    ),
    Rule(re.compile(rf"(?<![\d:.,])(?P<hour>1[0-2]|0?[1-9])(?P<minutes>){MERIDIEM}"), say_time),
)


# Money, percentages, units ----------------------------------------------------------------


@dataclass(frozen=True)
class Currency:
    one: str
    many: str
    hundredth: tuple[str, str] | None  # ("cent", "cents"); None: no coins spoken (yen)


CURRENCIES = {
    "$": Currency("dollar", "dollars", ("cent", "cents")),
    "£": Currency("pound", "pounds", ("penny", "pence")),
    "€": Currency("euro", "euros", ("cent", "cents")),
    "¥": Currency("yen", "yen", None),
}
SCALES = {"k": "thousand", "m": "million", "bn": "billion"}


def counted(number: str, one: str, many: str) -> str:
    return f"{cardinal(number)} {one if number == '1' else many}"


def say_money(match: re.Match[str]) -> str:
    """ "$5" → "five dollars", "$5.50" → "five dollars and fifty cents", "$0.99" → "ninety-nine
    cents", "$2.5m" or "$2.5 million" → "two point five million dollars"."""
    currency, amount = CURRENCIES[match["symbol"]], match["amount"]
    if match["scale"] or match["scale_word"]:
        scale = SCALES.get(match["scale"], match["scale_word"])
        return f"{cardinal(amount)} {scale} {currency.many}"
    whole, _, hundredths = amount.partition(".")
    if len(hundredths) != 2 or currency.hundredth is None:
        return counted(amount, currency.one, currency.many)
    coins = counted(str(int(hundredths)), *currency.hundredth)
    if int(whole.replace(",", "")) == 0:
        return coins
    notes = counted(whole, currency.one, currency.many)
    return notes if hundredths == "00" else f"{notes} and {coins}"


MONEY = Rule(
    re.compile(
        rf"(?P<symbol>[$£€¥])\s?(?P<amount>{NUMBER})(?:(?P<scale>k|m|bn)(?!\w)"
        r"|\s(?P<scale_word>thousand|million|billion|trillion)(?!\w))?"
    ),
    say_money,
)


PERCENT = Rule(
    re.compile(rf"(?P<amount>{NUMBER})\s?%"), lambda match: f"{cardinal(match['amount'])} percent"
)

UNITS = {
    "km/h": ("kilometre per hour", "kilometres per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometre", "kilometres"),
    "cm": ("centimetre", "centimetres"),
    "mm": ("millimetre", "millimetres"),
    "m": ("metre", "metres"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "ml": ("millilitre", "millilitres"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "mi": ("mile", "miles"),
    "min": ("minute", "minutes"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
UNIT_NAMES = "|".join(re.escape(unit) for unit in sorted(UNITS, key=len, reverse=True))
MEASURES = Rule(
    re.compile(rf"(?P<amount>{NUMBER})\s?(?P<unit>{UNIT_NAMES})(?![\w/])".replace("°", "° ?")),
    lambda match: counted(match["amount"], *UNITS[match["unit"].replace(" ", "")]),
)
MINUS = Rule(re.compile(r"(?<![\w.,-])[-\u2212](?=\d)"), lambda match: "minus ")


# Numbers --------------------------------------------------------------------------------


def say_decade(match: re.Match[str]) -> str:
    """ "1990s" → "nineteen nineties", "80s" → "eighties"."""
    number = match["decade"]
    spoken = year(number) if len(number) == 4 else cardinal(number)
    return spoken[:-1] + "ies" if spoken.endswith("y") else f"{spoken}s"


def say_number(match: re.Match[str]) -> str:
    """A 4-digit number 1100-2099 is a year; units, money and dates were read before."""
    number = match[0]
    return year(number) if is_year(number) else cardinal(number)


def say_digits_in_a_word(match: re.Match[str]) -> str:
    """ "MP3" → "MP three", "4x4" → "four x four": a space on the side of each letter."""
    text, start, end = match.string, match.start(), match.end()
    before = " " if start and text[start - 1].isalpha() else ""
    after = " " if end < len(text) and text[end].isalpha() else ""
    return f"{before}{cardinal(match[0])}{after}"


NUMBERS = (
    Rule(
        re.compile(rf"(?P<number>{INTEGER})(?:st|nd|rd|th)(?!\w)"),
        lambda match: ordinal(match["number"]),
    ),
    Rule(
        re.compile(
            r"(?<![\w.,'\u2019])['\u2019]?(?P<decade>\d{2}|1[1-9]\d{2}|20\d{2})(?<=0)s(?!\w)"
        ),
        say_decade,
    ),
    # "version 2.0.1": every part read as a number, "two point zero point one"
    Rule(
        re.compile(r"(?<![\d.,])\d+(?:\.\d+){2,}(?![\d.]\d)"),
        lambda match: " point ".join(cardinal(part) for part in match[0].split(".")),
    ),
    # digits against letters ("MP3", "B12") once units, ordinals and decades had their chance
    Rule(re.compile(r"(?<=[^\W\d_])\d+|(?<!\d)\d+(?=[^\W\d_])"), say_digits_in_a_word),
    Rule(re.compile(NUMBER), say_number),
)


# Roman numerals ---------------------------------------------------------------------------

ROMAN_VALUES = {"M": 1000, "D": 500, "C": 100, "L": 50, "X": 10, "V": 5, "I": 1}
ROMAN = r"(?=[MDCLXVI])M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
# Words after which a numeral counts things ("Chapter IV", "World War II", "Type II")
NUMBERED = (
    "chapter|book|part|volume|vol|act|scene|section|appendix|canto|episode|phase|stage|level"
    "|class|type|grade|mark|mk|title|article|war|round|season|series|psalm"
)


def roman_value(numeral: str) -> int:
    values = [ROMAN_VALUES[letter] for letter in numeral]
    return sum(-v if v < after else v for v, after in zip(values, [*values[1:], 0], strict=True))


def say_regnal(match: re.Match[str]) -> str:
    numeral = match["numeral"]
    if numeral in ("", "I", "X") or not 2 <= roman_value(numeral) <= 39:
        return match[0]
    return f"{match['name']}the {num2words(roman_value(numeral), to='ordinal').title()}"


ROMANS = (
    Rule(
        re.compile(rf"(?<!\w)(?P<word>(?i:{NUMBERED})\.?\s+)(?P<numeral>{ROMAN})(?!\w)"),
        lambda match: match["word"] + num2words(roman_value(match["numeral"])),
    ),
    # Regnal numbers after a name: "Henry VIII" → "Henry the Eighth". Only I, V and X, 2-39,
    # so "MIX", "CIVIL", "Vitamin C" or "Malcolm X" are never read as numbers, nor "I".
    Rule(
        re.compile(
            r"(?<![\w.])(?P<name>[A-Z][a-z]+\s+)(?P<numeral>X{0,3}(?:IX|IV|V?I{0,3}))(?!\w)"
        ),
        say_regnal,
    ),
)


ENGLISH = (
    NUMBER_SIGN,
    ABBREVIATIONS,
    *DATES,
    *TIMES,
    MONEY,
    PERCENT,
    MINUS,
    MEASURES,
    *ROMANS,
    *NUMBERS,
)


def speakable(text: str, language: str = "en") -> str:
    """`text` as a reader says it: numbers, dates, money, units, abbreviations and Roman
    numerals in words; case and punctuation otherwise kept. `language` is a BCP 47 tag
    ("en", "en-GB", "de"): English gets every rule, other languages their whole numbers in
    words when num2words knows the language, else the text unchanged."""
    primary = language.replace("_", "-").split("-")[0].lower()
    if primary != "en":
        return spell_whole_numbers(text, primary) if primary in CONVERTER_CLASSES else text
    for rule in ENGLISH:
        text = rule.apply(text)
    return text


def spell_whole_numbers(text: str, language: str) -> str:
    """Digits alone, not decimals: "3,5" means 3.5 in German and 3,500 in English."""
    return re.sub(
        r"(?<![\d.,])\d+(?![\d.,]?\d)", lambda match: whole_number(match[0], language), text
    )


def whole_number(digits: str, language: str) -> str:
    """num2words in `language`; digits as written when it cannot say them: runs longer than
    OTHER_LANGUAGE_DIGITS (some converters stop at 10 digits, Amharic's hangs on 15) or a
    number a converter fails on (Amharic's on 1234)."""
    if len(digits) > OTHER_LANGUAGE_DIGITS:
        return digits
    try:
        return num2words(int(digits), lang=language)
    except (OverflowError, TypeError, NotImplementedError):
        return digits
