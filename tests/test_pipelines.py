"""Pipeline structure: six stages registered, iterations chained, every dataset declared in the catalog."""

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from conftest import ROOT

STAGES = {"data_synthesis", "translation_qe", "reward_model", "sft", "preference_alignment", "evaluation"}


@pytest.fixture(scope="module")
def project():
    bootstrap_project(ROOT)
    configure_project("kowen_kedro")
    return pipelines


def test_registry_has_the_six_stages_and_default(project):
    assert STAGES | {"models", "__default__"} <= set(project)
    default = project["__default__"]
    assert {n.name for n in default.nodes} == {n.name for name in STAGES | {"models"} for n in project[name].nodes}


def test_dpo_iterations_are_chained(project):
    nodes = {n.name: n for n in project["preference_alignment"].nodes}
    assert "sft_model" in nodes["dpo_iter_1.train_dpo_node"].inputs
    assert "dpo_iter_1.policy" in nodes["dpo_iter_2.train_dpo_node"].inputs
    assert "dpo_iter_2.policy" in nodes["dpo_iter_3.sample_completions_node"].inputs
    assert "params:dpo_iter_2.dpo" in nodes["dpo_iter_2.train_dpo_node"].inputs  # per-iteration beta
    assert "params:preference_alignment.sampling" in nodes["dpo_iter_2.sample_completions_node"].inputs


def test_every_dataset_is_in_the_catalog_and_generated_ones_are_versioned(project):
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog = context.catalog
        params = context.params
    default = project["__default__"]
    datasets = {d for d in default.datasets() if not d.startswith("params:") and d != "parameters"}
    missing = [d for d in sorted(datasets) if not catalog.get(d) or type(catalog.get(d)).__name__ == "MemoryDataset"]
    assert missing == ["tiny_models"]  # the build manifest is handed over in memory on purpose
    for name in ["prompts", "sft_dataset", "sft_model", "reward_model", "dpo_iter_1.policy", "dpo_iter_2.completions", "judgements"]:
        assert catalog.get(name)._version is not None, name
    assert params["dpo_iter_1"]["dpo"]["trainer_args"]["beta"] == 0.1
    assert params["dpo_iter_2"]["dpo"]["trainer_args"]["beta"] == 1.0
