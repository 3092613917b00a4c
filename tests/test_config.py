import json

import pytest
from click.testing import CliRunner

from image_clustering import ImgclustError, config_from_dict, load_config
from image_clustering.cli import main

BASE = {"paths": {"image_dir": "photos"}, "model": {"object_name": "x"}}


def with_model(**model):
    return {"paths": dict(BASE["paths"]), "model": {**BASE["model"], **model}}


def test_defaults_and_relative_paths_resolve_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = config_from_dict(BASE)
    assert config.paths.image_dir == tmp_path / "photos"
    assert config.model.k == "auto" and config.model.pca_dimension == 50 and config.model.reduced_dimension == 2
    assert config.model.extractor == ("inception_v3", "efficientnet_lite0") and not config.model.standardize
    assert config.feature_dir == tmp_path / "results" / "vectors" / "x"


def test_extractor_and_weights_forms():
    model = config_from_dict(with_model(extractor="efficientnet_lite0", weights="keras-2016")).model
    assert model.extractor == ("efficientnet_lite0",)
    assert model.weights == {"inception_v3": "keras-2016", "efficientnet_lite0": "google-2020", "vgg16": "keras",
                             "resnet50": "keras"}
    both = config_from_dict(with_model(extractor=["inception_v3", "efficientnet_lite0"])).model
    assert both.extractor == ("inception_v3", "efficientnet_lite0")


def test_the_shipped_config_is_valid():
    from tests.conftest import ROOT

    assert load_config(ROOT / "configs" / "configs.json").model.object_name == "example"


@pytest.mark.parametrize(
    "raw, key",
    [
        ({**BASE, "extra": 1}, "extra: unknown key"),
        ({"paths": {"image_dir": "p", "imagedir": "q"}, "model": {"object_name": "x"}}, "paths.imagedir: unknown key"),
        (with_model(k=0), "model.k"),
        (with_model(k="many"), "model.k"),
        (with_model(k=True), "model.k"),
        (with_model(reduced_dimension="2"), "model.reduced_dimension"),
        (with_model(batch_size=-1), "model.batch_size"),
        (with_model(reducer="pca"), "model.reducer"),
        (with_model(object_name="a/b"), "model.object_name"),
        (with_model(object_name="x" * 300), "model.object_name: at most 100 characters"),
        (with_model(reducer="tsne", reduced_dimension=5), "model.reduced_dimension"),
        (with_model(k=20, k_max=10), "model.k"),
        ({"paths": {"image_dir": 3}, "model": {"object_name": "x"}}, "paths.image_dir"),
        (with_model(extractor="vgg19"), "model.extractor"),
        (with_model(space="tsne"), "model.space"),
        (with_model(sim=1.5), "model.sim"),
        (with_model(sim=0.5), "model.sim"),  # needs agglomerative
        (with_model(algorithm="agglomerative", sim=0.5, k=5), "model.k"),
        (with_model(algorithm="hdbscan", k=5), "model.k"),
        (with_model(algorithm="hdbscan", min_cluster_size=1), "model.min_cluster_size"),
        (with_model(time_weight=0.3), "model.time_weight"),  # k-means has no pair distances
        (with_model(time_weight=2), "model.time_weight"),
        (with_model(extractor=["inception_v3", "inception_v3"]), "model.extractor"),
        (with_model(weights={"resnet": "x"}), "model.weights"),
        (with_model(tag_count=50), "model.tag_count"),
        ({"paths": {}, "model": {"object_name": "x"}}, "image_dir"),
    ],
)
def test_bad_config_names_the_key(raw, key):
    with pytest.raises(ImgclustError) as info:
        config_from_dict(raw, source="c.json")
    message = str(info.value)
    assert key in message and message.startswith("c.json: ") and "\n" not in message


def test_cli_reports_config_errors_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(with_model(k=-3)))
    result = CliRunner().invoke(main, ["find-k", "--config", str(bad)])
    assert result.exit_code == 1
    assert "model.k" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_reports_broken_json_and_missing_file(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"paths": ')
    result = CliRunner().invoke(main, ["extract", "--config", str(broken)])
    assert result.exit_code == 1 and "not valid JSON" in result.output and "broken.json" in result.output
    result = CliRunner().invoke(main, ["extract", "--config", str(tmp_path / "none.json")])
    assert result.exit_code == 1 and "none.json" in result.output


def test_each_config_key_is_declared_alike_everywhere():
    """The schema, the defaults, the dataclasses and the README's config reference name the same
    keys, so a key added in one place cannot be forgotten in another."""
    import dataclasses

    from image_clustering.config import DEFAULT_MODEL, DEFAULT_PATHS, SCHEMA, ModelConfig, Paths
    from tests.conftest import ROOT

    for section, defaults, cls, required in (("model", DEFAULT_MODEL, ModelConfig, {"object_name"}),
                                             ("paths", DEFAULT_PATHS, Paths, {"image_dir", "label_file"})):
        schema = set(SCHEMA["properties"][section]["properties"])
        fields = {f.name for f in dataclasses.fields(cls)}
        assert schema == fields == set(defaults) | required, section
        readme = (ROOT / "README.md").read_text()
        assert not [k for k in schema if f"`{section}.{k}`" not in readme], "keys missing from the README"


def test_compute_section_defaults_values_and_override():
    assert config_from_dict(BASE).compute.scheduler is None  # in-process unless asked
    raw = {**BASE, "compute": {"scheduler": "tcp://head:8786", "workers": 4, "task_size": 64, "timeout": 3}}
    compute = config_from_dict(raw).compute
    assert (compute.scheduler, compute.workers, compute.task_size, compute.timeout) == ("tcp://head:8786", 4, 64, 3)
    assert config_from_dict(BASE).with_scheduler("local").compute.scheduler == "local"
    assert config_from_dict(raw).with_scheduler(None).compute.scheduler == "tcp://head:8786"
    with pytest.raises(ImgclustError, match=r"^compute\.scheduler: must be null, \"local\" or a scheduler address"):
        config_from_dict({**BASE, "compute": {"scheduler": "head"}})
    with pytest.raises(ImgclustError, match=r"^--scheduler: 'head' is neither"):
        config_from_dict(BASE).with_scheduler("head")
    with pytest.raises(ImgclustError, match=r"compute\.workers"):
        config_from_dict({**BASE, "compute": {"workers": 0}})
