"""A job's `inputs:` (.gitignore-style patterns) and its reuse key: what takes part and what does not."""

from __future__ import annotations

import time

import pytest

from namaskah_ci.pipeline.inputs import (
    InputMatcher,
    PatternError,
    compile_pattern,
    inputs_digest,
    key_document,
    parse_ls_tree,
    reuse_key,
)
from namaskah_ci.pipeline.model import PipelineError, load_pipeline
from pipeline_support import job_of

TREE = [
    ("100644", "blob", "a" * 40, "app/main.py"),
    ("100644", "blob", "b" * 40, "app/templates/index.html"),
    ("100644", "blob", "c" * 40, "docs/guide.md"),
    ("100644", "blob", "d" * 40, "README.md"),
    ("100644", "blob", "e" * 40, "requirements.txt"),
    ("100755", "blob", "f" * 40, "scripts/run.sh"),
    ("100644", "blob", "0" * 40, "tests/fixtures/big.json"),
]


@pytest.mark.parametrize(
    "patterns, taken",
    [
        (["app/"], ["app/main.py", "app/templates/index.html"]),
        (["app"], ["app/main.py", "app/templates/index.html"]),
        (["*.md"], ["README.md", "docs/guide.md"]),  # no slash: a name at any depth
        (["/README.md"], ["README.md"]),
        (["app/*.py"], ["app/main.py"]),  # `*` stays in one directory
        (["**/*.html"], ["app/templates/index.html"]),
        (["app/**"], ["app/main.py", "app/templates/index.html"]),
        (
            ["**", "!docs/", "!*.md"],
            [
                "app/main.py",
                "app/templates/index.html",
                "requirements.txt",
                "scripts/run.sh",
                "tests/fixtures/big.json",
            ],
        ),
        (["tests/", "!tests/fixtures/", "tests/fixtures/big.json"], ["tests/fixtures/big.json"]),  # last wins
        (["requirement?.txt", "scripts/[a-r]*.sh"], ["requirements.txt", "scripts/run.sh"]),
        (["scripts/[!a-r]*.sh"], []),
        (["nothing/"], []),
        (["app/**/*.html"], ["app/templates/index.html"]),  # `**/` may match no directory or several
        (["**/fixtures"], ["tests/fixtures/big.json"]),
        (["*/main.py", "docs/*"], ["app/main.py", "docs/guide.md"]),
        (["tests/**/big.json", "/app/templates/"], ["app/templates/index.html", "tests/fixtures/big.json"]),
        (["ap"], []),  # a name, not a prefix
        (["a?p/[!x]ain.py"], ["app/main.py"]),
    ],
)
def test_patterns_take_the_paths_gitignore_would(patterns, taken):
    matcher = InputMatcher(patterns)
    assert sorted(path for *_, path in TREE if matcher(path)) == sorted(taken)


@pytest.mark.parametrize("pattern", ["", "!", "/", "../secrets", "app/../..", "app/[ab", "app/]x["])
def test_unusable_patterns_are_refused_naming_the_pattern(pattern):
    with pytest.raises(PatternError) as raised:
        compile_pattern(pattern)
    assert repr(pattern) in str(raised.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "pattern, path",
    [
        ("*a*a*a*a*a*a*a*ab", "a" * 50),  # issue 21: 8 s in the master's `checks` step, each `*a` x5
        ("*a" * 99 + "b", "a" * 50),  # patterns may be 200 characters
        ("*a" * 99 + "b", "a" * 4000 + "bc"),  # the path holds every plain run: only the automaton decides
        ("**/" * 60 + "*a" * 30 + "x", "a/" * 2000 + "b"),
        ("*a" + "?" * 150, "".join("ab"[(n * 7) % 3 == 0] for n in range(4000))),  # a DFA of 2^150 states
    ],
    ids=["issue", "200-characters", "no-quick-refusal", "directories", "many-states"],
)
def test_any_pattern_is_matched_in_linear_time(pattern, path):
    matcher = InputMatcher([pattern])
    started = time.monotonic()
    matcher(path)
    # a backtracking regex takes longer than the universe; the automaton reads each character once
    assert time.monotonic() - started < 5


def test_a_class_never_takes_a_slash():
    assert not InputMatcher(["a[!x]b"])("a/b") and InputMatcher(["a[!x]b"])("acb")


def test_a_pipeline_file_with_a_bad_input_pattern_fails_naming_file_line_and_key():
    text = "version: 1\njobs:\n  lint:\n    inputs: [app/, ../etc]\n    steps: [flake8]\n"
    with pytest.raises(PipelineError) as raised:
        load_pipeline(text, ".namaskah-ci.yml")
    assert raised.value.summary.startswith(".namaskah-ci.yml:4: jobs.lint.inputs[1]: ")
    assert "'../etc' must stay inside the repository" in raised.value.summary


def test_inputs_travel_with_the_job_definition():
    text = (
        "version: 1\njobs:\n  lint:\n    inputs: [app/, '!app/vendor/']\n    steps: [flake8]\n  all:\n    steps: [x]\n"
    )
    pipeline = load_pipeline(text, ".namaskah-ci.yml")
    assert job_of(pipeline, "lint").inputs == ("app/", "!app/vendor/")
    assert job_of(pipeline, "all").inputs is None  # the whole tree
    from namaskah_ci.pipeline.specs import JobSpec

    assert JobSpec.from_dict(job_of(pipeline, "lint").to_dict()) == job_of(pipeline, "lint")


def test_the_digest_follows_content_mode_and_path_of_the_taken_files_only():
    base, count = inputs_digest(TREE, ["app/"])
    assert count == 2
    other_file = [entry if entry[3] != "README.md" else (*entry[:2], "9" * 40, entry[3]) for entry in TREE]
    assert inputs_digest(other_file, ["app/"])[0] == base  # a file outside the inputs changed
    changed = [entry if entry[3] != "app/main.py" else (*entry[:2], "9" * 40, entry[3]) for entry in TREE]
    assert inputs_digest(changed, ["app/"])[0] != base
    executable = [entry if entry[3] != "app/main.py" else ("100755", *entry[1:]) for entry in TREE]
    assert inputs_digest(executable, ["app/"])[0] != base
    moved = [entry if entry[3] != "app/main.py" else (*entry[:3], "app/server.py") for entry in TREE]
    assert inputs_digest(moved, ["app/"])[0] != base
    assert inputs_digest(list(reversed(TREE)), ["app/"])[0] == base  # order of the listing does not matter


def test_ls_tree_output_is_parsed_with_odd_names():
    out = b"100644 blob " + b"a" * 40 + b"\tdir/with space\tand tab.txt\0" + b"160000 commit " + b"b" * 40 + b"\tsub\0"
    assert parse_ls_tree(out) == [
        ("100644", "blob", "a" * 40, "dir/with space\tand tab.txt"),
        ("160000", "commit", "b" * 40, "sub"),
    ]


JOB = job_of(
    load_pipeline(
        "version: 1\njobs:\n  lint:\n    secrets: [codecov_token]\n    env: {A: '1'}\n    steps: [flake8]\n",
        ".namaskah-ci.yml",
    ),
    "lint",
).to_dict()
RUNTIME = {"mode": "local", "interpreter": "/usr/bin/python3.11", "version": "3.11.2 (main)\n/usr/bin/python3.11"}


def test_what_only_shows_or_schedules_a_job_is_not_in_its_key():
    key = reuse_key(JOB, "tree:abc", RUNTIME)
    for name, value in (
        ("context", "other"),
        ("timeout_minutes", 5),
        ("branches", ["main"]),
        ("verdict", False),
        ("schedule", "0 0 * * *"),
        ("priority", "low"),
    ):
        assert reuse_key({**JOB, name: value}, "tree:abc", RUNTIME) == key, name


@pytest.mark.parametrize(
    "change",
    [
        {
            "steps": [
                {
                    "name": "flake8",
                    "run": "flake8 --strict",
                    "continue_on_failure": False,
                    "allow_failure": False,
                    "only_with_secret": None,
                }
            ]
        },
        {"env": [["A", "2"]]},
        {"python": "3.9"},
        {"requirements": ["requirements.txt"]},
        {"services": ["postgres"]},
        {"secrets": ["safety_api_key"]},
        {"inputs": ["app/"]},
    ],
)
def test_a_change_that_matters_changes_the_key(change):
    assert reuse_key({**JOB, **change}, "tree:abc", RUNTIME) != reuse_key(JOB, "tree:abc", RUNTIME)


def test_inputs_and_runtime_are_in_the_key_and_secret_values_never_are():
    key = reuse_key(JOB, "tree:abc", RUNTIME)
    assert reuse_key(JOB, "tree:abd", RUNTIME) != key
    assert reuse_key(JOB, "tree:abc", {**RUNTIME, "version": "3.11.9 (main)\n/usr/bin/python3.11"}) != key
    assert reuse_key(JOB, "tree:abc", {**RUNTIME, "images": {"namaskah-ci/worker:py3.11": "sha256:1"}}) != key
    document = key_document(JOB, "tree:abc", RUNTIME)
    assert list(document["job"]["secrets"]) == ["codecov_token"]  # names only: the job never holds values
