"""The words of every lesson (nothing executes here).

- A sentence about a result must not be contradicted by the reader's own run: a number in the text
  that follows a computation is either computed and printed by a code cell (so it appears there), or
  the sentence says where the number was recorded or published.
- The course speaks in its own voice: no trace of the material it was made from.
- Every lesson has the same frame: what you will learn, key takeaways, exercises, going further.
- Every cross-reference ("lesson 08", "section 2.3", "exercise 4") names something that exists.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*_solutions.ipynb"))
LESSON_OF = {p.name[:2]: p for p in LESSONS}  # "07" -> notebooks/07_diffusion_ddpm.ipynb


def cells_of(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def markdown_of(path: Path) -> list[str]:
    return [c["source"] for c in cells_of(path) if c["cell_type"] == "markdown"]


def headings(texts: list[str]) -> list[str]:
    """Markdown heading lines, outside fenced code blocks."""
    unfenced = (re.sub(r"```.*?```", "", text, flags=re.S) for text in texts)
    return [line for text in unfenced for line in text.splitlines() if line.startswith("#")]


# --- 1. Numbers that a run could contradict ---------------------------------------------------

PROSE_ONLY = [
    re.compile(r"```.*?```", re.S),  # fenced code
    re.compile(r"`[^`]*`"),  # inline code: parameter values, not claims
    re.compile(r"\$\$.*?\$\$|\$[^$]+\$", re.S),  # formulas and worked arithmetic
    re.compile(r"^#.*$", re.M),  # headings
    re.compile(r"(?:\bsections?\s+|§\s?)\d+(?:\.\d+)*", re.I),  # "section 2.3" is not a result
]
# decimals (0.93), percentages (97 %) and factors (1.2x, 16×), but not sizes such as 3x3 or 512 × 512
RESULT_NUMBER = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?\s?%|\d+(?:\.\d+)?\s?[x×](?![A-Za-z0-9])(?!\s*\d)|\d+\.\d+)"
)
# a sentence that says where its numbers come from: a record of the course or the literature
RECORDED = re.compile(
    r"\brecorded\b|\bmanifest\b|lesson_times|course map|\bet al\b|\breport(s|ed)?\b"
    r"|\bpublished\b|\bquoted\b|\bpapers?\b",
    re.I,
)
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+(?=[A-Z(*])|\n\s*\n|\n\s*[-*]\s+|\n\s*\d+\.\s+")
# a sentence about what another run (the full one, the course author's) measured
OTHER_RUN = re.compile(
    r"\b(in the (full|course's) (runs?|lesson)|the full (run|lesson)|the text describes)\b", re.I
)
OUTCOME = re.compile(
    r"\b(is|are|was|were|did|reached|reaches|ended|beat|beats|got|found|measured|measures"
    r"|describes|answer)\b",
    re.I,
)


def spellings(number: str) -> set[str]:
    """How a number of the text may appear in the code that computes it."""
    number = number.replace(" ", "").rstrip("x×")
    if number.endswith("%"):
        value = float(number[:-1]) / 100
        return {number[:-1], f"{value:g}", f"{value:.2f}"}
    return {number, number.rstrip("0").rstrip(".")} if "." in number else {number}


def appears(number: str, code: str) -> bool:
    """``number`` written in ``code`` as a number of its own (0.5 is not in 0.55, 97 not in 1997)."""
    return re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", code) is not None


def unbacked_results(cells: list[dict]) -> list[str]:
    """Sentences, in markdown cells after the first computation, that state a result number the
    code cells never compute and that do not say where it was recorded."""
    code = "\n".join(c["source"] for c in cells if c["cell_type"] == "code")
    computed, found = False, []
    for cell in cells:
        if cell["cell_type"] == "code":
            computed = computed or not cell["source"].startswith("# colab-setup")
            continue
        if not computed:
            continue
        prose = cell["source"]
        for pattern in PROSE_ONLY:
            prose = pattern.sub(" ", prose)
        for sentence in SENTENCE_END.split(prose):
            if RECORDED.search(sentence):
                continue
            if OTHER_RUN.search(sentence) and OUTCOME.search(sentence):
                found.append(f"a result of another run: {' '.join(sentence.split())[:120]}")
            for number in RESULT_NUMBER.findall(sentence):
                if not any(appears(spelling, code) for spelling in spellings(number)):
                    found.append(f"{number!r} in: {' '.join(sentence.split())[:120]}")
    return found


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_result_numbers_are_computed_or_recorded(path):
    assert unbacked_results(cells_of(path)) == []


def lesson_cells(*markdown_after_code: str, code: str = "x = 1") -> list[dict]:
    return [
        {"cell_type": "markdown", "source": "# 99 · A lesson\n\nWe will find 0.93."},
        {"cell_type": "code", "source": "# colab-setup: nothing"},
        {"cell_type": "code", "source": code},
        *({"cell_type": "markdown", "source": text} for text in markdown_after_code),
    ]


def test_the_result_check_catches_typed_results():
    planted = [
        "DDIM with 100 steps is worse than with 10: FD 0.93 against 0.61.",
        "Heun recognises 97 % of the digits.",
        "The latent step is 3.5x faster.",
        "In the full run the answer was yes, by less than the spread.",
    ]
    found = unbacked_results(lesson_cells(*planted))
    assert [f.split(" in: ")[0] for f in found] == [
        "'0.93'",
        "'0.61'",
        "'97 %'",
        "'3.5x'",
        "a result of another run: In the full run the answer was yes, by less than the spread.",
    ]
    # the same sentences are fine where a code cell computes (or asserts) those very numbers
    assert unbacked_results(lesson_cells(planted[0], code="assert fd < 0.93 and old > 0.61")) == []
    assert unbacked_results(lesson_cells(planted[1], code="assert rate >= 0.97")) == []


def test_the_result_check_leaves_the_rest_alone():
    fine = [
        "The detector's recorded mAP@0.5 is 0.97 (the manifest).",  # says where it was recorded
        "Lin et al. report a terminal SNR of about 0.005.",  # quoted from the literature
        "The mean is $(0.5 + 0.6 + 0.667) / 3 = 0.589$.",  # worked arithmetic, checkable by hand
        "Set `guidance_scale=7.5` and `lr=3e-3`.",  # parameter values
        "### 2.1 A heading, and section 2.3 of this lesson",
        "A 3x3 kernel on a 512 × 512 image, 16x16 digits.",  # sizes, not results
        "The full lesson samples 500 digits (50 per class).",  # a setting, not an outcome
    ]
    assert unbacked_results(lesson_cells(*fine)) == []
    # numbers in the introduction, before anything is computed, are promises, not results
    assert (
        unbacked_results(lesson_cells()[:2] + [{"cell_type": "markdown", "source": "0.93"}]) == []
    )


# --- 2. The course's own voice ----------------------------------------------------------------

TRACE = re.compile(
    r"\bseed (lesson|exercise|notebook|course|chapter)s?\b|\bsyllabus\b|\bthe series\b|\bseries'"
    r"|\blesson's source\b|\bsource (lesson|notebook|course|material)s?\b"
    r"|\bchapter this course\b|\bcourse (is|was) (built|made) from\b"
    r"|\boriginal (lesson|notebook|exercise|listing)s?\b",
    re.I,
)


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: p.stem)
def test_no_trace_of_how_the_course_was_made(path):
    for cell in cells_of(path):
        match = TRACE.search(cell["source"])
        assert match is None, f"{path.name}: {cell['source'][max(0, match.start() - 40) :][:90]!r}"


def test_the_trace_check_catches_planted_phrases():
    for text in [
        "MiniUNet is the two-level version from the seed lesson",
        "Exercise from the syllabus: similarity",
        "the network of the series' exercise",
        "(the exercise of the series)",
        "The lesson's source wanted one image",
        "as the source notebook did",
    ]:
        assert TRACE.search(text), text
    for text in ["the same seed gives the same noise", "seed_everything(0)", "a time series"]:
        assert not TRACE.search(text), text


# --- 3. The frame of every lesson -------------------------------------------------------------


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_every_lesson_has_the_same_frame(path):
    texts = markdown_of(path)
    assert "**What you will learn**" in texts[0], f"{path.name}: no 'What you will learn' on top"
    titles = [h.lstrip("#").strip() for h in headings(texts) if h.startswith("## ")]
    for title in ("Key takeaways", "Exercises", "Going further"):
        assert title in titles, f"{path.name} has no '## {title}'"
    order = [titles.index(t) for t in ("Key takeaways", "Exercises", "Going further")]
    assert order == sorted(order), f"{path.name}: takeaways, then exercises, then going further"
    assert titles[-1] == "Going further", f"{path.name}: 'Going further' closes the lesson"
    assert re.search(r"\*\*Exercise 1\b", "\n".join(texts)), f"{path.name} has no exercise"
    further = next(t for t in texts if "## Going further" in t).split("## Going further", 1)[1]
    assert len(re.findall(r"^- ", further, re.M)) >= 3, f"{path.name}: too few pointers"


# --- 4. Cross-references ----------------------------------------------------------------------

LESSON_REF = re.compile(r"\b[Ll]essons?\s+(\d{2}(?:\s*(?:,|-|–|to|and)\s*\d{2})*)")
SECTION_REF = re.compile(
    r"(?:\b[Ss]ections?\s+|§\s?)(\d+(?:\.\d+)?(?:\s*(?:,|and|-|–)\s*\d+(?:\.\d+)?)*)"
)
EXERCISE_REF = re.compile(r"(?<!\*\*)\b[Ee]xercises?\s+(\d+(?:\s*(?:,|and|-|–)\s*\d+)*)")
# the lessons number their sections "## 3 · Title" and, where they number parts, "### 2.1 Title"
SECTION_HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)?)(?:\s*·|\s)")


def numbers_in(group: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", group)


def sections_of(path: Path) -> set[str]:
    return {m.group(1) for h in headings(markdown_of(path)) if (m := SECTION_HEADING.match(h))}


def exercises_of(path: Path) -> set[str]:
    return set(re.findall(r"\*\*Exercise (\d+)", "\n".join(markdown_of(path))))


def broken_references(path: Path) -> list[str]:
    """References in the markdown of ``path`` (a lesson or its solutions) to lessons, sections and
    exercises that do not exist. A section reference is to the lesson itself unless it says
    "of lesson NN" / "lesson NN's"; one that cites a paper's section is skipped."""
    own = LESSON_OF[path.name[:2]]
    exercises, broken = exercises_of(own), []
    for text in markdown_of(path):
        for match in LESSON_REF.finditer(text):
            broken += [f"lesson {n}" for n in numbers_in(match.group(1)) if n not in LESSON_OF]
        for match in SECTION_REF.finditer(text):
            before, after = text[max(0, match.start() - 50) : match.start()], text[match.end() :]
            if re.search(r"paper", before + after[:30], re.I):
                continue
            target = re.match(r"\s*of lesson (\d{2})", after) or re.search(
                r"lesson (\d{2})'s\s*$", before
            )
            lesson = LESSON_OF.get(target.group(1)) if target else own
            known = sections_of(lesson) if lesson else set()
            where = lesson.name if lesson else f"lesson {target.group(1)}"
            broken += [
                f"section {n} of {where}" for n in numbers_in(match.group(1)) if n not in known
            ]
        for match in EXERCISE_REF.finditer(text):
            broken += [f"exercise {n}" for n in numbers_in(match.group(1)) if n not in exercises]
    return broken


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: p.stem)
def test_cross_references_resolve(path):
    assert broken_references(path) == [], path.name


def test_the_reference_check_finds_broken_ones(tmp_path):
    copy = tmp_path / LESSON_OF["04"].name  # lesson 04 with planted references, checked against 04
    nb = json.loads(LESSON_OF["04"].read_text(encoding="utf-8"))
    planted = (
        "As lesson 14 shows, section 12 and section 2.7 too (lessons 07-15); see section 9 of "
        "lesson 09 and exercise 9. Section 4.3 of the DDIM paper is fine, and so are section 5, "
        "lesson 03's section 7, section 3 of lesson 09 and exercises 2 and 3."
    )
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": planted})
    copy.write_text(json.dumps(nb), encoding="utf-8")
    assert broken_references(copy) == [
        "lesson 14",
        "lesson 15",
        f"section 12 of {copy.name}",
        f"section 2.7 of {copy.name}",
        f"section 9 of {LESSON_OF['09'].name}",
        "exercise 9",
    ]


#: a package path a lesson names: ``course_utils/diffusion/vae.py``, ``course_utils/transfer/``
PACKAGE_PATH = re.compile(r"course_utils/[\w/]*\w(?:\.py)?/?")


def missing_package_paths(path: Path) -> list[str]:
    named = {m.group(0) for text in markdown_of(path) for m in PACKAGE_PATH.finditer("".join(text))}
    return sorted(p for p in named if not (ROOT / p).exists())


@pytest.mark.parametrize("path", LESSONS + SOLUTIONS, ids=lambda p: p.name)
def test_files_a_lesson_names_exist(path):
    """Each lesson lists the package files it imports; a file that moved must not leave the list
    pointing at nothing (lesson 00 once sent readers to a course_utils/image.py that never was)."""
    assert missing_package_paths(path) == []


def test_the_path_check_finds_a_stale_one(tmp_path):
    lesson = tmp_path / "99_x.ipynb"
    cell = {"cell_type": "markdown", "metadata": {}, "source": "see `course_utils/image.py`"}
    lesson.write_text(json.dumps({"cells": [cell]}))
    assert missing_package_paths(lesson) == ["course_utils/image.py"]
