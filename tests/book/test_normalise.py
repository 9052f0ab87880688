"""daemon.book.normalise: written text as a reader says it, category by category, and what
must be left alone."""

from __future__ import annotations

import pytest

from daemon.book.normalise import speakable


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("1,234 people", "one thousand two hundred and thirty-four people"),
        ("7 days", "seven days"),
        ("3.5 times", "three point five times"),
        ("0.05", "zero point zero five"),
        ("1,000,000", "one million"),
        ("agent 007", "agent zero zero seven"),
        ("-3 or +3", "minus three or +three"),
    ],
)
def test_cardinals_and_decimals(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("In 1999 it", "In nineteen ninety-nine it"),
        ("in 2005.", "in two thousand and five."),
        ("By 2021,", "By twenty twenty-one,"),
        ("in 1100", "in eleven hundred"),
        ("in 1905", "in nineteen oh-five"),
        ("the 1990s", "the nineteen nineties"),
        ("the 80s", "the eighties"),
        ("1500 people", "fifteen hundred people"),  # a reader says it so too
        ("1099 or 2100", "one thousand and ninety-nine or two thousand one hundred"),
        ("1,999", "one thousand nine hundred and ninety-nine"),  # a comma: an amount
    ],
)
def test_years_and_decades(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("the 21st of May", "the twenty-first of May"),
        ("his 2nd and 3rd tries", "his second and third tries"),
        ("the 100th time", "the one hundredth time"),
    ],
)
def test_ordinals(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("It cost $5.", "It cost five dollars."),
        ("$1", "one dollar"),
        ("$5.50", "five dollars and fifty cents"),
        ("$1.01", "one dollar and one cent"),
        ("$0.99", "ninety-nine cents"),
        ("$5.00", "five dollars"),
        ("$1,200", "one thousand two hundred dollars"),
        ("$2.5 million", "two point five million dollars"),
        ("$3m", "three million dollars"),
        ("£20", "twenty pounds"),
        ("£1.50", "one pound and fifty pence"),
        ("€3", "three euros"),
        ("¥500", "five hundred yen"),
        ("50% off", "fifty percent off"),
        ("2.5%", "two point five percent"),
        ("$2019", "two thousand and nineteen dollars"),  # money, never a year
    ],
)
def test_money_and_percentages(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("on 12 March 2021.", "on the twelfth of March, twenty twenty-one."),
        ("on 1st May 2020", "on the first of May, twenty twenty"),
        ("12 March", "the twelfth of March"),
        ("March 12, 2021", "March twelfth, twenty twenty-one"),
        ("Jan. 3rd", "January third"),
        ("2021-03-12", "the twelfth of March, twenty twenty-one"),
        ("2021-13-45", "twenty twenty-one-thirteen-forty-five"),  # no 13th month: not a date
        ("May 2021", "May twenty twenty-one"),
    ],
)
def test_dates_are_read_in_the_order_written(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("at 7:30", "at seven thirty"),
        ("at 7:05 pm", "at seven oh five P M"),
        ("at 7:00", "at seven o'clock"),
        ("at 10 a.m. Then", "at ten A M. Then"),
        ("at 6pm", "at six P M"),
        ("23:45", "twenty-three forty-five"),
        ("John 3:16", "John three sixteen"),
    ],
)
def test_times(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("Dr. Watson", "Doctor Watson"),
        ("Dr Watson", "Doctor Watson"),
        ("on Mulholland Dr.", "on Mulholland Drive."),
        ("St. Paul", "Saint Paul"),
        ("The Dr. said.", "The Doctor said."),
        ("A St. Bernard", "A Saint Bernard"),
        ("in Baker St. Then", "in Baker Street. Then"),
        ("221 Baker St.", "two hundred and twenty-one Baker Street."),
        ("Mr. and Mrs. Smith", "Mister and Missus Smith"),
        ("Prof. Plum", "Professor Plum"),
        ("fruit, e.g. apples", "fruit, for example apples"),
        ("E.g. apples", "For example apples"),
        ("one, i.e. this", "one, that is this"),
        ("apples, pears, etc.", "apples, pears, et cetera."),
        ("pears, etc., and", "pears, et cetera, and"),
        ("Ali vs. Frazier", "Ali versus Frazier"),
        ("No. 5", "Number five"),
        ("the no. 9 bus", "the number nine bus"),
    ],
)
def test_abbreviations(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("Chapter IV", "Chapter four"),
        ("CHAPTER XII.", "CHAPTER twelve."),
        ("Part I", "Part one"),
        ("World War II", "World War two"),
        ("World War I ended", "World War one ended"),
        ("Henry VIII", "Henry the Eighth"),
        ("Henry VIII's wives", "Henry the Eighth's wives"),
        ("Louis XIV and Elizabeth II", "Louis the Fourteenth and Elizabeth the Second"),
        ("Pope Benedict XVI", "Pope Benedict the Sixteenth"),
    ],
)
def test_roman_numerals(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("5 km", "five kilometres"),
        ("1 km", "one kilometre"),
        ("2.5kg", "two point five kilograms"),
        ("6 ft", "six feet"),
        ("60 mph", "sixty miles per hour"),
        ("-5°C", "minus five degrees Celsius"),
        ("20 °F", "twenty degrees Fahrenheit"),
        ("90°", "ninety degrees"),
        ("4 GB", "four gigabytes"),
    ],
)
def test_units(written: str, said: str) -> None:
    assert speakable(written) == said


@pytest.mark.parametrize(
    "text",
    [
        "I went home, and I said: \u201cno.\u201d",
        "THE MIX DID NOT MIX",
        "the CIVIL war",
        "Malcolm X",
        "Vitamin C and Plan D",
        "I, Claudius",
        "Sherlock Holmes \u2014 \u2026 (yes!)",
        "",
    ],
)
def test_words_that_only_look_like_numbers_are_left_alone(text: str) -> None:
    assert speakable(text) == text


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("version 2.0.1", "version two point zero point one"),
        ("an MP3 player in a 4x4", "an MP three player in a four x four"),
        ("COVID-19", "COVID-nineteen"),
    ],
)
def test_digits_inside_words_and_versions(written: str, said: str) -> None:
    assert speakable(written) == said


def test_a_sentence_keeps_its_case_and_punctuation() -> None:
    assert speakable("On 12 March 2021, Dr. Jones paid $5.50 (not 6%)! Chapter IV began.") == (
        "On the twelfth of March, twenty twenty-one, Doctor Jones paid five dollars and "
        "fifty cents (not six percent)! Chapter four began."
    )


@pytest.mark.parametrize(
    ("written", "language", "said"),
    [
        ("Es kostet 12 Euro, 3,5 mehr", "de", "Es kostet zwölf Euro, 3,5 mehr"),
        ("12 ans", "fr-FR", "douze ans"),
        ("Chapter IV, 12 March", "de", "Chapter IV, zwölf March"),  # English rules are English
        ("12 x", "tlh", "12 x"),  # a language num2words does not know: unchanged
        ("1234 Birr", "am", "1234 Birr"),  # num2words' Amharic fails on it: as written
        ("99999999999", "de", "99999999999"),  # longer than some converters can say
        ("12 March", "en-GB", "the twelfth of March"),
    ],
)
def test_other_languages_get_only_their_whole_numbers_spelled(
    written: str, language: str, said: str
) -> None:
    assert speakable(written, language) == said


def test_long_runs_of_digits_and_abbreviations_are_read_in_linear_time() -> None:
    """A hostile text (pytest-timeout stops a quadratic regular expression)."""
    digits = "1" * 100_000
    assert speakable(f"{digits} {digits}x Dr " * 2).startswith("one one one")
    assert speakable(f"{digits}x", "de").endswith(f"{digits}x")
