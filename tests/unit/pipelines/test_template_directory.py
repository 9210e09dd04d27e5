"""A deployment plans with the packaged templates plus its own directory's, and a pipeline name
that no coordinator would know is refused before it reaches the log."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sdlcflow.cli import cli
from sdlcflow.core.decider import handle
from sdlcflow.core.events import ChangePlanned
from sdlcflow.core.planner import TemplateError
from sdlcflow.core.state import RepoState
from sdlcflow.pipelines import (
    DEFAULT_PIPELINE,
    TEMPLATES_DIR_ENV,
    PipelineError,
    check_pipeline,
    known_templates,
    template_texts,
)
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.testing import change_request
from sdlcflow.streams.commands import submit

FAST_LANE = """\
name: fast-lane
steps:
  - {id: lint, capability: lint, timeout: 5m}
  - {id: merge, capability: merge, needs: [lint], gate: true}
"""
SHORTER_CODE_CHANGE = """\
name: code-change
steps:
  - {id: lint, capability: lint, timeout: 5m}
"""


def _directory(tmp_path: Path, **files: str) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


class TestTemplateTexts:
    """The directory adds templates by file stem and replaces packaged ones of the same name."""

    def test_without_a_directory_only_the_packaged_templates_are_known(self) -> None:
        known = known_templates(None)
        assert {DEFAULT_PIPELINE, "dependency-upgrade", "deployment"} <= set(known)

    def test_a_directory_template_is_added_under_its_file_stem(self, tmp_path: Path) -> None:
        directory = _directory(tmp_path, **{"fast-lane.yml": FAST_LANE, "notes.txt": "not yaml"})
        known = known_templates(directory)
        assert [step.id for step in known["fast-lane"].steps] == ["lint", "merge"]
        assert "notes" not in known
        assert set(known_templates(None)) < set(known)

    def test_a_directory_template_replaces_the_packaged_one_of_its_name(
        self, tmp_path: Path
    ) -> None:
        directory = _directory(tmp_path, **{"code-change.yaml": SHORTER_CODE_CHANGE})
        source, _text = template_texts(directory)["code-change"]
        assert source == str(directory / "code-change.yaml")
        assert [step.id for step in known_templates(directory)["code-change"].steps] == ["lint"]

    def test_a_missing_directory_is_refused_with_the_fix(self, tmp_path: Path) -> None:
        with pytest.raises(PipelineError, match=r"does not exist.*unset SDLCFLOW_TEMPLATES_DIR"):
            template_texts(tmp_path / "nowhere")

    def test_an_invalid_template_in_the_directory_names_its_file(self, tmp_path: Path) -> None:
        broken = "name: broken\nsteps:\n  - {id: lint, capability: lint, needs: [nothing]}\n"
        directory = _directory(tmp_path, **{"broken.yaml": broken})
        with pytest.raises(TemplateError, match=r"broken\.yaml.*lint.*nothing"):
            known_templates(directory)


class TestCheckPipeline:
    """A name is accepted only if the coordinator reading the same directory knows it."""

    def test_a_known_name_is_returned(self, tmp_path: Path) -> None:
        assert check_pipeline("fast-lane", _directory(tmp_path, **{"fast-lane.yaml": FAST_LANE}))

    def test_an_unknown_name_lists_the_known_ones_and_where_to_add_it(self) -> None:
        with pytest.raises(PipelineError) as refused:
            check_pipeline("promotion", None)
        message = str(refused.value)
        assert "no pipeline template named 'promotion'" in message
        assert "code-change, " in message and "deployment" in message
        assert f"Add promotion.yaml to a directory that {TEMPLATES_DIR_ENV} names" in message


class TestCoordinatorTemplates:
    """The coordinator plans a change with a template from its configured directory."""

    def test_a_change_naming_a_directory_template_is_planned_with_it(self, tmp_path: Path) -> None:
        directory = _directory(tmp_path, **{"fast-lane.yaml": FAST_LANE})
        config = core_config(ProcessorConfig.from_env().with_options(templates_dir=directory))
        request = change_request("acme/shop", at=1_700_000_000_000, template="fast-lane")
        _state, decisions = handle(RepoState(), request, config)
        planned = [d.payload for d in decisions if isinstance(d.payload, ChangePlanned)]
        assert [task.step for task in planned[0].tasks] == ["lint", "merge"]

    def test_the_workers_environment_carries_the_directory(self, tmp_path: Path) -> None:
        directory = _directory(tmp_path)
        config = ProcessorConfig.from_env().with_options(templates_dir=directory)
        assert config.env()[TEMPLATES_DIR_ENV] == str(directory)

    def test_run_processors_refuses_a_missing_directory_before_starting(
        self, tmp_path: Path
    ) -> None:
        missing = tmp_path / "nowhere"
        result = CliRunner().invoke(cli, ["run", "processors", "--templates", str(missing)])
        assert result.exit_code == 1
        assert f"templates directory {missing} does not exist" in result.output


class TestSubmitPipeline:
    """`sdlcflow submit` defaults to the packaged code-change pipeline and refuses unknown names
    before publishing anything."""

    def test_an_unknown_pipeline_is_refused_with_the_known_names(self) -> None:
        result = CliRunner().invoke(
            cli,
            [
                "submit",
                "--repo",
                "acme/web",
                "--base",
                "a",
                "--head",
                "b",
                "--kind",
                "refactor",
                "--pipeline",
                "promotion",
                "--bootstrap",
                "127.0.0.1:1",
            ],
            env={TEMPLATES_DIR_ENV: ""},
        )
        assert result.exit_code == 2
        assert "no pipeline template named 'promotion'" in result.output
        assert "code-change" in result.output

    def test_the_default_pipeline_is_the_packaged_code_change(self) -> None:
        pipeline = next(p for p in submit.params if p.name == "pipeline")
        assert pipeline.default == DEFAULT_PIPELINE == "code-change"
        assert DEFAULT_PIPELINE in known_templates(None)
